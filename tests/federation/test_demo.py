"""`datenraum demo --once` end to end, on small sites: the real `datenraum hub` and `site serve` commands,
the feasibility query and the federated analysis in the project the demo seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from datenraum.analysis.variables import parse_definitions
from datenraum.devtools import demo
from datenraum.devtools.demo_project import COHORT, EXAMPLE_VARIABLES
from datenraum.devtools.ports import free_port
from datenraum.query.model import parse_query
from datenraum.site.analysis.variables import store_table
from datenraum.site.store import Store
from datenraum.site.studies.database import EdcDatabase

SMALL_SITES = (
    demo.DemoSite("nord", "Klinikum Nord", 300, 1, 0),
    demo.DemoSite("sued", "Klinikum Süd", 200, 2, 1),
    demo.DemoSite("west", "Klinikum West", 200, 3, 2),
)


def test_the_demo_asks_every_site_through_the_hub_and_says_how_to_go_on(tmp_path):
    lines: list[str] = []
    outcome = demo.run(tmp_path, port=free_port(), once=True, sites=SMALL_SITES, say=lines.append)
    result = outcome.query

    assert {answer["site"]: answer["state"] for answer in result["sites"]} == {
        "nord": "answered",
        "sued": "answered",
        "west": "answered",
    }
    output = "\n".join(lines)
    for site in SMALL_SITES:
        assert f"  {site.name} " in output
    assert "  all 3 sites " in output
    assert 'curl -s -H "Authorization: Bearer $(cat ' in output
    assert "Open the research portal in a browser: http://127.0.0.1:" in output
    assert f"{demo.DEMO_USER} / {demo.DEMO_PASSWORDS[demo.DEMO_USER]}" in output
    assert (tmp_path / "federation" / "query.json").exists()

    # the seeded project: every site agreed, and the example's rounds went through the hub and back
    example = outcome.analysis
    assert example.sites == sorted(site.key for site in SMALL_SITES)
    pooled = _pooled_rows(tmp_path)
    assert example.summary["age"]["n"] == len(pooled)
    assert example.summary["age"]["mean"] == pytest.approx(pooled["age"].mean(), rel=1e-12)
    x = pd.DataFrame(
        {"age": pooled["age"], "male": (pooled["sex"] == "male").astype(float), "htn": pooled["htn"]}
    )
    reference = sm.GLM(pooled["t2d"].astype(float), sm.add_constant(x), family=sm.families.Binomial()).fit(
        tol=1e-12
    )
    fit = example.glm
    assert fit["names"] == ["(Intercept)", "age", "factor(sex)male", "htn"] and fit["converged"]
    np.testing.assert_allclose(fit["coef"], reference.params.to_numpy(), rtol=1e-8)
    np.testing.assert_allclose(fit["se"], reference.bse.to_numpy(), rtol=1e-8)
    assert f"Federated analysis in project {example.project} (3 sites)" in output
    assert f"/api/v1/analysis/projects/{example.project}/summary" in output
    # the multicentre study: participants enrolled at two sites with their baseline visit complete
    assert "Open a site's study EDC (data entry inside the hospital) in a browser:" in output
    assert f"dokumentation@nord.demo.example / {demo.DEMO_EDC_PASSWORD}" in output
    for site in ("nord", "sued"):
        database = EdcDatabase(tmp_path / "edc" / site / "edc.sqlite")
        try:
            statuses = database.rows("SELECT status, count(*) AS n FROM form_instance GROUP BY status")
            participants = database.rows("SELECT count(*) AS n FROM participant")[0]["n"]
        finally:
            database.close()
        assert participants == 3
        assert [(row["status"], row["n"]) for row in statuses] == [("complete", 6)]
    assert not (tmp_path / "edc" / "west").exists()
    # the agents keep what they released beside their journal
    for site in SMALL_SITES:
        assert (tmp_path / site.key / "agent" / "releases.sqlite").exists()


def _pooled_rows(workdir) -> pd.DataFrame:
    """The example's rows, read from the demo's stores as the sites build them."""
    frames = []
    for site in SMALL_SITES:
        with Store(workdir / site.key / "store").snapshot() as snapshot:
            table = store_table(
                snapshot, parse_query(COHORT), parse_definitions(EXAMPLE_VARIABLES), key=site.key
            )
        frames.append(pd.DataFrame({name: table.column(name) for name in table.names()}))
    frame = pd.concat(frames, ignore_index=True)
    return frame[frame["sex"].isin(["female", "male"])].dropna(subset=["age"])


def test_the_demo_reuses_stores_that_hold_their_recipe(tmp_path):
    site = (demo.DemoSite("tiny", "Tiny", 20, 5, 0),)
    first: list[str] = []
    demo.prepare_sites(tmp_path, site, say=first.append)
    again: list[str] = []
    demo.prepare_sites(tmp_path, site, say=again.append)
    assert first and not again
