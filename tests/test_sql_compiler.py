"""The SQL compiler: what it writes for each part of a criterion, and that what it writes is right.

Most tests run the compiled statement on DuckDB tables with the store's schema and a handful of
rows, so that each shows one rule of the contract (`docs/feasibility-semantics.md`) in a few lines;
the spec suite (`tests/spec`) then holds the SQL engine and the reference evaluator to the same
answers on ingested FHIR. The rest check the SQL text itself: that every dialect is written, that it
reads back, and that the shapes meant to be fast (prefix LIKE, birth-date ranges) are what is written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import duckdb
import pyarrow as pa
import pytest
import sqlglot

from datenraum.query.engines.sql import DIALECTS, compile_count, compile_query
from datenraum.query.mapping import load_mapping
from datenraum.query.model import QueryError, StructuredQuery, parse_query
from datenraum.site.store import SEQ_COLUMN, table_schemas

TODAY = dt.date(2024, 6, 15)
ICD = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
OPS = "http://fhir.de/CodeSystem/bfarm/ops"
ATC = "http://fhir.de/CodeSystem/bfarm/atc"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
PROVISION = "urn:oid:2.16.840.1.113883.3.1937.777.24.5.3"
MDAT = "2.16.840.1.113883.3.1937.777.24.5.3.8"
MDAT_RETRO = "2.16.840.1.113883.3.1937.777.24.5.3.46"


# --- a site in memory: the store's tables, a few rows ------------------------------------------------


class Site:
    """Tables with exactly the store's columns; `add` appends one row (missing columns null)."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, schemas: dict[str, pa.Schema]) -> None:
        self.connection = connection
        self.schemas = schemas

    def add(self, table: str, **row: Any) -> None:
        schema = self.schemas[table]
        unknown = set(row) - set(schema.names)
        assert not unknown, f"{table} has no columns {unknown}"
        batch = pa.Table.from_pylist([{name: row.get(name) for name in schema.names}], schema=schema)
        self.connection.register("_row", batch)
        self.connection.execute(f'INSERT INTO "{table}" SELECT * FROM _row')
        self.connection.unregister("_row")

    def patient(self, patient_id: str, **row: Any) -> None:
        self.add("patient", id=patient_id, patient_id=patient_id, **row)

    def condition(self, patient_id: str, code: str, system: str = ICD, **row: Any) -> None:
        self.add(
            "condition",
            id=f"c-{patient_id}-{code}",
            patient_id=patient_id,
            code_system=system,
            code=code,
            **row,
        )

    def cohort(self, query: StructuredQuery, today: dt.date = TODAY) -> list[str]:
        return [r[0] for r in self.connection.execute(compile_query(query, today=today)).fetchall()]

    def count(self, query: StructuredQuery, today: dt.date = TODAY) -> int:
        return self.connection.execute(compile_count(query, today=today)).fetchone()[0]


@pytest.fixture(scope="module")
def tables() -> tuple[duckdb.DuckDBPyConnection, dict[str, pa.Schema]]:
    connection = duckdb.connect()
    schemas = {name: s.remove(s.get_field_index(SEQ_COLUMN)) for name, s in table_schemas().items()}
    for name, schema in schemas.items():
        connection.register("_empty", schema.empty_table())
        connection.execute(f'CREATE TABLE "{name}" AS SELECT * FROM _empty')
        connection.unregister("_empty")
    return connection, schemas


@pytest.fixture
def site(tables) -> Iterator[Site]:
    """Empty tables for each test: its rows are rolled back when it ends."""
    connection, schemas = tables
    connection.begin()
    yield Site(connection, schemas)
    connection.rollback()


# --- queries as the portal writes them ---------------------------------------------------------------


def term(system: str, code: str) -> dict:
    return {"system": system, "code": code, "display": code}


def criterion(context: str, *codes: tuple[str, str], **extra: Any) -> dict:
    return {"context": term("fdpg.mii.cds", context), "termCodes": [term(s, c) for s, c in codes], **extra}


def diagnosis(*codes: str, **extra: Any) -> dict:
    return criterion("Diagnose", *((ICD, c) for c in codes), **extra)


def lab(code: str, value_filter: dict, **extra: Any) -> dict:
    return criterion("Laboruntersuchung", (LOINC, code), valueFilter=value_filter, **extra)


def age(comparator: str, value: float, unit: str = "a") -> dict:
    return criterion(
        "Patient",
        (SNOMED, "424144002"),
        valueFilter={
            "type": "quantity-comparator",
            "comparator": comparator,
            "value": value,
            "unit": {"code": unit},
        },
    )


