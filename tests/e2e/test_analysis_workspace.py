"""Survival across real site agents: the hub's km, logrank and cox operations (equal to the same
analysis run in-process on the same stores), and the portal's analysis workspace in Chromium (the form,
a Kaplan–Meier chart and a Cox forest plot drawn as SVG from the released results, their tables, no
request beyond the hub; another researcher's project is 404). Hub on PostgreSQL, agents as processes."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from datenraum.analysis import Analysis, Client
from datenraum.analysis.variables import parse_definitions
from datenraum.devtools.federation import LocalFederation, Researcher
from datenraum.hub.db import SiteRow, UserRow
from datenraum.hub.proposals.tables import CohortRow, ProposalRow, ProposalSiteRow
from datenraum.privacy.analysis import AnalysisPolicy
from datenraum.query.model import parse_query
from datenraum.site.analysis.local import LocalSites
from datenraum.site.analysis.variables import store_table
from datenraum.site.ingest import ingest
from datenraum.site.store import Store
from datenraum.synth import generate

from .conftest import Screenshots

SITES = (("surv-a", 450, 41), ("surv-b", 400, 42), ("surv-c", 350, 43))
RESEARCHER = ("forscherin@datenraum.example", "Ueberleben-2026-lang")
ADMIN = ("office@datenraum.example", "Koordination-2026-lang")
COHORT = {
    "inclusionCriteria": [
        [
            {
                "context": {"system": "fdpg.mii.cds", "code": "Patient", "display": "Patient"},
                "termCodes": [{"system": "http://snomed.info/sct", "code": "424144002", "display": "Alter"}],
                "valueFilter": {
                    "type": "quantity-comparator",
                    "comparator": "gt",
                    "value": 18,
                    "unit": {"code": "a", "display": "Jahre"},
                },
            }
        ]
    ]
}
START, DEATH = {"on": "admission"}, {"on": "death"}
VARIABLES = {
    "days": {"kind": "time_to_event", "value": "time", "start": START, "event": DEATH},
    "died": {"kind": "time_to_event", "value": "event", "start": START, "event": DEATH},
    "age": {"kind": "age"},
    "sex": {"kind": "sex"},
}
BINARY_SEX = [{"variable": "sex", "comparator": "in", "value": ["female", "male"]}]
AGENT_CONFIG = '[hub]\nwait = 5\nbackoff_initial = 0.1\nbackoff_cap = 0.5\n[tasks]\nallowed = ["analysis"]\n'


@dataclass
class SurvivalHub:
    url: str
    federation: LocalFederation
    stores: dict[str, Path]
    token: str
    engine: sa.Engine

    def project(self, owner_email: str) -> int:
        now = dt.datetime.now(dt.UTC)
        with self.engine.begin() as connection:
            owner = connection.scalar(sa.select(UserRow.id).where(UserRow.email == owner_email))
            proposal = connection.execute(
                sa.insert(ProposalRow.__table__).values(
                    owner_id=owner,
                    state="ready-for-delivery",
                    title="Survival after admission",
                    abstract="",
                    questions=[],
                    modules=[],
                    biosamples="",
                    analysis="federated-analysis",
                    created=now,
                    updated=now,
                )
            ).inserted_primary_key[0]
            connection.execute(
                sa.insert(CohortRow.__table__).values(
                    proposal_id=proposal, position=0, name="Erwachsene", query=COHORT, site_counts={}
                )
            )
            for name in self.stores:
                site = connection.scalar(sa.select(SiteRow.id).where(SiteRow.name == name))
                connection.execute(
                    sa.insert(ProposalSiteRow.__table__).values(
                        proposal_id=proposal, site_id=site, agreed=True
                    )
                )
        return proposal


@pytest.fixture(scope="module")
def survival_hub(tmp_path_factory: pytest.TempPathFactory, postgres_server) -> Iterator[SurvivalHub]:
    workdir = tmp_path_factory.mktemp("survival-hub")
    database = postgres_server.new_database()
    hub_env = {"DATENRAUM_HUB_ANALYSIS_MIN_SITES": "3", "DATENRAUM_HUB_ANALYSIS_ROUND_SECONDS": "20"}
    federation = LocalFederation(workdir, database_url=database, hub_env=hub_env)
    engine = None
    try:
        stores = {}
        for name, patients, seed in SITES:
            generate(workdir / f"{name}-data", patients, seed, workers=1)
            ingest(workdir / f"{name}-store", [workdir / f"{name}-data"])
            stores[name] = workdir / f"{name}-store"
        files = federation.register(
            sites=list(stores),
            users=[(RESEARCHER[0], "researcher"), (ADMIN[0], "admin")],
            passwords={RESEARCHER[0]: RESEARCHER[1]},
        )
        config = workdir / "agent.toml"
        config.write_text(AGENT_CONFIG)
        federation.start_hub()
        for name, store in stores.items():
            federation.start_agent(name, store, files[name], config=config)
        token = files[RESEARCHER[0]].read_text().strip()
        admin = Researcher(federation.url, files[ADMIN[0]].read_text().strip())
        admin.wait_for_sites(list(stores))
        admin.close()
        engine = sa.create_engine(federation.hub_env["DATENRAUM_HUB_DATABASE_URL"])
        yield SurvivalHub(federation.url, federation, stores, token, engine)
    finally:
        if engine is not None:
            engine.dispose()
        federation.close()


def in_process(stores: dict[str, Path]) -> Analysis:
    """The same analysis with each site's executor in this process, on the same store tables."""
    tables = {}
    for name, path in stores.items():
        with Store(path).snapshot() as snapshot:
            tables[name] = store_table(snapshot, parse_query(COHORT), parse_definitions(VARIABLES), key=name)
    return Analysis(LocalSites.from_tables(tables, AnalysisPolicy()), policy=AnalysisPolicy(min_sites=3))


