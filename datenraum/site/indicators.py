"""The dashboard's site job: every indicator of the registry over the site store, as a cube of aggregates.

`compute_cube(engine, registry, as_of)` runs one SQL statement per disease through the store-reading
engine interface (anything with `sql(statement) -> pyarrow.Table` and `dialect`, see `SnapshotEngine`
and, on the `spark` branch, `datenraum.site.engines.SiteEngine`; the statements are DuckDB's dialect)
and returns the cube: per disease and indicator the full series from the disease's start day to `as_of`
(inclusive, "data as of yesterday 24:00" when the agent runs it daily), one row per period and stratum
with a value, only rows with a value above 0 (all other cells are 0). No patient-level row leaves this
module: the statement's result is already grouped.

Days are Europe/Berlin calendar days (the store keeps UTC); ISO weeks are Monday to Sunday,
`YYYY-Www`. A case is a facility contact (no `partOf`, not a unit-level contact) of class IMP; a
marker case one whose patient has the disease's marker from `before_days` before its admission to its
discharge (or the end of `as_of`, if it is still running then): a diagnosis with one of the disease's
ICD-10-GM codes and a reliability not excluded (e.g. not "A"), or a positive case-linked test (a result
with an encounter). Care levels: an ICU unit contact of the case (Fachabteilungsschluessel 36xx), and
ventilation and ECMO procedures of the case (or of its unit contacts) overlapping the day. Strata are
computed here: sex, RKI age group at the event, federal state from the residence postal code (read from
the stored Patient resource: the postal code itself never leaves the site, only the state).

The same computation runs at the site's command line: `datenraum indicators --store DIR --json`.
"""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from datenraum.indicators.cube import COLUMNS, CUBE_FORMAT
from datenraum.indicators.registry import Disease, Indicator, Registry

if TYPE_CHECKING:
    import pyarrow as pa

    from datenraum.site.store import Snapshot

__all__ = ["SnapshotEngine", "SqlEngine", "compute_cube", "open_snapshot_engine"]

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
_LEVELS = {"ward": 1, "icu": 2, "ventilation": 3, "ecmo": 4}
_POSITIVE_VALUES = ("260373001", "10828004")  # SNOMED: Detected, Positive
_POSITIVE_INTERPRETATION = ("POS", "DET", "P")
_LOINC = "http://loinc.org"
_SNOMED = "http://snomed.info/sct"


class SqlEngine(Protocol):
    """What the computation needs of an engine: the store's tables to one SELECT in `dialect`."""

    dialect: str

    def sql(self, statement: str) -> pa.Table: ...


class SnapshotEngine:
    """The DuckDB engine over one snapshot (the same shape as `datenraum.site.engines.DuckDBEngine`)."""

    dialect = "duckdb"

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def sql(self, statement: str) -> pa.Table:
        return self.snapshot.connection.sql(statement).to_arrow_table()


@contextmanager
def open_snapshot_engine(store: Path) -> Iterator[SnapshotEngine]:
    from datenraum.site.store import Store

    with Store(store).snapshot() as snapshot:
        yield SnapshotEngine(snapshot)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _in(values: tuple[str, ...] | list[str]) -> str:
    return "(" + ", ".join(_quote(v) for v in values) + ")" if values else "(NULL)"


def _local_day(expression: str) -> str:
    return f"CAST(timezone('Europe/Berlin', timezone('UTC', {expression})) AS DATE)"


def end_of_day_utc(day: dt.date) -> dt.datetime:
    """The UTC instant (naive, as the store keeps times) at which the Berlin day `day` ends."""
    local = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), BERLIN)
    return local.astimezone(dt.UTC).replace(tzinfo=None)