def consented(*codes: tuple[str, str], **extra: Any) -> dict:
    return criterion("Einwilligung", *codes, **extra)


def query(*inclusion: dict | list[dict], exclude: tuple = ()) -> StructuredQuery:
    def groups(items) -> list[list[dict]]:
        return [item if isinstance(item, list) else [item] for item in items]

    body: dict = {"inclusionCriteria": groups(inclusion)}
    if exclude:
        body["exclusionCriteria"] = groups(exclude)
    return parse_query(body)


# --- every dialect -----------------------------------------------------------------------------------

# One query that uses every construct the compiler writes.
EVERYTHING = query(
    [diagnosis("E11", "E10-E14"), diagnosis("I10", timeRestriction={"afterDate": "2020-01-01"})],
    lab("4548-4", {"type": "quantity-comparator", "comparator": "gt", "value": 6.5, "unit": {"code": "%"}}),
    lab("2345-7", {"type": "quantity-range", "minValue": 5, "maxValue": 11, "unit": {"code": "mmol/L"}}),
    age("ge", 18),
    criterion("Medikamentenverabreichung", (ATC, "J01")),
    consented((PROVISION, MDAT), ("fdpg.consent.combined", "yes-yes-no-no")),
    {**diagnosis("C50"), "negated": True},
    exclude=([diagnosis("O80"), criterion("Patient", (SNOMED, "419099009"))],),
)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_dialect_is_written_and_reads_back_in_that_dialect(dialect):
    sql = compile_query(EVERYTHING, today=TODAY, dialect=dialect)
    parsed = sqlglot.parse_one(sql, read=dialect)
    assert isinstance(parsed, sqlglot.exp.Select)
    ctes = [cte.alias for cte in parsed.find(sqlglot.exp.With).expressions]
    assert ctes == ["in_0_0", "in_0_1", "in_1_0", "in_2_0", "in_4_0", "in_5_0", "in_6_0", "ex_0_0", "cohort"]


def test_the_dialects_differ_where_the_backends_do():
    duck, spark, postgres = (compile_query(EVERYTHING, today=TODAY, dialect=d) for d in DIALECTS)
    assert "AS TIMESTAMP_NTZ)" in spark and "AS TIMESTAMP_NTZ)" not in duck
    assert "DOUBLE PRECISION" in postgres and "DOUBLE PRECISION" not in duck


def test_an_unknown_dialect_is_refused():
    with pytest.raises(ValueError, match="dialect"):
        compile_query(EVERYTHING, today=TODAY, dialect="oracle")


def test_the_count_statement_counts_the_same_cohort(site):
    for patient_id in ("p1", "p2", "p3"):
        site.patient(patient_id)
    site.condition("p1", "E11.9")
    site.condition("p2", "E11.0")
    cohort = query(diagnosis("E11"))
    assert site.cohort(cohort) == ["p1", "p2"]
    assert site.count(cohort) == 2


def test_a_query_the_mapping_cannot_answer_is_rejected_before_any_sql():
    with pytest.raises(QueryError) as rejected:
        compile_query(query(criterion("Vitaldaten", (LOINC, "8867-4"))), today=TODAY)
    assert rejected.value.path == "$.inclusionCriteria[0][0].context"


# --- codes -------------------------------------------------------------------------------------------


def test_a_parent_icd_code_matches_its_subcategories_as_a_prefix(site):
    site.patient("p1")
    site.patient("p2")
    site.patient("p3")
    site.condition("p1", "E11.90")
    site.condition("p2", "E11")
    site.condition("p3", "E12.0")
    assert site.cohort(query(diagnosis("E11"))) == ["p1", "p2"]
    assert "code LIKE 'E11%'" in compile_query(query(diagnosis("E11")), today=TODAY)


def test_a_code_of_another_system_does_not_match_even_when_the_code_is_equal(site):
    site.patient("p1")
    site.condition("p1", "E11", system="http://fhir.de/CodeSystem/dimdi/icd-10-gm")
    assert site.cohort(query(diagnosis("E11"))) == []


def test_a_code_of_a_flat_system_matches_only_itself(site):
    site.patient("p1")
    site.patient("p2")
    site.condition("p1", "44054006", system=SNOMED)
    site.condition("p2", "440540061", system=SNOMED)
    assert site.cohort(query(criterion("Diagnose", (SNOMED, "44054006")))) == ["p1"]


