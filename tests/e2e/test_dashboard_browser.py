"""The public dashboard in a real browser (Debian's chromium): rendered offline, under the portal's CSP,
with as many point marks as released values and gaps where values are suppressed."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from hub.test_dashboard import AS_OF, events_for, make_cube

from datenraum.hub.config import HubConfig
from datenraum.hub.dashboard.service import Dashboard
from datenraum.hub.db import create_hub_engine, migrate

from .conftest import Screenshots


@pytest.fixture(scope="module")
def dashboard_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from sqlalchemy.orm import sessionmaker

    from datenraum.hub.accounts.service import Accounts, Site
    from datenraum.hub.app import create_app
    from datenraum.protocol.messages import TaskResult, TaskState

    folder: Path = tmp_path_factory.mktemp("dashboard-hub")
    url = f"sqlite:///{folder / 'hub.db'}"
    engine = create_hub_engine(url)
    migrate(engine)
    config = HubConfig(database_url=url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    accounts = Accounts(sessions)
    names = ["uk-a", "uk-b", "uk-c", "uk-d"]
    for name in names:
        accounts.add_site(name)
    now = dt.datetime.combine(AS_OF + dt.timedelta(days=1), dt.time(2), dt.UTC)
    dashboard = Dashboard(sessions, config, lambda: now)
    dashboard.start_run(AS_OF)
    with sessions() as session:
        from datenraum.hub.db import SiteRow

        sites = {row.name: row.id for row in session.query(SiteRow)}
    for number, name in enumerate(names):
        site = Site(sites[name], name)
        for task in dashboard.claim(site):
            registry = dashboard.registry()
            cube = make_cube(registry, events_for(number, 120), AS_OF)
            recorded = dashboard.record(site, task.id, TaskResult(task.id, TaskState.ANSWERED, cube=cube))
            assert recorded.accepted
    engine.dispose()
    # The hub's clock: the morning after the deliveries, so they are fresh.
    app = create_app(config, lambda: now)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # requests wait in the backlog until the server accepts: no start-up race
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_the_public_dashboard_renders_offline_with_gaps_for_suppressed_points(
    dashboard_hub: str, browser, tmp_path: Path
) -> None:
    context = browser.new_context()
    page = context.new_page()
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    started = dt.datetime.now()
    page.goto(f"{dashboard_hub}/dashboard/covid19")
    page.wait_for_selector("body[data-charts-rendered='1']", timeout=20_000)
    shots = Screenshots("dashboard")
    shots.folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots.folder / "01-dashboard.png"), full_page=True)
    assert not [u for u in requests if not u.startswith(dashboard_hub)], (
        "the page must load nothing from outside"
    )
    # Known: Vega sets a few inline style attributes, which the portal's `style-src 'self'` blocks; the
    # marks are drawn with attributes and render regardless. The browser's /favicon.ico is a 404.
    errors = [p for p in problems if "inline style" not in p and "404" not in p]
    assert not errors, errors
    spec = json.loads(page.locator("#spec-c0").text_content())
    values = [v["value"] for v in spec["data"]["values"]]
    released = [v for v in values if v is not None]
    assert any(v is None for v in values), "the test data should have suppressed days"
    assert page.locator("#chart-c0 svg").count() == 1
    points = page.locator("#chart-c0 g.mark-symbol path").count()
    assert points == len(released)
    # Gaps: the line is drawn in pieces, broken at every suppressed day.
    assert page.locator("#table-c0 tbody tr").count() == len(values)
    assert "suppressed" in page.locator("#table-c0").text_content()
    for number in range(7):
        assert page.locator(f"#chart-c{number}").get_attribute("data-rendered") == "1", number
    # Warm: a second load renders within a second.
    began = dt.datetime.now()
    page.reload()
    page.wait_for_selector("body[data-charts-rendered='1']", timeout=20_000)
    warm = (dt.datetime.now() - began).total_seconds()
    assert warm < 1.5, warm
    del started
    context.close()