class _Statement:
    """The SQL of one disease's cube."""

    def __init__(self, registry: Registry, disease: Disease, as_of: dt.date) -> None:
        self.registry = registry
        self.care = registry.care
        self.disease = disease
        self.as_of = f"DATE '{as_of.isoformat()}'"
        self.start = f"DATE '{disease.start.isoformat()}'"
        self.end_ts = f"TIMESTAMP '{end_of_day_utc(as_of).isoformat(sep=' ')}'"

    def end_day(self, expression: str) -> str:
        """The last day of an interval ending at `expression`: `as_of` for one open or ending later."""
        return f"(CASE WHEN {expression} IS NULL OR {expression} >= {self.end_ts} THEN {self.as_of} ELSE {_local_day(expression)} END)"

    def _icd_match(self, codes: tuple[str, ...], prefixes: tuple[str, ...] = ()) -> str:
        parts = []
        if codes:
            parts.append(f"code IN {_in(codes)}")
        parts.extend(f"code LIKE {_quote(p + '%')}" for p in prefixes)
        return "(" + " OR ".join(parts or ["FALSE"]) + ")"

    def _procedure_match(self, snomed: tuple[str, ...], ops: tuple[str, ...]) -> str:
        parts = [f"(code_system = '{_SNOMED}' AND code IN {_in(snomed)})"]
        if ops:
            likes = " OR ".join(f"code LIKE {_quote(p + '%')}" for p in ops)
            parts.append(f"(code_system LIKE '%ops%' AND ({likes}))")
        return "(" + " OR ".join(parts) + ")"

    def base(self) -> str:
        d, care = self.disease, self.care
        excluded = _in(d.excluded_certainty) if d.excluded_certainty else "('')"
        lr = ", ".join(f"({_quote(k)}, {_quote(v)})" for k, v in care.leitregion.items())
        sex = " ".join(f"WHEN {_quote(k)} THEN {_quote(v)}" for k, v in care.sex.items())
        icd_system = "code_system LIKE '%icd-10-gm%'"
        valid_condition = (
            f"coalesce(diagnosis_certainty, '') NOT IN {excluded} "
            "AND coalesce(verification_status, '') NOT IN ('refuted', 'entered-in-error')"
        )
        ld = _local_day
        return f"""
marker AS MATERIALIZED (
  SELECT patient_id, coalesce(recorded_date, onset_datetime) AS t FROM condition
  WHERE {icd_system} AND {self._icd_match(d.icd10gm)} AND {valid_condition}
    AND coalesce(recorded_date, onset_datetime) IS NOT NULL
  UNION ALL
  SELECT patient_id, effective AS t FROM observation
  WHERE code_system = '{_LOINC}' AND code IN {_in(d.positive_loinc)} AND encounter_id IS NOT NULL
    AND effective IS NOT NULL AND coalesce(status, '') NOT IN ('cancelled', 'entered-in-error')
    AND (value_code IN {_in(_POSITIVE_VALUES)} OR interpretation_code IN {_in(_POSITIVE_INTERPRETATION)})
),
sari_dx AS MATERIALIZED (
  SELECT DISTINCT patient_id, encounter_id FROM condition
  WHERE {icd_system} AND {self._icd_match((), care.sari_prefixes)} AND {valid_condition} AND encounter_id IS NOT NULL
),
enc AS MATERIALIZED (
  SELECT id, any_value(patient_id) AS patient_id, any_value(class_code) AS class_code,
         any_value(period_start) AS s, any_value(period_end) AS e, any_value(service_type_code) AS dept,
         any_value(part_of_id) AS part_of,
         coalesce(bool_or(type_code IN ('abteilungskontakt', 'versorgungsstellenkontakt')), FALSE) AS sub
  FROM encounter
  WHERE period_start IS NOT NULL AND coalesce(status, '') NOT IN ('cancelled', 'entered-in-error', 'planned')
    AND patient_id IN (SELECT patient_id FROM marker UNION SELECT patient_id FROM sari_dx)
  GROUP BY id
),
enc_case AS MATERIALIZED (SELECT id AS enc_id, coalesce(part_of, id) AS case_id FROM enc),
cases AS MATERIALIZED (
  SELECT id, patient_id, s, e, {ld("s")} AS d0, {self.end_day("e")} AS d1,
         (e IS NOT NULL AND e < {self.end_ts}) AS finished
  FROM enc WHERE class_code = 'IMP' AND part_of IS NULL AND NOT sub AND s < {self.end_ts}
),
mcases AS MATERIALIZED (
  SELECT c.* FROM cases c WHERE EXISTS (
    SELECT 1 FROM marker m WHERE m.patient_id = c.patient_id
      AND m.t >= c.s - INTERVAL {d.before_days} DAY AND m.t <= coalesce(c.e, {self.end_ts}) AND m.t < {self.end_ts})
),
sari_cases AS MATERIALIZED (
  SELECT c.* FROM cases c WHERE c.id IN (SELECT ec.case_id FROM sari_dx x JOIN enc_case ec ON ec.enc_id = x.encounter_id)
),
units AS MATERIALIZED (
  SELECT part_of AS case_id, s, {ld("s")} AS a, {self.end_day("e")} AS b FROM enc
  WHERE part_of IN (SELECT id FROM mcases) AND dept IN {_in(care.icu_departments)} AND s < {self.end_ts}
),
procs AS MATERIALIZED (
  SELECT ec.case_id, {ld("p.performed_start")} AS a, {self.end_day("coalesce(p.performed_end, p.performed_start)")} AS b,
         CASE WHEN {self._procedure_match(care.ecmo_snomed, care.ecmo_ops_prefixes)} THEN 4 ELSE 3 END AS lvl
  FROM procedure p JOIN enc_case ec ON ec.enc_id = p.encounter_id
  WHERE ec.case_id IN (SELECT id FROM mcases) AND p.performed_start IS NOT NULL AND p.performed_start < {self.end_ts}
    AND coalesce(p.status, '') NOT IN ('not-done', 'entered-in-error')
    AND ({self._procedure_match(care.ventilation_snomed, care.ventilation_ops_prefixes)}
         OR {self._procedure_match(care.ecmo_snomed, care.ecmo_ops_prefixes)})
),
care_iv AS MATERIALIZED (
  SELECT case_id, a, b, 2 AS lvl FROM units UNION ALL SELECT case_id, a, b, lvl FROM procs
),
leitregion(prefix, state) AS (VALUES {lr}),
pat AS MATERIALIZED (
  SELECT p.id AS patient_id, CASE p.gender {sex} ELSE 'unknown' END AS sex, p.birth_date,
         p.deceased_datetime, coalesce(lr.state, 'unknown') AS state
  FROM patient p
  LEFT JOIN (
    SELECT id, json_extract_string(json, '$.address[0].postalCode') AS plz FROM resource
    WHERE resource_type = 'Patient' AND id IN (SELECT patient_id FROM mcases UNION SELECT patient_id FROM sari_cases)
  ) r ON r.id = p.id
  LEFT JOIN leitregion lr ON regexp_full_match(coalesce(r.plz, ''), '[0-9]{{5}}') AND lr.prefix = substr(r.plz, 1, 2)
  WHERE p.id IN (SELECT patient_id FROM mcases UNION SELECT patient_id FROM sari_cases)
),
case_days AS MATERIALIZED (
  SELECT id AS case_id, patient_id, CAST(unnest(generate_series(d0, d1, INTERVAL 1 DAY)) AS DATE) AS d
  FROM mcases WHERE d1 >= d0
),
patient_levels AS MATERIALIZED (
  SELECT cd.patient_id, cd.d, max(coalesce(x.lvl, 1)) AS lvl
  FROM case_days cd LEFT JOIN care_iv x ON x.case_id = cd.case_id AND cd.d BETWEEN x.a AND x.b
  GROUP BY cd.patient_id, cd.d
)"""

    def events(self, indicator: Indicator) -> str:
        """(unit, patient_id, d[, level][, los_bin]) of the indicator's events."""
        kind, params = indicator.kind, indicator.params
        if kind == "new_cases":
            return "SELECT patient_id AS unit, patient_id, d0 AS d FROM mcases"
        if kind == "occupancy":
            levels = " ".join(f"WHEN {n} THEN {_quote(k)}" for k, n in _LEVELS.items())
            return f"SELECT patient_id AS unit, patient_id, d, CASE lvl {levels} END AS level FROM patient_levels"
        if kind == "occupancy_at_least":
            return (
                "SELECT patient_id AS unit, patient_id, d FROM patient_levels "
                f"WHERE lvl >= {_LEVELS[params['min_level']]}"
            )
        if kind == "icu_admissions":
            return (
                "SELECT c.patient_id AS unit, c.patient_id, min(u.a) AS d "
                "FROM mcases c JOIN units u ON u.case_id = c.id GROUP BY c.id, c.patient_id"
            )
        if kind == "deaths":
            return (
                f"SELECT c.patient_id AS unit, c.patient_id, {_local_day('p.deceased_datetime')} AS d "
                "FROM mcases c JOIN pat p ON p.patient_id = c.patient_id "
                f"WHERE p.deceased_datetime >= c.s AND p.deceased_datetime <= coalesce(c.e, {self.end_ts}) "
                f"AND p.deceased_datetime < {self.end_ts}"
            )
        if kind == "tests":
            condition = ""
            if params.get("positive"):
                condition = (
                    f"AND (value_code IN {_in(_POSITIVE_VALUES)} "
                    f"OR interpretation_code IN {_in(_POSITIVE_INTERPRETATION)})"
                )
            return (
                f"SELECT id AS unit, patient_id, {_local_day('effective')} AS d FROM observation "
                f"WHERE code_system = '{_LOINC}' AND code IN {_in(self.disease.positive_loinc)} "
                f"AND encounter_id IS NOT NULL AND effective IS NOT NULL AND effective < {self.end_ts} "
                f"AND coalesce(status, '') NOT IN ('cancelled', 'entered-in-error') {condition}"
            )
        if kind == "length_of_stay":
            bins = " ".join(
                f"WHEN n >= {low}"
                + (f" AND n <= {high}" if high is not None else "")
                + f" THEN {_quote(label)}"
                for low, high, label in self.care.los_bins
            )
            return (
                f"SELECT unit, patient_id, d, CASE {bins} END AS los_bin FROM ("
                "SELECT id AS unit, patient_id, d1 AS d, greatest(1, date_diff('day', d0, d1)) AS n "
                "FROM mcases WHERE finished)"
            )
        if kind == "severity":
            within = int(params.get("within_days", 30))
            return (
                "SELECT c.patient_id AS unit, c.patient_id, c.d0 AS d FROM mcases c WHERE EXISTS ("
                f"SELECT 1 FROM care_iv x WHERE x.case_id = c.id AND x.a <= c.d0 + {within} AND x.b >= c.d0)"
            )
        if kind == "sari":
            source = "sari_cases"
            if params.get("with_marker"):
                source = "(SELECT * FROM sari_cases WHERE id IN (SELECT id FROM mcases))"
            return f"SELECT patient_id AS unit, patient_id, d0 AS d FROM {source}"
        raise AssertionError(f"unknown kind {kind}")

    def aggregate(self, indicator: Indicator) -> str:
        care = self.care
        period = "strftime(e.d, '%G-W%V')" if indicator.bucket == "iso_week" else "strftime(e.d, '%Y-%m-%d')"
        age = "(date_diff('year', p.birth_date, e.d) - CASE WHEN strftime(e.d, '%m-%d') < strftime(p.birth_date, '%m-%d') THEN 1 ELSE 0 END)"
        age_groups = " ".join(
            f"WHEN {age} >= {low}"
            + (f" AND {age} <= {high}" if high is not None else "")
            + f" THEN {_quote(label)}"
            for low, high, label in care.age_rki
        )
        dims = indicator.dimensions
        expressions = {
            "level": "e.level",
            "los_bin": "e.los_bin",
            "sex": "coalesce(p.sex, 'unknown')",
            "age_rki": f"(CASE WHEN p.birth_date IS NULL THEN 'unknown' {age_groups} ELSE 'unknown' END)",
            "state": "coalesce(p.state, 'unknown')",
        }
        needs_patient = any(d in dims for d in ("sex", "age_rki", "state"))
        join = "LEFT JOIN pat p ON p.patient_id = e.patient_id" if needs_patient else ""
        inner = ", ".join([f"{period} AS period", *(f"{expressions[d]} AS {d}" for d in dims), "e.unit"])
        sets = [["period"]] if indicator.kind not in ("occupancy", "length_of_stay") else []
        if indicator.kind == "occupancy":
            sets.append(["period"])  # the total over levels, as well
        sets.extend(["period", *stratum] for stratum in indicator.strata)
        grouping = ", ".join("(" + ", ".join(s) + ")" for s in sets)
        columns = [f"{_quote(indicator.id)} AS indicator", "period"]
        for name in COLUMNS[2:-1]:
            columns.append(f"{name}" if name in dims else f"CAST(NULL AS VARCHAR) AS {name}")
        columns.append("count(DISTINCT unit) AS value")
        return (
            f"SELECT {', '.join(columns)} FROM (SELECT {inner} FROM ({self.events(indicator)}) e {join} "
            f"WHERE e.d >= {self.start} AND e.d <= {self.as_of}) GROUP BY GROUPING SETS ({grouping})"
        )

    def statement(self) -> str:
        parts = [self.aggregate(indicator) for indicator in self.registry.indicators.values()]
        return "WITH " + self.base() + "\n" + "\nUNION ALL\n".join(parts)