def test_like_wildcards_in_a_code_are_matched_literally(site):
    site.patient("p1")
    site.patient("p2")
    site.add("procedure", id="x1", patient_id="p1", code_system=OPS, code="5-82_.1")
    site.add("procedure", id="x2", patient_id="p2", code_system=OPS, code="5-820.1")
    sql = compile_query(query(criterion("Procedure", (OPS, "5-82_"))), today=TODAY)
    assert "ESCAPE" in sql
    assert site.cohort(query(criterion("Procedure", (OPS, "5-82_")))) == ["p1"]


def test_an_icd_block_matches_every_category_in_its_range(site):
    for patient_id, code in (("p1", "E10.1"), ("p2", "E14"), ("p3", "E15.0"), ("p4", "E09")):
        site.patient(patient_id)
        site.condition(patient_id, code)
    assert site.cohort(query(diagnosis("E10-E14"))) == ["p1", "p2"]


def test_a_medication_code_matches_on_the_row_or_on_the_referenced_medication(site):
    for patient_id in ("p1", "p2", "p3"):
        site.patient(patient_id)
    site.add("medication", id="m1", code_system=ATC, code="J01CA04")
    site.add("medication_administration", id="a1", patient_id="p1", medication_id="m1")
    site.add("medication_administration", id="a2", patient_id="p2", code_system=ATC, code="J01DD04")
    site.add("medication_administration", id="a3", patient_id="p3", code_system=ATC, code="B01AB01")
    assert site.cohort(query(criterion("Medikamentenverabreichung", (ATC, "J01")))) == ["p1", "p2"]


def test_procedure_category_compares_codes_without_a_system(site):
    site.patient("p1")
    site.add("procedure", id="x1", patient_id="p1", category_code="387713003")
    assert site.cohort(query(criterion("Procedure Category", (SNOMED, "387713003")))) == ["p1"]


# --- values and units --------------------------------------------------------------------------------


def glucose(site: Site, patient_id: str, value: float | None, unit: str | None) -> None:
    site.add(
        "observation",
        id=f"o-{patient_id}",
        patient_id=patient_id,
        code_system=LOINC,
        code="2345-7",
        value_quantity=value,
        value_unit=unit,
    )


def test_a_value_in_a_comparable_unit_is_converted_before_comparing(site):
    for patient_id, value, unit in (("p1", 126.0, "mg/dL"), ("p2", 1.25, "g/L"), ("p3", 7.5, "mmol/L")):
        site.patient(patient_id)
        glucose(site, patient_id, value, unit)
    over = {"type": "quantity-comparator", "comparator": "ge", "value": 1.26, "unit": {"code": "g/L"}}
    assert site.cohort(query(lab("2345-7", over))) == ["p1"]
    assert "CASE value_unit" in compile_query(query(lab("2345-7", over)), today=TODAY)


def test_a_value_in_another_dimension_or_without_unit_does_not_match_a_filter_with_unit(site):
    site.patient("p1")
    site.patient("p2")
    glucose(site, "p1", 500.0, "mmol/L")
    glucose(site, "p2", 500.0, None)
    over = {"type": "quantity-comparator", "comparator": "gt", "value": 1, "unit": {"code": "g/L"}}
    assert site.cohort(query(lab("2345-7", over))) == []


def test_a_filter_without_unit_compares_the_raw_value(site):
    site.patient("p1")
    site.patient("p2")
    glucose(site, "p1", 7.0, "mmol/L")
    glucose(site, "p2", 6.0, None)
    over = {"type": "quantity-comparator", "comparator": "gt", "value": 6.5}
    assert site.cohort(query(lab("2345-7", over))) == ["p1"]


def test_a_range_includes_both_of_its_ends(site):
    for patient_id, value in (("p1", 5.0), ("p2", 11.0), ("p3", 11.01), ("p4", 4.99)):
        site.patient(patient_id)
        glucose(site, patient_id, value, "mmol/L")
    between = {"type": "quantity-range", "minValue": 5, "maxValue": 11, "unit": {"code": "mmol/L"}}
    assert site.cohort(query(lab("2345-7", between))) == ["p1", "p2"]


def test_every_comparator_is_written(site):
    for patient_id, value in (("p1", 5.0), ("p2", 6.0), ("p3", 7.0)):
        site.patient(patient_id)
        glucose(site, patient_id, value, "mmol/L")
    expected = {
        "gt": ["p3"],
        "ge": ["p2", "p3"],
        "lt": ["p1"],
        "le": ["p1", "p2"],
        "eq": ["p2"],
        "ne": ["p1", "p3"],
    }
    for comparator, ids in expected.items():
        value_filter = {
            "type": "quantity-comparator",
            "comparator": comparator,
            "value": 6,
            "unit": {"code": "mmol/L"},
        }
        assert site.cohort(query(lab("2345-7", value_filter))) == ids, comparator


