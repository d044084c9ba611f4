"""Time-to-event variables from the site store: start (first diagnosis, admission, a date), event
(death, a diagnosis, a lab value beyond a threshold), censoring at the site's data end, on the MII KDS
test data (known dates) and on a synthetic store (Kaplan–Meier and Cox at the site, and the attack of
two cohort queries that differ by one patient)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from datenraum.analysis.variables import VariableError, parse_definitions
from datenraum.privacy.analysis import AnalysisPolicy
from datenraum.query.model import parse_query
from datenraum.site.analysis.executor import SiteExecutor
from datenraum.site.analysis.time_to_event import store_data_end
from datenraum.site.analysis.variables import store_table, variables_sql
from datenraum.site.feasibility import StoreEngine
from datenraum.site.ingest import ingest
from datenraum.site.store import Snapshot, Store
from datenraum.synth import generate

PATIENT_1 = "mii-exa-test-data-patient-1"  # admitted 2024-02-14 (IMP), B05 on 2024-02-21, died 2024-02-22
DIED_UNDATED = "mii-exa-test-data-patient-2"  # deceasedBoolean true


def tte(value: str, start: dict, event: dict) -> dict:
    return {"kind": "time_to_event", "value": value, "start": start, "event": event}


ADMISSION = {"on": "admission", "classes": ["IMP"]}
DEATH = {"on": "death"}
DEFINITIONS = {
    "adm_days": tte("time", ADMISSION, DEATH),
    "adm_died": tte("event", ADMISSION, DEATH),
    "dx_days": tte("time", {"on": "condition", "codes": ["B05"]}, DEATH),
    "tb_days": tte("time", {"on": "date", "date": "2024-01-01"}, {"on": "condition", "codes": ["A15"]}),
    "tb_seen": tte("event", {"on": "date", "date": "2024-01-01"}, {"on": "condition", "codes": ["A15"]}),
    "hb_days": tte("time", ADMISSION, {"on": "observation", "codes": ["718-7"], "unit": "g/dL", "above": 40}),
    "hb_seen": tte(
        "event", ADMISSION, {"on": "observation", "codes": ["718-7"], "unit": "g/dL", "above": 40}
    ),
}


@pytest.fixture(scope="module")
def kds_store(tmp_path_factory: pytest.TempPathFactory, mii_kds_testdata: Path) -> Path:
    folder = tmp_path_factory.mktemp("kds") / "store"
    ingest(folder, [mii_kds_testdata])
    return folder


@pytest.fixture
def kds(kds_store: Path) -> Iterator[Snapshot]:
    with Store(kds_store).snapshot() as snapshot:
        yield snapshot


def per_patient(snapshot: Snapshot, data_end: dt.date | None = None) -> dict[str, dict[str, float | None]]:
    ids = [r[0] for r in snapshot.connection.sql("SELECT DISTINCT patient_id FROM patient").fetchall()]
    snapshot.connection.register("everyone", pa.table({"patient_id": ids}))
    end = data_end or store_data_end(snapshot)
    sql, params = variables_sql(parse_definitions(DEFINITIONS), "everyone", dt.date(2026, 1, 1), end)
    table = snapshot.connection.sql(sql, params=params).to_arrow_table()
    snapshot.connection.unregister("everyone")
    return {row.pop("patient_id"): row for row in table.to_pylist()}


def test_days_from_admission_and_from_first_diagnosis_to_death(kds: Snapshot) -> None:
    rows = per_patient(kds)
    assert rows[PATIENT_1]["adm_days"] == 8.0 and rows[PATIENT_1]["adm_died"] == 1.0
    assert rows[PATIENT_1]["dx_days"] == 1.0


def test_a_death_without_a_date_leaves_the_time_missing_not_censored(kds: Snapshot) -> None:
    rows = per_patient(kds)
    assert rows[DIED_UNDATED]["adm_days"] is None and rows[DIED_UNDATED]["adm_died"] is None


def test_follow_up_is_censored_at_the_latest_date_of_the_store(kds: Snapshot) -> None:
    end = store_data_end(kds)
    assert end == dt.date(2025, 4, 15)
    rows = per_patient(kds)
    assert rows[PATIENT_1]["tb_days"] == 52.0 and rows[PATIENT_1]["tb_seen"] == 1.0  # A15.0 on 2024-02-22
    others = [r for pid, r in rows.items() if pid != PATIENT_1]
    censored = (end - dt.date(2024, 1, 1)).days
    assert {r["tb_days"] for r in others} == {float(censored)}
    assert {r["tb_seen"] for r in others} == {0.0}


def test_a_data_end_before_the_event_censors_it(kds: Snapshot) -> None:
    rows = per_patient(kds, data_end=dt.date(2024, 2, 20))
    assert rows[PATIENT_1]["adm_days"] == 6.0 and rows[PATIENT_1]["adm_died"] == 0.0
    assert rows[PATIENT_1]["dx_days"] is None  # the start (2024-02-21) lies after the data end


def test_a_lab_value_above_the_threshold_is_the_event(kds: Snapshot) -> None:
    rows = per_patient(kds)
    # patient 1's haemoglobin of 45 g/dL on 2024-02-15, the day after the admission
    assert rows[PATIENT_1]["hb_days"] == 1.0 and rows[PATIENT_1]["hb_seen"] == 1.0
    assert all(r["hb_seen"] in (0.0, None) for pid, r in rows.items() if pid != PATIENT_1)


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ({"kind": "time_to_event", "value": "days"}, "variables.t.value: expected one of time, event"),
        (tte("time", {"on": "birth"}, DEATH), "variables.t.start.on: expected one of"),
        (tte("time", {"on": "condition"}, DEATH), "variables.t.start.codes: expected a list"),
        (
            tte("time", {"on": "condition", "codes": ["C50'; --"]}, DEATH),
            "is not a valid entry (ICD-10 codes)",
        ),
        (tte("time", {"on": "date", "date": "2024-02-30"}, DEATH), "variables.t.start.date: expected a date"),
        (tte("time", ADMISSION, {"on": "death", "codes": ["I21"]}), "variables.t.event: unknown fields"),
        (tte("time", ADMISSION, {"on": "observation", "codes": ["718-7"]}), "either above or below"),
        (
            tte("time", ADMISSION, {"on": "observation", "codes": ["718-7"], "above": "high"}),
            "variables.t.event.above: expected a number",
        ),
        (tte("time", ADMISSION, []), "variables.t.event: expected an object"),
        ({**tte("time", ADMISSION, DEATH), "sql": "1"}, "variables.t: unknown fields for time_to_event"),
    ],
)
def test_a_bad_definition_names_the_field(definition: dict, message: str) -> None:
    with pytest.raises(VariableError, match=None) as error:
        parse_definitions({"t": definition})
    assert message in str(error.value)


# -- a synthetic store: the executor on time-to-event variables, and cohorts that differ by one patient

SYNTH_VARIABLES = parse_definitions(
    {
        "days": tte("time", {"on": "admission"}, DEATH),
        "died": tte("event", {"on": "admission"}, DEATH),
        "age": {"kind": "age", "at": "2024-01-01"},
    }
)


def older_than(age: int) -> dict:
    return {
        "inclusionCriteria": [
            [
                {
                    "context": {"system": "fdpg.mii.cds", "code": "Patient", "display": "Patient"},
                    "termCodes": [
                        {"system": "http://snomed.info/sct", "code": "424144002", "display": "Alter"}
                    ],
                    "valueFilter": {
                        "type": "quantity-comparator",
                        "comparator": "gt",
                        "value": age,
                        "unit": {"code": "a", "display": "Jahre"},
                    },
                }
            ]
        ]
    }


@pytest.fixture(scope="module")
def synth_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("synth-survival")
    generate(folder / "data", 300, 5, workers=1)
    ingest(folder / "store", [folder / "data"])
    return folder / "store"


def executor_on(snapshot: Snapshot) -> SiteExecutor:
    def resolve(request) -> object:
        cohort = request.data.cohort
        return store_table(
            snapshot, parse_query(cohort), SYNTH_VARIABLES, key=str(cohort["inclusionCriteria"])
        )

    return SiteExecutor(resolve, AnalysisPolicy(rounding=1))


def request(op: str, cohort: dict, **fields: object) -> dict:
    return {
        "v": 1,
        "op": op,
        "project": "p",
        "analyst": "a",
        "data": {"cohort": cohort, "variables": {d.name: d.to_json() for d in SYNTH_VARIABLES}},
        "where": [],
        "time": "days",
        "event": "died",
        "bin_width": 90.0,
        **fields,
    }


def test_km_and_cox_at_the_site_on_time_to_event_variables(synth_store: Path) -> None:
    with Store(synth_store).snapshot() as snapshot:
        executor = executor_on(snapshot)
        km = executor.handle(request("km", older_than(18)))
        cox = executor.handle(
            request("cox.step", older_than(18), covariates=["age"], beta=[0.0], ties="breslow")
        )
        table = store_table(snapshot, parse_query(older_than(18)), SYNTH_VARIABLES, key="k")
    assert km["ok"] and cox["ok"], (km, cox)
    days, died = table.column("days"), table.column("died")
    usable = ~np.isnan(days)
    counts = km["result"]["groups"]["all"]
    assert counts["n_risk"][0] == usable.sum()
    assert sum(counts["events"]) == died[usable].sum() > 5
    assert cox["result"]["events"] == died[usable].sum()


def test_two_cohort_queries_that_differ_by_one_patient_are_refused_as_differencing(
    synth_store: Path,
) -> None:
    with Store(synth_store).snapshot() as snapshot:
        engine = StoreEngine(snapshot)
        sizes = {a: len(engine.patient_ids(parse_query(older_than(a)))) for a in range(40, 91)}
        age = next(a for a in range(40, 90) if sizes[a] - sizes[a + 1] == 1 and sizes[a + 1] >= 30)
        executor = executor_on(snapshot)
        cox = {"covariates": ["age"], "beta": [0.0], "ties": "breslow"}
        first = executor.handle(request("cox.step", older_than(age), **cox))
        second = executor.handle(request("cox.step", older_than(age + 1), **cox))
    assert first["ok"], first
    assert not second["ok"]
    assert second["error"]["rule"] == "differencing"
    assert "result" not in second


def test_the_sites_data_end_is_a_date_in_its_config() -> None:
    from datenraum.site.agent.config import ConfigError, parse_config

    assert parse_config({"analysis": {"data_end": dt.date(2025, 6, 30)}}).data_end == dt.date(2025, 6, 30)
    assert parse_config({"analysis": {"data_end": "2025-06-30"}}).data_end == dt.date(2025, 6, 30)
    assert parse_config({}).data_end is None
    with pytest.raises(ConfigError, match=r"analysis\.data_end: expected a date"):
        parse_config({"analysis": {"data_end": "June"}})
