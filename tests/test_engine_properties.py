"""Both engines, random queries, one dataset: the SQL engine and the reference evaluator must agree.

The spec suite (tests/spec) pins each clause of the contract with a tiny dataset; this module looks for
the combinations nobody wrote a spec test for. Hypothesis draws random valid structured queries from
the codes, units, values and dates that really occur in a fixed dataset (so that criteria hit
something), and demands the same patient set from both engines.

The dataset is a few hundred synthetic patients (`datenraum.synth.generate`) plus a few dozen
hand-shaped ones that carry what the generator does not write (onset and effective periods, lab
values in other units or without unit, integer values, inline medication codes, medication requests,
specimens pointing to their diagnosis, genetic reports, consent withdrawals, partial birth dates). It
is generated and ingested once per module.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections import defaultdict
from dataclasses import dataclass, field

import orjson
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from datenraum.query.canonical import canonical_query
from datenraum.query.engines import reference
from datenraum.query.mapping import load_mapping
from datenraum.query.model import (
    AttributeFilter,
    ComparatorFilter,
    ConceptFilter,
    Criterion,
    RangeFilter,
    ReferenceFilter,
    StructuredQuery,
    TermCode,
    TimeRestriction,
    Unit,
    query_to_json,
)
from datenraum.query.units import comparable_units

PATIENTS = 300
SEED = 20240615
ICD10GM = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
OPS = "http://fhir.de/CodeSystem/bfarm/ops"
ATC = "http://fhir.de/CodeSystem/bfarm/atc"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
PROVISION = "urn:oid:2.16.840.1.113883.3.1937.777.24.5.3"
KONTAKTEBENE = "http://fhir.de/CodeSystem/Kontaktebene"
DIAGNOSE_EXTENSION = (
    "https://www.medizininformatik-initiative.de/fhir/ext/modul-biobank/StructureDefinition/Diagnose"
)
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
# Units a filter may name (a filter in any other unit rejects the query, which is not what this tests).
KNOWN_UNITS = {
    u.unit
    for dimension in ("%", "g/L", "mmol/L", "U/L", "/L", "mmol/mol")
    for u in comparable_units(dimension)
}
KNOWN_UNITS |= {"mL/min/{1.73_m2}"}
DAYS = [dt.date(2024, 6, 15), dt.date(2020, 2, 29), dt.date(2026, 1, 1)]


# --- the dataset -----------------------------------------------------------------------------------


def _edge_patients(count: int, seed: int) -> list[dict]:
    """Patients shaped to reach the corners of the contract that synthetic data does not."""
    rng = random.Random(seed)
    resources: list[dict] = [
        {
            "resourceType": "Medication",
            "id": "edge-med-metformin",
            "code": {"coding": [{"system": ATC, "code": "A10BA02"}]},
        },
    ]

    def when(year_from: int = 2015, year_to: int = 2025) -> str:
        day = dt.date(year_from, 1, 1) + dt.timedelta(days=rng.randrange((year_to - year_from) * 365))
        style = rng.randrange(4)
        if style == 0:
            return day.isoformat()
        if style == 1:
            return f"{day.isoformat()}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00+02:00"
        if style == 2:
            return f"{day.isoformat()}T{rng.randrange(24):02d}:30:00Z"
        return f"{day.isoformat()}T23:30:00-05:00"

    def period() -> dict:
        start = when()
        end = (dt.date.fromisoformat(start[:10]) + dt.timedelta(days=rng.randrange(0, 1500))).isoformat()
        if rng.random() < 0.2:
            return {"start": start}
        return {"start": start, "end": end}

    for n in range(count):
        pid = f"edge-{n}"
        birth = dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(90 * 365))
        birth_text = rng.choice(
            [birth.isoformat(), birth.isoformat(), birth.isoformat()[:7], birth.isoformat()[:4]]
        )
        patient = {"resourceType": "Patient", "id": pid, "gender": rng.choice(["female", "male", "other"])}
        if rng.random() < 0.9:
            patient["birthDate"] = birth_text
        if rng.random() < 0.15:
            patient["deceasedDateTime"] = when()
        resources.append(patient)
        subject = {"reference": f"Patient/{pid}"}
        for k in range(rng.randrange(3)):
            code = rng.choice(["E11.9", "E11.90", "E10.9", "E14", "C50.9", "C34.1", "I10.00"])
            condition = {
                "resourceType": "Condition",
                "id": f"{pid}-c{k}",
                "subject": subject,
                "code": {"coding": [{"system": ICD10GM, "code": code}]},
                "clinicalStatus": {
                    "coding": [{"system": CLINICAL, "code": rng.choice(["active", "resolved"])}]
                },
            }
            choice = rng.randrange(3)
            if choice == 0:
                condition["onsetPeriod"] = period()
            elif choice == 1:
                condition["onsetDateTime"] = when()
            if rng.random() < 0.5:
                condition["recordedDate"] = when()[:10]
            resources.append(condition)
            if rng.random() < 0.5:
                specimen = {
                    "resourceType": "Specimen",
                    "id": f"{pid}-s{k}",
                    "subject": subject,
                    "status": "available",
                    "type": {"coding": [{"system": SNOMED, "code": rng.choice(["119364003", "441652008"])}]},
                    "collection": {"collectedDateTime": when()},
                    "extension": [
                        {"url": DIAGNOSE_EXTENSION, "valueReference": {"reference": f"Condition/{pid}-c{k}"}}
                    ],
                }
                resources.append(specimen)
        for k in range(rng.randrange(4)):
            loinc, unit, value = rng.choice(
                [
                    ("4548-4", "%", round(rng.uniform(4.5, 10), 1)),
                    ("4548-4", "mmol/mol", round(rng.uniform(25, 90))),
                    ("2345-7", "mg/dL", round(rng.uniform(60, 250))),
                    ("2345-7", "g/L", round(rng.uniform(0.6, 2.5), 2)),
                    ("2345-7", "mmol/L", round(rng.uniform(3, 14), 1)),
                    ("2345-7", None, round(rng.uniform(60, 250))),
                    ("2345-7", "int", rng.randrange(60, 250)),
                ]
            )
            observation = {
                "resourceType": "Observation",
                "id": f"{pid}-o{k}",
                "status": "final",
                "subject": subject,
                "code": {"coding": [{"system": LOINC, "code": loinc}]},
            }
            if unit == "int":
                observation["valueInteger"] = value
            elif unit is None:
                observation["valueQuantity"] = {"value": value}
            else:
                observation["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
            if rng.random() < 0.3:
                observation["effectivePeriod"] = period()
            else:
                observation["effectiveDateTime"] = when()
            resources.append(observation)
        if rng.random() < 0.4:
            administration = {
                "resourceType": rng.choice(["MedicationAdministration", "MedicationStatement"]),
                "id": f"{pid}-ma",
                "status": "completed",
                "subject": subject,
                "effectivePeriod": period(),
            }
            if rng.random() < 0.5:
                administration["medicationReference"] = {"reference": "Medication/edge-med-metformin"}
            else:
                administration["medicationCodeableConcept"] = {"coding": [{"system": ATC, "code": "A10BB01"}]}
            resources.append(administration)
        if rng.random() < 0.3:
            resources.append(
                {
                    "resourceType": "MedicationRequest",
                    "id": f"{pid}-mr",
                    "status": "active",
                    "intent": "order",
                    "subject": subject,
                    "medicationCodeableConcept": {"coding": [{"system": ATC, "code": "C09AA05"}]},
                    "authoredOn": when(),
                }
            )
        if rng.random() < 0.3:
            report = {
                "resourceType": "DiagnosticReport",
                "id": f"{pid}-dr",
                "status": "final",
                "subject": subject,
                "code": {"coding": [{"system": LOINC, "code": "81247-9"}]},
            }
            report["issued" if rng.random() < 0.5 else "effectiveDateTime"] = when()
            resources.append(report)
        for k in range(rng.randrange(3)):
            codes = rng.sample(
                [f"2.16.840.1.113883.3.1937.777.24.5.3.{c}" for c in (6, 7, 8, 9, 10, 26, 46, 47, 49)],
                rng.randrange(1, 5),
            )
            start = when(2015, 2024)[:10]
            end = rng.choice(
                [
                    None,
                    (dt.date.fromisoformat(start) + dt.timedelta(days=rng.randrange(200, 4000))).isoformat(),
                ]
            )
            provision_period = {"start": start, **({"end": end} if end else {})}
            resources.append(
                {
                    "resourceType": "Consent",
                    "id": f"{pid}-cs{k}",
                    "status": rng.choice(["active", "active", "active", "inactive"]),
                    "patient": subject,
                    "dateTime": rng.choice([start, when(2015, 2024)]),
                    "provision": {
                        "type": "deny",
                        "provision": [
                            {
                                "type": rng.choice(["permit", "permit", "deny"]),
                                "period": provision_period,
                                "code": [{"coding": [{"system": PROVISION, "code": code}]}],
                            }
                            for code in codes
                        ],
                    },
                }
            )
    return resources


@dataclass(repr=False)
class Vocabulary:
    """What the dataset holds, to draw criteria from (so that random criteria hit something)."""

    icd: set[str] = field(default_factory=set)
    ops: set[str] = field(default_factory=set)
    atc: set[str] = field(default_factory=set)
    specimen_types: set[str] = field(default_factory=set)
    classes: set[str] = field(default_factory=set)
    levels: set[str] = field(default_factory=set)
    categories: set[str] = field(default_factory=set)
    provisions: set[str] = field(default_factory=set)
    # LOINC code -> [(value, unit)], and LOINC code -> first codings of concept values
    quantities: dict[str, list[tuple[float, str | None]]] = field(default_factory=lambda: defaultdict(list))
    value_concepts: dict[str, set[tuple[str, str]]] = field(default_factory=lambda: defaultdict(set))
    dates: set[dt.date] = field(default_factory=set)

    def __repr__(self) -> str:  # strategies show their arguments: keep it short
        return f"Vocabulary({len(self.icd)} ICD, {len(self.quantities)} LOINC, {len(self.dates)} dates, ...)"


def _vocabulary(resources: list[dict]) -> Vocabulary:
    vocabulary = Vocabulary()

    def codes(concept: dict | None) -> list[tuple[str, str]]:
        return [(c.get("system"), c.get("code")) for c in (concept or {}).get("coding", [])]

    def remember_dates(value: object) -> None:
        if isinstance(value, str) and len(value) >= 10 and value[4] == "-":
            vocabulary.dates.add(dt.date.fromisoformat(value[:10]))
        elif isinstance(value, dict):
            for key in ("start", "end"):
                remember_dates(value.get(key))

    for resource in resources:
        kind = resource["resourceType"]
        for key, value in resource.items():
            if key.startswith(("onset", "effective", "performed", "period", "authoredOn", "issued")):
                remember_dates(value)
        if kind == "Condition":
            for system, code in codes(resource.get("code")):
                if system == ICD10GM:
                    vocabulary.icd |= {code, code[:3]}
        elif kind == "Procedure":
            for system, code in codes(resource.get("code")):
                if system == OPS:
                    vocabulary.ops |= {code, code.split(".")[0], code[:4]}
            vocabulary.categories |= {code for _, code in codes(resource.get("category"))}
        elif kind in ("Medication", "MedicationAdministration", "MedicationStatement", "MedicationRequest"):
            for system, code in codes(resource.get("code") or resource.get("medicationCodeableConcept")):
                if system == ATC:
                    vocabulary.atc |= {code, code[:5], code[:4], code[:3], code[:1]}
        elif kind == "Specimen":
            vocabulary.specimen_types |= {code for _, code in codes(resource.get("type"))}
        elif kind == "Encounter":
            vocabulary.classes.add(resource["class"]["code"])
            for concept in resource.get("type", []):
                vocabulary.levels |= {code for system, code in codes(concept) if system == KONTAKTEBENE}
        elif kind == "Observation":
            loinc = codes(resource.get("code"))[0][1]
            if "valueQuantity" in resource:
                quantity = resource["valueQuantity"]
                vocabulary.quantities[loinc].append((quantity["value"], quantity.get("code")))
            elif "valueInteger" in resource:
                vocabulary.quantities[loinc].append((resource["valueInteger"], None))
            elif "valueCodeableConcept" in resource:
                vocabulary.value_concepts[loinc].add(codes(resource["valueCodeableConcept"])[0])
        elif kind == "Consent":
            for provision in resource.get("provision", {}).get("provision", []):
                for concept in provision.get("code", []):
                    vocabulary.provisions |= {code for _, code in codes(concept)}
    return vocabulary


@dataclass
class Site:
    resources: list[dict]
    vocabulary: Vocabulary
    snapshot: object


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    from datenraum.site.ingest import ingest
    from datenraum.site.store import Store
    from datenraum.synth import generate

    folder = tmp_path_factory.mktemp("properties")
    data = folder / "data"
    generate(data, PATIENTS, SEED, workers=1)
    (data / "edge.ndjson").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in _edge_patients(60, SEED)))
    resources = [
        orjson.loads(line)
        for path in sorted(data.glob("*.ndjson"))
        for line in path.read_bytes().splitlines()
    ]
    store = Store(folder / "store")
    report = ingest(store, [data], workers=1)
    # Both engines must see the same data: the store may not drop anything the reference reads.
    assert report.total("rejected") == 0, report.rejects[:5]
    with store.snapshot() as snapshot:
        yield Site(resources, _vocabulary(resources), snapshot)


class _OnEngine:
    """`feasibility.patient_ids(snapshot, query, today=...)` on a `SiteEngine` bound to the snapshot."""

    def __init__(self, engine) -> None:
        from datenraum.site.engines import feasibility_engine

        self.engine = feasibility_engine(engine)

    def patient_ids(self, snapshot, query: StructuredQuery, *, today: dt.date) -> list[str]:
        return self.engine.patient_ids(query, today=today)


# On Spark each query costs a second or so of planning and scheduling in local mode, so Spark runs a
# fifth of each property's examples (at least three): enough to catch a dialect that reads a clause
# differently, which the DuckDB run's full count then need not repeat.
SPARK_SHARE = 5


@pytest.fixture(scope="module", params=["duckdb", "spark"])
def site(request: pytest.FixtureRequest, dataset: Site):
    """The dataset and the engine under test: DuckDB (`datenraum.site.feasibility`) or Spark local."""
    if request.param == "duckdb":
        from datenraum.site import feasibility

        yield dataset, feasibility
        return
    from datenraum.site.engines.spark import SparkEngine

    engine = SparkEngine(dataset.snapshot, request.getfixturevalue("spark"))
    try:
        yield dataset, _OnEngine(engine)
    finally:
        engine.close()


def _examples(count: int, feasibility) -> int:
    return count if not isinstance(feasibility, _OnEngine) else max(3, count // SPARK_SHARE)


# --- random queries --------------------------------------------------------------------------------


def _context(name: str) -> TermCode:
    return TermCode("fdpg.mii.cds", name, name)


def _sorted(values) -> list:
    return sorted(values, key=str)


@st.composite
def time_restrictions(draw, vocabulary: Vocabulary) -> TimeRestriction:
    # Dates the data holds hit the boundaries; other dates the spaces between them.
    day = st.one_of(
        st.sampled_from(_sorted(vocabulary.dates)), st.dates(dt.date(2010, 1, 1), dt.date(2027, 1, 1))
    )
    after, before = draw(st.one_of(st.none(), day)), draw(st.one_of(st.none(), day))
    if after is None and before is None:
        after = draw(day)
    if after is not None and before is not None and after > before:
        after, before = before, after
    return TimeRestriction(after, before)


@st.composite
def quantity_filters(draw, observed: list[tuple[float, str | None]]):
    value, unit = draw(st.sampled_from(observed))
    choice = draw(st.sampled_from(["same", "comparable", "none", "other"]))
    filter_unit = None
    if choice != "none" and unit in KNOWN_UNITS:
        if choice == "same":
            filter_unit, factor = unit, 1.0
        elif choice == "comparable":
            # Another unit of the same dimension, and the stored value expressed in it (so that eq and
            # range bounds hit stored values after conversion too).
            filter_unit = draw(st.sampled_from(comparable_units(unit))).unit
            factor = next(u.factor for u in comparable_units(filter_unit) if u.unit == unit)
        else:
            filter_unit, factor = draw(st.sampled_from(["%", "mmol/mol", "g/L", "mmol/L"])), 1.0
        value = value * factor
    value = draw(st.one_of(st.just(value), st.floats(-10, 300, allow_nan=False).map(lambda v: round(v, 1))))
    unit_value = Unit(filter_unit) if filter_unit is not None else None
    if draw(st.booleans()):
        return ComparatorFilter(
            draw(st.sampled_from(["gt", "ge", "lt", "le", "eq", "ne"])), value, unit_value
        )
    other = draw(st.one_of(st.just(value), st.floats(-10, 300, allow_nan=False)))
    return RangeFilter(min(value, other), max(value, other), unit_value)


def _concept_attribute(code: str, system: str, values: list[str]):
    return st.lists(st.sampled_from(values), min_size=1, max_size=2, unique=True).map(
        lambda chosen: AttributeFilter(
            TermCode("mii.abide", code), ConceptFilter(tuple(TermCode(system, v) for v in chosen))
        )
    )


@st.composite
def criteria(
    draw, vocabulary: Vocabulary, *, nested: bool = False, contexts: list[str] | None = None
) -> Criterion:
    name = "Diagnose" if nested else draw(st.sampled_from(contexts or CONTEXTS))
    value_filter, attributes, time = None, [], None
    maybe_time = st.one_of(st.none(), time_restrictions(vocabulary))

    def some(system: str, codes) -> tuple[TermCode, ...]:
        return tuple(
            TermCode(system, c)
            for c in draw(st.lists(st.sampled_from(_sorted(codes)), min_size=1, max_size=2, unique=True))
        )

    if name == "Diagnose":
        categories = _sorted({c[:3] for c in vocabulary.icd})
        blocks = [f"{a}-{b}" for a in categories for b in categories if a[0] == b[0] and a < b]
        terms = some(ICD10GM, vocabulary.icd | set(draw(st.lists(st.sampled_from(blocks), max_size=1))))
        if draw(st.booleans()):
            attributes.append(draw(_concept_attribute("clinicalStatus", CLINICAL, ["active", "resolved"])))
        if draw(st.booleans()):
            attributes.append(
                draw(_concept_attribute("verificationStatus", VERIFICATION, ["confirmed", "provisional"]))
            )
        time = draw(maybe_time)
    elif name == "Procedure":
        terms = some(OPS, vocabulary.ops)
        if draw(st.booleans()):
            attributes.append(
                draw(
                    _concept_attribute(
                        "status", "http://hl7.org/fhir/event-status", ["completed", "in-progress"]
                    )
                )
            )
        time = draw(maybe_time)
    elif name == "Procedure Category":
        terms = some(SNOMED, vocabulary.categories)
        time = draw(maybe_time)
    elif name == "Laboruntersuchung":
        loinc = draw(
            st.sampled_from(_sorted(vocabulary.quantities.keys() | vocabulary.value_concepts.keys()))
        )
        terms = (TermCode(LOINC, loinc),)
        if loinc in vocabulary.value_concepts and draw(st.booleans()):
            chosen = draw(
                st.lists(st.sampled_from(_sorted(vocabulary.value_concepts[loinc])), min_size=1, max_size=2)
            )
            value_filter = ConceptFilter(tuple(TermCode(s, c) for s, c in chosen))
        elif loinc in vocabulary.quantities and draw(st.booleans()):
            value_filter = draw(quantity_filters(vocabulary.quantities[loinc]))
        if draw(st.booleans()):
            attributes.append(
                draw(
                    _concept_attribute(
                        "status", "http://hl7.org/fhir/observation-status", ["final", "preliminary"]
                    )
                )
            )
        time = draw(maybe_time)
    elif name.startswith("Medikamenten"):
        terms = some(ATC, vocabulary.atc)
        time = draw(maybe_time)
    elif name == "Specimen":
        terms = some(SNOMED, vocabulary.specimen_types)
        if draw(st.booleans()):
            attributes.append(
                draw(
                    _concept_attribute(
                        "status", "http://hl7.org/fhir/specimen-status", ["available", "unavailable"]
                    )
                )
            )
        if draw(st.booleans()):
            diagnoses = draw(st.lists(criteria(vocabulary, nested=True), min_size=1, max_size=2))
            attributes.append(
                AttributeFilter(
                    TermCode("mii.abide", "festgestellteDiagnose"), ReferenceFilter(tuple(diagnoses))
                )
            )
        time = draw(maybe_time)
    elif name == "Fall":
        terms = some("http://terminology.hl7.org/CodeSystem/v3-ActCode", vocabulary.classes)
        if draw(st.booleans()):
            attributes.append(
                draw(
                    _concept_attribute(
                        "Kontaktebene", KONTAKTEBENE, _sorted(vocabulary.levels | {"abteilungskontakt"})
                    )
                )
            )
        time = draw(maybe_time)
    elif name == "Molekulargenetischer Befundbericht":
        terms = (TermCode(LOINC, "81247-9"),)
        time = draw(maybe_time)
    elif name == "Patient":
        kind = draw(st.sampled_from(["age", "gender", "deceased"]))
        if kind == "age":
            terms = (TermCode(SNOMED, "424144002"),)
            years = draw(st.integers(0, 100))
            unit = draw(st.sampled_from(["a", "mo", None]))
            value = years * 12 if unit == "mo" else years
            if draw(st.booleans()):
                value_filter = ComparatorFilter(
                    draw(st.sampled_from(["gt", "ge", "lt", "le", "eq", "ne"])),
                    value,
                    Unit(unit) if unit else None,
                )
            else:
                high = value + draw(st.integers(0, 30)) * (12 if unit == "mo" else 1)
                value_filter = RangeFilter(value, high, Unit(unit) if unit else None)
        elif kind == "gender":
            terms = (TermCode(SNOMED, "263495000"),)
            chosen = draw(
                st.lists(
                    st.sampled_from(["female", "male", "other", "unknown"]),
                    min_size=1,
                    max_size=2,
                    unique=True,
                )
            )
            value_filter = ConceptFilter(
                tuple(TermCode("http://hl7.org/fhir/administrative-gender", g) for g in chosen)
            )
        else:
            terms = (TermCode(SNOMED, "419099009"),)
    else:  # Einwilligung
        combined = load_mapping().contexts["Einwilligung"].combined
        answers = st.lists(
            st.sampled_from(["yes", "no"]), min_size=len(combined.parts), max_size=len(combined.parts)
        )
        term = st.one_of(
            st.sampled_from(_sorted(vocabulary.provisions)).map(lambda c: TermCode(PROVISION, c)),
            answers.map(lambda a: TermCode(combined.system, "-".join(a))),
        )
        terms = tuple(draw(st.lists(term, min_size=1, max_size=2, unique=True)))
        time = draw(maybe_time)
    negated = not nested and draw(st.integers(0, 3)) == 0
    return Criterion(_context(name), terms, value_filter, tuple(attributes), time, negated)


def queries(vocabulary: Vocabulary):
    group = st.lists(criteria(vocabulary), min_size=1, max_size=3).map(tuple)
    return st.builds(
        StructuredQuery,
        inclusion=st.lists(group, min_size=1, max_size=3).map(tuple),
        exclusion=st.lists(st.lists(criteria(vocabulary), min_size=1, max_size=2).map(tuple), max_size=2).map(
            tuple
        ),
    )


# --- the properties --------------------------------------------------------------------------------

CONTEXTS = [
    "Diagnose", "Procedure", "Procedure Category", "Laboruntersuchung", "Medikamentenverabreichung",
    "Medikamentenverordnung", "Medikamentenanordnung", "Specimen", "Fall", "Molekulargenetischer Befundbericht",
    "Patient", "Einwilligung",
]  # fmt: skip
# Random single criteria per context: more where the filters leave more room (values and units, age,
# consent decisions, references), fewer where a criterion is little more than a code.
EXAMPLES = {"Laboruntersuchung": 40, "Patient": 20, "Einwilligung": 20, "Specimen": 15, "Diagnose": 15}
SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}


def _assert_agree(site: Site, feasibility, structured_query: StructuredQuery, today: dt.date) -> None:
    note(orjson.dumps(query_to_json(structured_query), default=str).decode())
    expected = reference.patient_ids(site.resources, structured_query, today=today)
    found = set(feasibility.patient_ids(site.snapshot, structured_query, today=today))
    assert found == expected, (
        f"SQL and reference disagree on {len(found ^ expected)} patients: "
        f"only SQL {sorted(found - expected)[:5]}, only reference {sorted(expected - found)[:5]}"
    )


@pytest.mark.parametrize("context", CONTEXTS)
def test_both_engines_find_the_same_patients_for_any_single_criterion(site, context):
    site, feasibility = site

    @settings(max_examples=_examples(EXAMPLES.get(context, 8), feasibility), **SETTINGS)
    @given(criterion=criteria(site.vocabulary, contexts=[context]), today=st.sampled_from(DAYS))
    def check(criterion: Criterion, today: dt.date) -> None:
        _assert_agree(site, feasibility, StructuredQuery(((criterion,),)), today)

    check()


def test_both_engines_find_the_same_patients_for_any_query(site):
    site, feasibility = site

    @settings(max_examples=_examples(40, feasibility), **SETTINGS)
    @given(data=st.data())
    def check(data) -> None:
        structured_query = data.draw(queries(site.vocabulary), label="query")
        _assert_agree(site, feasibility, structured_query, data.draw(st.sampled_from(DAYS), label="today"))

    check()


def test_the_random_criteria_find_patients(dataset):
    """Guard against a vacuous property: criteria drawn from the dataset's codes do find patients."""
    site = dataset
    vocabulary = site.vocabulary
    assert (
        vocabulary.icd
        and vocabulary.ops
        and vocabulary.atc
        and vocabulary.quantities
        and vocabulary.provisions
    )
    for system, code, name in [
        (ICD10GM, sorted(vocabulary.icd)[0][:3], "Diagnose"),
        (LOINC, sorted(vocabulary.quantities)[0], "Laboruntersuchung"),
        (PROVISION, sorted(vocabulary.provisions)[0], "Einwilligung"),
    ]:
        structured_query = StructuredQuery(((Criterion(_context(name), (TermCode(system, code),)),),))
        assert reference.patient_ids(site.resources, structured_query, today=DAYS[0]), name