def test_a_concept_value_must_be_the_exact_system_and_code(site):
    site.patient("p1")
    site.patient("p2")
    site.add(
        "observation",
        id="o1",
        patient_id="p1",
        code_system=LOINC,
        code="94500-6",
        value_code_system=SNOMED,
        value_code="260373001",
    )
    site.add(
        "observation",
        id="o2",
        patient_id="p2",
        code_system=LOINC,
        code="94500-6",
        value_code_system=SNOMED,
        value_code="2603730011",
    )
    positive = {"type": "concept", "selectedConcepts": [term(SNOMED, "260373001")]}
    assert site.cohort(query(lab("94500-6", positive))) == ["p1"]


# --- attributes and references -----------------------------------------------------------------------


def test_an_attribute_filter_holds_on_the_same_resource_as_the_code(site):
    site.patient("p1")
    site.patient("p2")
    site.condition("p1", "E11.9", clinical_status="active")
    site.condition("p2", "E11.9", clinical_status="resolved")
    site.condition("p2", "I10", clinical_status="active")
    active = diagnosis(
        "E11",
        attributeFilters=[
            {
                "type": "concept",
                "attributeCode": term("mii.abide", "clinicalStatus"),
                "selectedConcepts": [term("x", "active")],
            }
        ],
    )
    assert site.cohort(query(active)) == ["p1"]


def test_an_attribute_system_must_agree_where_one_is_stored(site):
    for patient_id, system in (("p1", SNOMED), ("p2", None), ("p3", "http://other")):
        site.patient(patient_id)
        site.condition(patient_id, "C50.1", body_site_system=system, body_site_code="80248007")
    body_site = diagnosis(
        "C50",
        attributeFilters=[
            {
                "type": "concept",
                "attributeCode": term("x", "bodySite"),
                "selectedConcepts": [term(SNOMED, "80248007")],
            }
        ],
    )
    assert site.cohort(query(body_site)) == ["p1", "p2"]


def test_a_specimen_reference_filter_checks_the_diagnosis_it_points_to(site):
    site.patient("p1")
    site.patient("p2")
    site.add("condition", id="d1", patient_id="p1", code_system=ICD, code="C50.4")
    site.add("condition", id="d2", patient_id="p2", code_system=ICD, code="C18.0")
    site.add(
        "specimen", id="s1", patient_id="p1", type_system=SNOMED, type_code="119364003", diagnosis_id="d1"
    )
    site.add(
        "specimen", id="s2", patient_id="p2", type_system=SNOMED, type_code="119364003", diagnosis_id="d2"
    )
    specimen = criterion(
        "Specimen",
        (SNOMED, "119364003"),
        attributeFilters=[
            {
                "type": "reference",
                "attributeCode": term("x", "festgestellteDiagnose"),
                "criteria": [diagnosis("C50")],
            }
        ],
    )
    assert site.cohort(query(specimen)) == ["p1"]


# --- time --------------------------------------------------------------------------------------------


def test_a_time_restriction_includes_both_of_its_days_whole(site):
    times = {
        "p1": dt.datetime(2023, 2, 1, 0, 0),
        "p2": dt.datetime(2023, 2, 28, 23, 59),
        "p3": dt.datetime(2023, 3, 1),
    }
    for patient_id, moment in times.items():
        site.patient(patient_id)
        site.condition(patient_id, "S14.11", recorded_date=moment)
    february = diagnosis("S14.11", timeRestriction={"afterDate": "2023-02-01", "beforeDate": "2023-02-28"})
    assert site.cohort(query(february)) == ["p1", "p2"]


def test_a_period_that_overlaps_the_restriction_matches(site):
    site.patient("p1")
    site.patient("p2")
    site.add(
        "procedure",
        id="x1",
        patient_id="p1",
        code_system=OPS,
        code="8-810",
        performed_start=dt.datetime(2023, 1, 20),
        performed_end=dt.datetime(2023, 2, 3),
    )
    site.add(
        "procedure",
        id="x2",
        patient_id="p2",
        code_system=OPS,
        code="8-810",
        performed_start=dt.datetime(2023, 1, 20),
        performed_end=dt.datetime(2023, 1, 31, 23),
    )
    february = criterion("Procedure", (OPS, "8-810"), timeRestriction={"afterDate": "2023-02-01"})
    assert site.cohort(query(february)) == ["p1"]


