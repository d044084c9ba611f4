"""Analysis tables from the site store: the cohort of a CCDL query, one row per patient, with the
variables of `datenraum.analysis.variables` computed by SQL over the flattened tables.

`store_table(snapshot, cohort, definitions)` selects the cohort's patients
(`datenraum.site.feasibility.StoreEngine(snapshot).patient_ids`), then runs one SELECT that joins every
variable per patient (LEFT JOINs of grouped subqueries of `patient`, `condition`, `observation`); each
code, unit and date is a bound parameter. The rows are the cohort's patients sorted by id, so that the
table's key (store generation and cohort) and its row order are the same for every set of variables:
the differencing ledger compares row sets of one cohort whatever was asked of it. The ledger places
them among all patients of the store generation (`RowUniverse`), so that the row sets of two cohorts
are compared as well (a second cohort query that drops one patient is refused like a subset would be).

The SQL goes through the snapshot's DuckDB connection only (`_sql`), the one place a store-reading
engine interface (the Spark branch's `SiteEngine.sql`) would take over.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from datenraum.analysis.variables import VariableDef
from datenraum.query.model import StructuredQuery
from datenraum.site.analysis.tables import AnalysisTable, RowUniverse
from datenraum.site.analysis.time_to_event import converted_value_sql, store_data_end, time_to_event_join
from datenraum.site.feasibility import StoreEngine
from datenraum.site.store import Snapshot

__all__ = ["StoreTables", "store_table", "variables_sql"]

_TIME = {"condition": "coalesce(onset_datetime, recorded_date)", "observation": "effective"}
_AGGREGATE = {
    "latest": "arg_max(v, t)",
    "first": "arg_min(v, t)",
    "mean": "avg(v)",
    "min": "min(v)",
    "max": "max(v)",
    "count": "count(v)",
}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _period(definition: VariableDef, column: str, params: list[Any]) -> str:
    clauses = []
    if definition.start is not None:
        clauses.append(f"CAST({column} AS DATE) >= ?")
        params.append(definition.start)
    if definition.end is not None:
        clauses.append(f"CAST({column} AS DATE) <= ?")
        params.append(definition.end)
    return "".join(f" AND {c}" for c in clauses)


def variables_sql(
    definitions: Sequence[VariableDef], cohort: str, today: dt.date, data_end: dt.date | None = None
) -> tuple[str, list[Any]]:
    """One SELECT of `patient_id` and every variable for the patients of the table `cohort`
    (`data_end`: where time-to-event variables are censored; default `today`)."""
    select: list[str] = ["c.patient_id"]
    select_params: list[Any] = []
    joins: list[str] = []
    join_params: list[Any] = []
    for i, d in enumerate(definitions):
        alias = f"j{i}"
        name = _quote(d.name)
        if d.kind == "sex":
            select.append(f"p.gender AS {name}")
        elif d.kind == "age":
            select.append(f"date_diff('day', p.birth_date, CAST(? AS DATE)) / 365.25 AS {name}")
            select_params.append(d.at or today)
        elif d.survival is not None:
            join, value = time_to_event_join(d.survival, alias, cohort, data_end or today, join_params)
            joins.append(join)
            select.append(f"{value} AS {name}")
        elif d.kind == "condition":
            match = " OR ".join("starts_with(code, ?)" for _ in d.codes)
            join_params.extend(d.codes)
            time = _TIME["condition"]
            where = f"({match})" + _period(d, time, join_params)
            joins.append(
                f"LEFT JOIN (SELECT patient_id, count(*) AS n, min({time}) AS first FROM condition "
                f"WHERE {where} GROUP BY patient_id) {alias} ON {alias}.patient_id = c.patient_id"
            )
            if d.value == "any":
                select.append(f"CASE WHEN {alias}.n IS NULL THEN 0.0 ELSE 1.0 END AS {name}")
            elif d.value == "count":
                select.append(f"CAST(coalesce({alias}.n, 0) AS DOUBLE) AS {name}")
            else:
                select.append(
                    f"date_diff('day', p.birth_date, CAST({alias}.first AS DATE)) / 365.25 AS {name}"
                )
        else:  # observation
            converted = converted_value_sql(d.unit, join_params)
            codes = ", ".join("?" for _ in d.codes)
            join_params.extend(d.codes)
            time = _TIME["observation"]
            inner = (
                f"SELECT patient_id, {time} AS t, {converted} AS v FROM observation "
                f"WHERE code IN ({codes}) AND value_quantity IS NOT NULL" + _period(d, time, join_params)
            )
            joins.append(
                f"LEFT JOIN (SELECT patient_id, {_AGGREGATE[d.value]} AS a FROM ({inner}) "
                f"WHERE v IS NOT NULL GROUP BY patient_id) {alias} ON {alias}.patient_id = c.patient_id"
            )
            if d.value == "count":
                select.append(f"CAST(coalesce({alias}.a, 0) AS DOUBLE) AS {name}")
            else:
                select.append(f"CAST({alias}.a AS DOUBLE) AS {name}")
    sql = (
        f"SELECT {', '.join(select)} FROM {cohort} c "
        "LEFT JOIN (SELECT patient_id, any_value(gender) AS gender, min(birth_date) AS birth_date "
        "FROM patient GROUP BY patient_id) p ON p.patient_id = c.patient_id "
        + " ".join(joins)
        + " ORDER BY c.patient_id"
    )
    return sql, select_params + join_params


def _sql(snapshot: Snapshot, statement: str, params: list[Any], tables: dict[str, pa.Table]) -> pa.Table:
    connection = snapshot.connection
    for name, table in tables.items():
        connection.register(name, table)
    try:
        return connection.sql(statement, params=params).to_arrow_table()
    finally:
        for name in tables:
            connection.unregister(name)


def cohort_key(generation: int, cohort: StructuredQuery | dict) -> str:
    body = cohort if isinstance(cohort, dict) else {"query": repr(cohort)}
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    return f"store:{generation}:{digest}"


def store_table(
    snapshot: Snapshot,
    cohort: StructuredQuery,
    definitions: Sequence[VariableDef],
    *,
    key: str,
    today: dt.date | None = None,
    data_end: dt.date | None = None,
) -> AnalysisTable:
    """The cohort's patients with the defined variables as an analysis table (no patient ids in it).
    Time-to-event variables are censored at `data_end`, by default the latest date in the store."""
    today = today or dt.date.today()
    ids = StoreEngine(snapshot).patient_ids(cohort, today=today)
    name = f"analysis_cohort_{threading.get_ident()}"
    if data_end is None and any(d.survival is not None for d in definitions):
        data_end = store_data_end(snapshot)
    sql, params = variables_sql(definitions, name, today, data_end)
    table = _sql(snapshot, sql, params, {name: pa.table({"patient_id": pa.array(ids, pa.string())})})
    everyone = snapshot.connection.sql("SELECT DISTINCT patient_id FROM patient").to_arrow_table()
    positions = pc.index_in(table.column("patient_id"), value_set=everyone.column("patient_id"))
    universe = RowUniverse(
        f"store:{snapshot.generation}",
        positions.to_numpy(zero_copy_only=False).astype(np.int64),
        everyone.num_rows,
    )
    return AnalysisTable(table.drop_columns(["patient_id"]), key, universe)


class StoreTables:
    """A few recently built analysis tables (a GLM asks for the same one every round), by store
    generation, cohort and variables."""

    def __init__(self, size: int = 8, data_end: dt.date | None = None) -> None:
        self._tables: OrderedDict[bytes, AnalysisTable] = OrderedDict()
        self._data_end = data_end
        self._size = size
        self._lock = threading.Lock()

    def get(self, snapshot: Snapshot, cohort_json: dict, cohort: StructuredQuery, definitions, today=None):
        key = cohort_key(snapshot.generation, cohort_json)
        cache_key = orjson.dumps([key, [d.name for d in definitions], [d.to_json() for d in definitions]])
        with self._lock:
            table = self._tables.get(cache_key)
            if table is not None:
                self._tables.move_to_end(cache_key)
                return table
        table = store_table(snapshot, cohort, definitions, key=key, today=today, data_end=self._data_end)
        with self._lock:
            self._tables[cache_key] = table
            while len(self._tables) > self._size:
                self._tables.popitem(last=False)
        return table
