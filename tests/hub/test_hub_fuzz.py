"""The hub's API fuzzed from its own OpenAPI schema (schemathesis, in-process), on SQLite and PostgreSQL:
no request, however odd, gets a 5xx, and every answer carries the security headers (issue 12, P-4/P-5).

Bounded, so that it is part of every test run: a fixed number of examples per operation, generated from
a fixed seed, each within a deadline. The database is seeded so that ids resolve (a site and its task, a
submitted query, a saved query, a proposal, the directory) and half of the generated ids are replaced
with real ones, so that requests reach the services and not only 404. The notifier is closed, as in a
hub shutting down, so that long-polls and event streams answer at once instead of waiting.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.python import asgi

from datenraum.hub.directory.service import load_seed
from datenraum.hub.feasibility.saved_queries import SavedQueries
from datenraum.hub.roles import Role

from .helpers import SITE_API, HubFixture, bearer, older_than
from .portal_helpers import People, UseAndAccess

EXAMPLES_PER_OPERATION = 12
DEADLINE = dt.timedelta(seconds=5)  # per example; the slowest on a busy machine take about 0.1 s


class Seeded:
    def __init__(self, hub: HubFixture, people: People, uploads: Path) -> None:
        credentials = hub.sites("uk-a", "uk-b", "uk-c")
        self.site = credentials["uk-a"]
        self.token = hub.user("fuzz@example.org", Role.RESEARCHER)
        researcher = hub.accounts.user_for(self.token)
        assert researcher is not None
        federation = hub.federation()
        self.query_id = federation.submit(researcher, older_than(50), None).query_id
        site = hub.accounts.site_for(self.site)
        assert site is not None
        self.task_id = federation.claim(site).tasks[0].id
        self._saved_queries, self._researcher = SavedQueries(hub.sessions, hub.clock), researcher
        self.saved_id = 0
        self.save()
        load_seed(hub.sessions)
        owner = people.approved("owner@example.org")
        UseAndAccess.on(hub, uploads, "uk-a").draft(people.acting(owner))

    def save(self) -> None:
        """A saved query to reach (again, once a generated DELETE has removed it)."""
        self.saved_id = self._saved_queries.save(self._researcher, "Alte", older_than(50)).id

    def real(self, name: str) -> Any:
        """A seeded value for a path parameter, or None for one that has none."""
        values = {
            "saved_id": self.saved_id,
            "query_id": self.query_id,
            "task_id": self.task_id,
            "slug": "charite",
        }
        return values.get(name)


@pytest.fixture
def seeded(hub: HubFixture, people: People, tmp_path: Path) -> Seeded:
    return Seeded(hub, people, tmp_path / "uploads")


def _checked(case: Any, data: st.DataObject, seeded: Seeded, client: Any) -> None:
    for name in case.path_parameters or {}:
        real = seeded.real(name)
        if real is not None and data.draw(st.booleans(), label=f"real {name}"):
            case.path_parameters[name] = real
    credential = seeded.site if case.path.startswith(SITE_API) else seeded.token
    response = case.call(session=client, headers=bearer(credential))
    where = f"{case.method} {case.formatted_path} -> {response.status_code}"
    assert response.status_code < 500, f"{where}: {response.text[:300]}"
    if case.method.upper() == "DELETE" and case.path_parameters.get("saved_id") == seeded.saved_id:
        seeded.save()
    headers = response.headers
    assert "frame-ancestors 'none'" in (headers.get("content-security-policy") or [""])[0], where
    assert headers.get("x-frame-options") == ["DENY"], where
    assert headers.get("x-content-type-options") == ["nosniff"], where
    assert headers.get("cache-control") == ["no-store"], where


@pytest.mark.usefixtures("fast_passwords")
def test_no_request_to_the_api_gets_a_5xx_or_an_answer_without_security_headers(
    hub: HubFixture, seeded: Seeded, tmp_path: Path
) -> None:
    app = hub.app(upload_folder=str(tmp_path / "uploads"))
    app.state.hub.notifier.close()
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20  # every API operation, none left out by a broken schema
    # One in-process client for every call (a client of its own per call starts a thread each time).
    with asgi.get_client(app) as client:
        for operation in operations:
            _fuzz(operation, seeded, client)


def _fuzz(operation: Any, seeded: Seeded, client: Any) -> None:

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=DEADLINE,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(), data=st.data())
    def fuzz(case: Any, data: st.DataObject) -> None:
        _checked(case, data, seeded, client)

    fuzz()