def test_a_resource_without_time_does_not_match_a_time_restriction(site):
    site.patient("p1")
    site.add("procedure", id="x1", patient_id="p1", code_system=OPS, code="8-810")
    until = criterion("Procedure", (OPS, "8-810"), timeRestriction={"beforeDate": "2023-02-01"})
    assert site.cohort(query(until)) == []


def test_a_period_without_start_is_open_towards_the_past(site):
    site.patient("p1")
    site.add(
        "procedure",
        id="x1",
        patient_id="p1",
        code_system=OPS,
        code="8-810",
        performed_end=dt.datetime(2023, 5, 1),
    )
    until = criterion("Procedure", (OPS, "8-810"), timeRestriction={"beforeDate": "2023-02-01"})
    assert site.cohort(query(until)) == ["p1"]


# --- the Patient context -----------------------------------------------------------------------------


def test_age_counts_whole_years_completed_on_today(site):
    site.patient("turns-18-today", birth_date=dt.date(2006, 6, 15))
    site.patient("turns-18-tomorrow", birth_date=dt.date(2006, 6, 16))
    site.patient("no-birth-date")
    assert site.cohort(query(age("ge", 18))) == ["turns-18-today"]
    assert site.cohort(query(age("lt", 18))) == ["turns-18-tomorrow"]


def test_age_is_a_range_of_birth_dates_not_arithmetic_on_every_row():
    sql = compile_query(query(age("ge", 18)), today=TODAY)
    assert "birth_date <= CAST('2006-06-15' AS DATE)" in sql


def test_someone_born_on_29_february_completes_a_year_on_1_march(site):
    site.patient("leap", birth_date=dt.date(2004, 2, 29))
    assert site.cohort(query(age("ge", 1)), today=dt.date(2005, 2, 28)) == []
    assert site.cohort(query(age("ge", 1)), today=dt.date(2005, 3, 1)) == ["leap"]
    site.patient("common", birth_date=dt.date(2023, 2, 28))
    site.patient("march", birth_date=dt.date(2023, 3, 1))
    assert site.cohort(query(age("ge", 1)), today=dt.date(2024, 2, 29)) == ["common", "leap"]


def test_an_age_in_months_is_converted_to_years_and_compared_with_whole_years(site):
    site.patient("p1", birth_date=dt.date(2023, 1, 1))  # 1 year old on TODAY
    site.patient("p2", birth_date=dt.date(2024, 1, 1))  # 0 years old
    assert site.cohort(query(age("gt", 6, unit="mo"))) == ["p1"]  # age > 0.49 years
    assert site.cohort(query(age("eq", 12, unit="mo"))) == ["p1"]


def test_an_age_equal_to_a_fraction_of_a_year_matches_nobody(site):
    site.patient("p1", birth_date=dt.date(2023, 1, 1))
    assert site.cohort(query(age("eq", 1.5))) == []
    assert site.cohort(query(age("ne", 1.5))) == ["p1"]


def test_an_age_range_holds_between_its_ends(site):
    for years in (17, 18, 65, 66):
        site.patient(f"age-{years}", birth_date=TODAY.replace(year=TODAY.year - years))
    adults = criterion(
        "Patient",
        (SNOMED, "424144002"),
        valueFilter={"type": "quantity-range", "minValue": 18, "maxValue": 65, "unit": {"code": "a"}},
    )
    assert site.cohort(query(adults)) == ["age-18", "age-65"]


def test_gender_and_deceased(site):
    site.patient("p1", gender="female", deceased=True)
    site.patient("p2", gender="male", deceased=False)
    site.patient("p3", gender="female")
    female = criterion(
        "Patient",
        (SNOMED, "263495000"),
        valueFilter={"type": "concept", "selectedConcepts": [term("x", "female")]},
    )
    assert site.cohort(query(female)) == ["p1", "p3"]
    assert site.cohort(query(criterion("Patient", (SNOMED, "419099009")))) == ["p1"]


# --- consent -----------------------------------------------------------------------------------------


def consent(
    site: Site, patient_id: str, code: str, kind: str, decided: dt.datetime | None, **row: Any
) -> None:
    site.add(
        "consent",
        id=f"k-{patient_id}-{code}-{kind}-{decided}",
        patient_id=patient_id,
        status=row.pop("status", "active"),
        date_time=decided,
        provision_type=kind,
        provision_system=PROVISION,
        provision_code=code,
        provision_start=row.pop("start", dt.datetime(2020, 1, 1)),
        provision_end=row.pop("end", dt.datetime(2050, 1, 1)),
        **row,
    )


