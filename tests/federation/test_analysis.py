"""Federated analysis end to end: a real hub, real site agents on their own small stores, the Python
client. A logistic regression across the sites equals the pooled statsmodels fit on the same rows (built
by the same variable definitions from the same stores); a site that misses the round's deadline, or whose
agent restarts mid-fit, is named; fuzzed requests get structured 4xx answers, never a 5xx."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import statsmodels.api as sm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datenraum.analysis import AnalysisError, Client
from datenraum.analysis.variables import parse_definitions
from datenraum.hub.db import SiteRow, UserRow
from datenraum.hub.proposals.tables import CohortRow, ProposalRow, ProposalSiteRow
from datenraum.query.model import parse_query
from datenraum.site.analysis.variables import store_table
from datenraum.site.ingest import ingest
from datenraum.site.store import Store
from datenraum.synth import generate

from .conftest import AGENT_CONFIG, Federation, _start, _write_secret

COHORT = {
    "display": "Erwachsene",
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
    ],
}
VARIABLES = {
    "t2d": {"kind": "condition", "codes": ["E11"], "value": "any"},
    "age": {"kind": "age", "at": "2024-01-01"},
    "sex": {"kind": "sex"},
}
BINARY_SEX = [{"variable": "sex", "comparator": "in", "value": ["female", "male"]}]
SITES = ("an-a", "an-b", "an-c")
ANALYSIS_AGENT = AGENT_CONFIG + '[tasks]\nallowed = ["feasibility-count", "analysis"]\n'


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for i, name in enumerate(SITES):
        folder = tmp_path_factory.mktemp(name)
        generate(folder / "data", 350 + 50 * i, 100 + i, workers=1)
        ingest(folder / "store", [folder / "data"])
        out[name] = folder / "store"
    return out


class AnalysisHub:
    def __init__(self, fed: Federation, stores: dict[str, Path]) -> None:
        self.fed = fed
        self.stores = stores
        self.config = _write_secret(fed.processes.workdir / "agent-analysis.toml", ANALYSIS_AGENT)
        with fed.engine.begin() as connection:
            self.user_id = connection.scalar(
                sa.select(UserRow.id).where(UserRow.email.like("researcher-%")).order_by(UserRow.id.desc())
            )

    def start_agent(self, name: str, store: Path | None = None, **delays: float) -> None:
        self.fed.processes.start_agent(
            name, store or self.stores[name], self.fed.credentials[name], config=self.config, **delays
        )

    def project(self, sites: list[str], *, state: str = "ready-for-delivery") -> int:
        now = dt.datetime.now(dt.UTC)
        with self.fed.engine.begin() as connection:
            proposal = connection.execute(
                sa.insert(ProposalRow.__table__).values(
                    owner_id=self.user_id,
                    state=state,
                    title="T2D risk",
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
            for name in sites:
                site_id = connection.scalar(sa.select(SiteRow.id).where(SiteRow.name == name))
                connection.execute(
                    sa.insert(ProposalSiteRow.__table__).values(
                        proposal_id=proposal, site_id=site_id, agreed=True
                    )
                )
        return proposal

    def client(self, project: int) -> Client:
        return Client(
            self.fed.url,
            self.fed.researcher.client.headers["Authorization"].split()[1],
            project=project,
            variables=VARIABLES,
        )


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, stores: dict[str, Path]) -> Iterator[AnalysisHub]:
    fed = _start(
        tmp_path_factory.mktemp("analysis-hub"),
        stores[SITES[0]],
        None,
        {"analysis_round_seconds": "5", "analysis_min_sites": "2"},
    )
    try:
        setup = AnalysisHub(fed, stores)
        for name in SITES:
            fed.add_site(name)
            setup.start_agent(name)
        fed.researcher.wait_for_sites(list(SITES))
        yield setup
    finally:
        fed.close()
        fed.processes.close(kill=True)


def _pooled(stores: dict[str, Path]) -> pd.DataFrame:
    frames = []
    for name in SITES:
        with Store(stores[name]).snapshot() as snapshot:
            table = store_table(snapshot, parse_query(COHORT), parse_definitions(VARIABLES), key=name)
        frames.append(pd.DataFrame({n: table.column(n) for n in table.names()}))
    frame = pd.concat(frames, ignore_index=True)
    return frame[frame["sex"].isin(["female", "male"])].dropna(subset=["age"])


def test_logistic_regression_across_agents_equals_the_pooled_fit(hub: AnalysisHub) -> None:
    project = hub.project(list(SITES))
    with hub.client(project) as client:
        assert client.sites() == sorted(SITES)
        fit = client.glm("t2d ~ age + factor(sex)", family="binomial", where=BINARY_SEX)
        summary = client.summary("age", where=BINARY_SEX)
    pooled = _pooled(hub.stores)
    x = sm.add_constant(pd.DataFrame({"age": pooled["age"], "male": (pooled["sex"] == "male").astype(float)}))
    reference = sm.GLM(pooled["t2d"].astype(float), x, family=sm.families.Binomial()).fit(tol=1e-12)
    assert fit.names == ["(Intercept)", "age", "factor(sex)male"]
    np.testing.assert_allclose(fit.coef, reference.params.to_numpy(), rtol=1e-8)
    np.testing.assert_allclose(fit.se, reference.bse.to_numpy(), rtol=1e-8)
    assert fit.deviance == pytest.approx(reference.deviance, rel=1e-8)
    assert fit.null_deviance == pytest.approx(reference.null_deviance, rel=1e-8)
    assert fit.n == len(pooled) and fit.sites == sorted(SITES) and fit.converged
    assert summary["age"]["mean"] == pytest.approx(pooled["age"].mean(), rel=1e-12)


def test_a_site_that_misses_the_deadline_is_named(hub: AnalysisHub) -> None:
    hub.fed.add_site("an-slow")
    hub.start_agent("an-slow", hub.stores[SITES[0]], analysis_delay=8)
    hub.fed.researcher.wait_for_sites(["an-slow"])
    project = hub.project(["an-a", "an-b", "an-slow"])
    with hub.client(project) as client, pytest.raises(AnalysisError) as raised:
        client.summary("age")
    assert [(e["site"], e["code"]) for e in raised.value.errors] == [("an-slow", "no_answer")]
    assert "an-slow" in raised.value.errors[0]["message_de"]
    hub.fed.processes.agents.pop("an-slow").stop(kill=True)


def test_an_agent_restarted_mid_fit_fails_the_fit_with_the_site_named(hub: AnalysisHub) -> None:
    hub.fed.add_site("an-restart")
    # the third analysis task (the second Fisher scoring round) is held until the agent is killed
    hub.start_agent("an-restart", hub.stores[SITES[1]], analysis_delay=60, analysis_delay_from=3)
    hub.fed.researcher.wait_for_sites(["an-restart"])
    project = hub.project(["an-a", "an-restart"])
    outcome: dict[str, object] = {}

    def fit() -> None:
        with hub.client(project) as client:
            try:
                outcome["fit"] = client.glm("t2d ~ age + factor(sex)", family="binomial", where=BINARY_SEX)
            except AnalysisError as error:
                outcome["error"] = error

    worker = threading.Thread(target=fit)
    worker.start()
    hub.fed.wait_for(lambda: "holding analysis task" in hub.fed.agent_log("an-restart"), "the held task")
    hub.fed.processes.agents.pop("an-restart").stop(kill=True)
    hub.start_agent("an-restart", hub.stores[SITES[1]])
    worker.join(30)
    assert not worker.is_alive()
    error = outcome.get("error")
    assert isinstance(error, AnalysisError), outcome
    assert [(e["site"], e["code"]) for e in error.errors] == [("an-restart", "site_restarted")]
    hub.fed.processes.agents.pop("an-restart").stop(kill=True)


def test_a_project_that_is_not_approved_is_refused(hub: AnalysisHub) -> None:
    project = hub.project(list(SITES), state="committee-review")
    with hub.client(project) as client, pytest.raises(AnalysisError) as raised:
        client.summary("age")
    assert raised.value.errors[0]["code"] == "http_403"


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
_keys = st.sampled_from(
    [
        "formula",
        "family",
        "link",
        "variables",
        "variable",
        "probs",
        "where",
        "sites",
        "data",
        "group",
        "name",
        "derive",
        "subset",
        "weights",
        "tol",
        "max_iter",
    ]
)
_body = (
    st.dictionaries(_keys, _json, max_size=5).map(lambda b: {"data": {"variables": VARIABLES}, **b}) | _json
)
_operation = st.sampled_from(
    ["glm", "summary", "describe", "table", "quantiles", "cor", "by_group", "glm_slma", "assign", "nope"]
)


def test_fuzzed_analysis_requests_get_structured_4xx_never_5xx(hub: AnalysisHub) -> None:
    project = hub.project(list(SITES))
    client = hub.fed.researcher.client

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(operation=_operation, body=_body)
    def check(operation: str, body: object) -> None:
        response = client.post(f"/api/v1/analysis/projects/{project}/{operation}", json=body)
        assert response.status_code < 500, response.text
        document = response.json()
        if response.status_code >= 400:
            assert document["ok"] is False
            for error in document["errors"]:
                assert {"code", "rule", "threshold", "site", "message_en", "message_de"} <= set(error)

    check()


SURVIVAL = {
    **VARIABLES,
    "days": {
        "kind": "time_to_event",
        "value": "time",
        "start": {"on": "admission"},
        "event": {"on": "death"},
    },
    "died": {
        "kind": "time_to_event",
        "value": "event",
        "start": {"on": "admission"},
        "event": {"on": "death"},
    },
}


def test_cox_with_each_sites_proportional_hazards_test_over_http(hub: AnalysisHub) -> None:
    project = hub.project(list(SITES))
    with hub.client(project) as client:
        client.variables = SURVIVAL
        fit = client.cox("days", "died", ["age"], bin_width=90.0, ph_test="km")
        with pytest.raises(AnalysisError, match="ph_test"):
            client.cox("days", "died", ["age"], bin_width=90.0, ph_test="rank")
    assert set(fit["ph_tests"]) == set(SITES)
    for answer in fit["ph_tests"].values():
        assert answer == {"transform": "km", "covariates": {"age": answer["covariates"]["age"]}}
        assert set(answer["covariates"]["age"]) == {"statistic", "p"}
        assert 0 <= answer["covariates"]["age"]["p"] <= 1


def test_piecewise_exponential_over_http_gives_a_hazard_ratio_per_covariate(hub: AnalysisHub) -> None:
    project = hub.project(list(SITES))
    with hub.client(project) as client:
        client.variables = SURVIVAL
        fit = client.pwe("days", "died", ["age"], bin_width=3650.0)
        with pytest.raises(AnalysisError, match="bin_width: expected a positive"):
            client.pwe("days", "died", ["age"], bin_width=-1.0)
    assert fit.family == "poisson" and fit.names[-1] == "age" and fit.converged
    assert fit.formula.endswith("offset(log(lexis_exposure))")