def test_km_logrank_and_cox_through_the_hub_equal_the_same_analysis_in_process(
    survival_hub: SurvivalHub,
) -> None:
    project = survival_hub.project(RESEARCHER[0])
    with Client(survival_hub.url, survival_hub.token, project=project, variables=VARIABLES) as client:
        km = client.km("days", "died", group="sex", where=BINARY_SEX)
        logrank = client.logrank("days", "died", "sex", where=BINARY_SEX)
        cox = client.cox("days", "died", ["age"], where=BINARY_SEX)
    local = in_process(survival_hub.stores)
    expected_km = local.km("days", "died", group="sex", where=BINARY_SEX)
    expected_cox = local.cox("days", "died", ["age"], where=BINARY_SEX)
    assert km["curves"].keys() == expected_km["curves"].keys() == {"female", "male"}
    for group, curve in expected_km["curves"].items():
        np.testing.assert_allclose(km["curves"][group]["survival"], curve["survival"], rtol=1e-12)
        assert km["curves"][group]["n_risk"] == curve["n_risk"]
    assert logrank["statistic"] == pytest.approx(expected_km["logrank"]["statistic"], rel=1e-12)
    assert logrank["groups"] == ["female", "male"]
    np.testing.assert_allclose(cox["coef"], expected_cox.coef, rtol=1e-10)
    np.testing.assert_allclose(cox["se"], expected_cox.se, rtol=1e-10)
    assert cox["events"] == expected_cox.events > 10
    assert all(t % 30 == 0 for c in km["curves"].values() for t in c["time"]), "only bin ends leave"


@pytest.mark.parametrize(
    ("operation", "body", "field"),
    [
        ("km", {"time": "days", "event": "died", "bin_width": -5}, "bin_width"),
        ("km", {"time": "days", "event": "died", "alpha": 2}, "alpha"),
        ("km", {"time": "days"}, "event"),
        ("cox", {"time": "days", "event": "died", "covariates": ["age"], "ties": "exact"}, "ties"),
        ("cox", {"time": "days", "event": "died", "covariates": ["age"], "max_iter": 10_000}, "max_iter"),
        ("cox", {"time": "days", "event": "died", "covariates": ["age"], "strata_by_site": "yes"}, "strata"),
        ("logrank", {"time": "days", "event": "died"}, "group"),
        ("km", {"time": "days", "event": "died", "formula": "y ~ x"}, "formula"),
    ],
)
def test_a_bad_survival_request_is_a_422_naming_the_field(
    survival_hub: SurvivalHub, operation: str, body: dict, field: str
) -> None:
    project = survival_hub.project(RESEARCHER[0])
    response = httpx.post(
        f"{survival_hub.url}/api/v1/analysis/projects/{project}/{operation}",
        json={**body, "data": {"variables": VARIABLES}},
        headers={"Authorization": f"Bearer {survival_hub.token}"},
        timeout=30,
    )
    assert response.status_code == 422, response.text
    assert field in response.json()["error"]