def test_a_later_withdrawal_overrides_an_earlier_permit(site):
    site.patient("p1")
    site.patient("p2")
    consent(site, "p1", MDAT, "permit", dt.datetime(2021, 1, 1))
    consent(site, "p1", MDAT, "deny", dt.datetime(2022, 1, 1))
    consent(site, "p2", MDAT, "deny", dt.datetime(2021, 1, 1))
    consent(site, "p2", MDAT, "permit", dt.datetime(2022, 1, 1))
    assert site.cohort(query(consented((PROVISION, MDAT)))) == ["p2"]


def test_deny_wins_when_two_decisions_have_the_same_time(site):
    site.patient("p1")
    consent(site, "p1", MDAT, "permit", dt.datetime(2021, 1, 1))
    consent(site, "p1", MDAT, "deny", dt.datetime(2021, 1, 1))
    assert site.cohort(query(consented((PROVISION, MDAT)))) == []


def test_an_undated_consent_is_older_than_a_dated_one(site):
    site.patient("p1")
    consent(site, "p1", MDAT, "deny", None)
    consent(site, "p1", MDAT, "permit", dt.datetime(2021, 1, 1))
    assert site.cohort(query(consented((PROVISION, MDAT)))) == ["p1"]


def test_a_permit_counts_only_while_its_period_lasts_and_only_when_active(site):
    site.patient("expired")
    site.patient("open-ended")
    site.patient("inactive")
    consent(site, "expired", MDAT, "permit", dt.datetime(2021, 1, 1), end=dt.datetime(2024, 6, 14))
    consent(site, "open-ended", MDAT, "permit", dt.datetime(2021, 1, 1), end=None)
    consent(site, "inactive", MDAT, "permit", dt.datetime(2021, 1, 1), status="entered-in-error")
    assert site.cohort(query(consented((PROVISION, MDAT)))) == ["open-ended"]
    past = consented(
        (PROVISION, MDAT), timeRestriction={"afterDate": "2024-01-01", "beforeDate": "2024-01-31"}
    )
    assert site.cohort(query(past)) == ["expired", "open-ended"]


def test_a_combined_consent_code_needs_every_provision_of_its_answers(site):
    site.patient("both")
    site.patient("only-mdat")
    for code in (MDAT, MDAT_RETRO):
        consent(site, "both", code, "permit", dt.datetime(2021, 1, 1))
    consent(site, "only-mdat", MDAT, "permit", dt.datetime(2021, 1, 1))
    combined = consented(("fdpg.consent.combined", "yes-yes-no-no"))
    assert site.cohort(query(combined)) == ["both"]


# --- groups, negation, exclusion ---------------------------------------------------------------------


def test_inclusion_is_all_groups_of_any_criterion_and_exclusion_any_group_of_all(site):
    codes = {
        "p1": ["E11.9", "I10"],
        "p2": ["E11.9", "I10", "C50.1", "O80"],
        "p3": ["J45.0", "I10"],
        "p4": ["E11.9"],
    }
    for patient_id, of_patient in codes.items():
        site.patient(patient_id)
        for code in of_patient:
            site.condition(patient_id, code)
    cohort = query(
        [diagnosis("E11"), diagnosis("J45")],
        diagnosis("I10"),
        exclude=([diagnosis("C50"), diagnosis("O80")],),
    )
    assert site.cohort(cohort) == ["p1", "p3"]


def test_a_negated_criterion_holds_for_patients_without_any_matching_resource(site):
    site.patient("p1")
    site.patient("p2")
    site.condition("p2", "C50.1")
    assert site.cohort(query({**diagnosis("C50"), "negated": True})) == ["p1"]


def test_resources_of_a_patient_not_in_the_store_count_for_nobody(site):
    site.patient("p1")
    site.condition("p1", "E11.9")
    site.condition("ghost", "E11.9")
    assert site.cohort(query(diagnosis("E11"))) == ["p1"]


def test_the_mapping_decides_the_table_a_context_reads():
    mapping = load_mapping()
    assert f"FROM {mapping.contexts['Fall'].table}" in compile_query(
        query(criterion("Fall", ("http://terminology.hl7.org/CodeSystem/v3-ActCode", "IMP"))), today=TODAY
    )