def _completeness(engine: SqlEngine, registry: Registry) -> dict[str, bool]:
    """What the site's data can support at all (the DDP's "exclude what you cannot produce")."""
    care = registry.care
    s = _Statement(registry, next(iter(registry.diseases.values())), dt.date.today())
    row = engine.sql(
        f"""SELECT
  EXISTS (SELECT 1 FROM encounter WHERE part_of_id IS NOT NULL AND service_type_code IN {_in(care.icu_departments)}) AS icu,
  EXISTS (SELECT 1 FROM procedure WHERE {s._procedure_match(care.ventilation_snomed, care.ventilation_ops_prefixes)}) AS ventilation,
  EXISTS (SELECT 1 FROM procedure WHERE {s._procedure_match(care.ecmo_snomed, care.ecmo_ops_prefixes)}) AS ecmo,
  EXISTS (SELECT 1 FROM patient WHERE deceased_datetime IS NOT NULL) AS deaths"""
    ).to_pylist()[0]
    return {name: bool(value) for name, value in row.items()}


def compute_cube(
    engine: SqlEngine,
    registry: Registry,
    as_of: dt.date,
    *,
    site: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The site's cube for every disease and indicator of `registry` up to `as_of` (exact, before privacy)."""
    began = time.perf_counter()
    series: list[dict[str, Any]] = []
    for disease in registry.diseases.values():
        if disease.start > as_of:
            continue
        table = engine.sql(_Statement(registry, disease, as_of).statement())
        by_indicator: dict[str, list[list[Any]]] = {i: [] for i in registry.indicators}
        columns = [table.column(name).to_pylist() for name in COLUMNS]
        for row in zip(*columns, strict=True):
            by_indicator[row[0]].append(list(row[1:]))
        for ident, rows in by_indicator.items():
            rows.sort(key=lambda r: tuple("" if v is None else str(v) for v in r[:-1]))
            series.append({"disease": disease.id, "indicator": ident, "rows": rows})
    completeness = _completeness(engine, registry)
    return {
        "format": CUBE_FORMAT,
        "site": site,
        "data_as_of": as_of.isoformat(),
        "run_at": (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
        "definitions_version": registry.version,
        "columns": list(COLUMNS[1:]),
        "completeness": completeness,
        "seconds": round(time.perf_counter() - began, 3),
        "series": series,
    }