def _sign_in(page, url: str) -> None:
    page.goto(f"{url}/login")
    page.fill("#email", RESEARCHER[0])
    page.fill("#password", RESEARCHER[1])
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(lambda u: "/login" not in u)


def test_the_workspace_runs_a_kaplan_meier_curve_and_a_cox_model_in_the_browser(
    survival_hub: SurvivalHub, new_page
) -> None:
    project = survival_hub.project(RESEARCHER[0])
    others = survival_hub.project(ADMIN[0])
    page = new_page("en-GB")
    shots = Screenshots("analysis-workspace")
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: problems.append(str(error)))
    _sign_in(page, survival_hub.url)
    page.goto(f"{survival_hub.url}/analysis")
    page.click(f"a[href='/analysis/{project}']")
    page.select_option("#start", "admission")
    page.select_option("#event", "death")
    page.select_option("#group", "sex")
    page.check("#age")
    page.fill("#bin_width", "60")
    shots(page, "form")
    page.click("#run-survival", no_wait_after=True)  # the rounds over the sites take seconds
    page.wait_for_selector("#chart-km[data-rendered='1']", timeout=120_000)
    page.wait_for_selector("#chart-cox[data-rendered='1']", timeout=20_000)
    shots(page, "results")

    km_spec = json.loads(page.locator("#spec-km").text_content())
    curve_points = km_spec["vconcat"][0]["data"]["values"]
    risk_points = km_spec["vconcat"][1]["data"]["values"]
    assert page.locator("#chart-km svg").count() == 1
    assert page.locator("#chart-km g.mark-line.role-mark path").count() == 2  # one step curve per sex
    assert page.locator("#chart-km g.mark-text.role-mark text").count() == len(risk_points)
    assert {p["group"] for p in curve_points} == {"female", "male"}
    assert all(p["time"] % 60 == 0 for p in curve_points)
    assert page.locator("#km-table tbody tr").count() == len(curve_points) - 2  # no row for time 0
    assert "log-rank" in page.locator("#km-result figcaption").text_content()
    cox_spec = json.loads(page.locator("#spec-cox").text_content())
    estimates = [v for v in cox_spec["data"]["values"] if v["kind"] == "estimate"]
    assert page.locator("#chart-cox svg").count() == 1
    assert page.locator("#chart-cox g.mark-symbol.role-mark path").count() == len(estimates) == 1
    assert page.locator("#cox-table tbody tr").count() == 1
    assert page.locator("#cox-table tbody td").first.text_content() == "age"
    assert "client.cox('days', 'died', ['age']" in page.locator("#client-code").text_content()
    hub = urlparse(survival_hub.url).netloc
    assert {urlparse(r).netloc for r in requests} == {hub}, "no request beyond the hub"
    assert problems == []

    assert page.goto(f"{survival_hub.url}/analysis/{others}").status == 404
    assert page.goto(f"{survival_hub.url}/analysis/2147483000").status == 404


def test_a_bad_form_is_refused_naming_the_field_and_runs_nothing(survival_hub: SurvivalHub, new_page) -> None:
    project = survival_hub.project(RESEARCHER[0])
    page = new_page("en-GB")
    _sign_in(page, survival_hub.url)
    page.goto(f"{survival_hub.url}/analysis/{project}")
    page.select_option("#start", "condition")
    page.fill("#start_code", "C50'); DROP TABLE patient; --")
    with page.expect_response(lambda r: r.url.endswith("/survival")) as answer:
        page.click("#run-survival")
    assert answer.value.status == 422
    assert "start_code: expected an ICD-10 code" in page.locator("#form-error").text_content()
    assert page.locator("#km-result").count() == 0