# --- the semantic canonical form (issue 12, P-1) ----------------------------------------------------


@st.composite
def rewritings(draw, query: StructuredQuery) -> StructuredQuery:
    """The same question written differently: groups, criteria and term codes reordered and repeated, and
    groups added that others absorb (inclusion: a group plus another criterion; exclusion: likewise)."""
    everything = query.criteria()

    def criterion(c: Criterion) -> Criterion:
        codes = list(c.term_codes) + draw(st.lists(st.sampled_from(c.term_codes), max_size=2))
        return dataclasses.replace(c, term_codes=tuple(draw(st.permutations(codes))))

    def side(groups: tuple[tuple[Criterion, ...], ...]) -> tuple[tuple[Criterion, ...], ...]:
        if not groups:
            return ()
        written = [
            tuple(
                criterion(c)
                for c in draw(st.permutations(list(g) + draw(st.lists(st.sampled_from(g), max_size=2))))
            )
            for g in groups
        ]
        written += draw(st.lists(st.sampled_from(written), max_size=2))  # repeated groups
        for g in draw(st.lists(st.sampled_from(groups), max_size=2)):  # absorbed supersets
            written.append((*g, draw(st.sampled_from(everything))))
        return tuple(draw(st.permutations(written)))

    return StructuredQuery(side(query.inclusion), side(query.exclusion))


def test_a_question_written_differently_has_one_canonical_form_and_finds_the_same_patients(site):
    site, feasibility = site

    @settings(max_examples=_examples(25, feasibility), **SETTINGS)
    @given(data=st.data())
    def check(data) -> None:
        original = data.draw(queries(site.vocabulary), label="query")
        rewritten = data.draw(rewritings(original), label="rewritten")
        assert canonical_query(rewritten) == canonical_query(original)
        today = data.draw(st.sampled_from(DAYS), label="today")
        assert feasibility.patient_ids(site.snapshot, rewritten, today=today) == feasibility.patient_ids(
            site.snapshot, original, today=today
        )

    check()
