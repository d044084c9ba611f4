"""The concept catalogue and criteria search of the query builder: the searches a new user types find
what they must, in a sensible order; every concept yields a criterion that a site accepts; the filters
offered are the ones the mapping answers; bad input gets a clear error."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path

import orjson
import pytest

from datenraum.query.catalogue.build import build_criterion, criterion_json
from datenraum.query.catalogue.load import (
    KINDS,
    SHIPPED,
    AgeOption,
    CatalogueError,
    Concept,
    ConceptChoiceError,
    ConceptOption,
    QuantityOption,
    load_catalogue,
)
from datenraum.query.catalogue.search import MAX_SEARCH_LENGTH, ConceptIndex, concept_index
from datenraum.query.check import check_query
from datenraum.query.engines import reference
from datenraum.query.mapping import load_mapping
from datenraum.query.model import (
    AttributeFilter,
    ComparatorFilter,
    ConceptFilter,
    QueryError,
    RangeFilter,
    ReferenceFilter,
    TermCode,
    TimeRestriction,
    Unit,
    parse_query,
    query_to_json,
)
from datenraum.query.units import comparable_units

ICD = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
GENDER = "http://hl7.org/fhir/administrative-gender"


def codes(results: list[Concept]) -> list[str]:
    return [c.term.code for c in results]


def found(text: str, **options) -> list[str]:
    return codes(concept_index().search(text, **options))


def concept(system: str, code: str, context: str | None = None) -> Concept:
    for candidate in load_catalogue():
        if candidate.term.key() == (system, code) and context in (None, candidate.context.code):
            return candidate
    raise LookupError(f"{system}|{code} is not in the catalogue")


def accepted(*criteria: dict, exclusion: tuple[dict, ...] = ()) -> None:
    body = {"inclusionCriteria": [[c] for c in criteria]}
    if exclusion:
        body["exclusionCriteria"] = [[c] for c in exclusion]
    check_query(parse_query(body), load_mapping())


# --- what a new user types --------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["Diabetes", "diabetes", "Typ 2", "E11", "e11", "typ 2 diab", "Zucker"])
def test_search_finds_type_2_diabetes_when_typing_words_or_the_code(text: str) -> None:
    assert "E11" in found(text, limit=10)


@pytest.mark.parametrize("text", ["HbA1c", "hba1c", "4548-4", "45484", "Langzeitblutzucker"])
def test_search_finds_hba1c_in_percent_when_typing_its_name_or_code(text: str) -> None:
    assert found(text)[0] == "4548-4"


def test_search_offers_every_hba1c_scale_when_typing_hba1c() -> None:
    assert {"4548-4", "17856-6", "59261-8"} <= set(found("HbA1c"))


@pytest.mark.parametrize("text", ["Krebs", "cancer", "C00-C97", "c00-c97", "Neubildung", "Karzinom"])
def test_search_finds_the_malignant_neoplasm_block_when_typing_cancer(text: str) -> None:
    assert found(text)[0] == "C00-C97"


@pytest.mark.parametrize("text", ["Frau", "female", "Geschlecht", "weiblich", "women"])
def test_search_finds_the_gender_criterion_first_when_typing_woman(text: str) -> None:
    assert found(text)[0] == "263495000"


@pytest.mark.parametrize("text", ["Alter", "age", "alter"])
def test_search_finds_the_age_criterion_first_when_typing_age(text: str) -> None:
    assert found(text)[0] == "424144002"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Metformin", "A10BA02"),
        ("Serum", "119364003"),
        ("Hüftprothese", "5-820"),
        ("MDAT erheben", "2.16.840.1.113883.3.1937.777.24.5.3.6"),
    ],
)
def test_search_finds_medication_specimen_procedure_and_consent_concepts(text: str, code: str) -> None:
    assert found(text)[0] == code


def test_search_shows_the_code_system_and_context_of_each_result() -> None:
    first = concept_index().search("E11")[0]
    assert (first.system_label, first.context.code, first.display_en) == (
        "ICD-10-GM",
        "Diagnose",
        "Type 2 diabetes mellitus",
    )


# --- ranking ----------------------------------------------------------------------------------------


def test_exact_code_comes_first_then_codes_starting_with_it() -> None:
    results = found("E11", limit=30)
    assert results[0] == "E11"
    assert all(code.startswith("E11.") for code in results[1:])


def test_code_prefix_matches_come_before_display_matches() -> None:
    results = concept_index().search("C50", limit=30)
    prefix = [c for c in results if c.term.code.startswith("C50")]
    assert results[: len(prefix)] == prefix


@pytest.mark.parametrize("text", ["e119", "E11.9", "e11.9", "E 11.9"])
def test_code_match_ignores_dots_spaces_and_case_when_typing_a_code(text: str) -> None:
    index = ConceptIndex([concept(ICD, "E11"), _variant(concept(ICD, "E11"), "E11.9")])
    assert codes(index.search(text)) == ["E11.9"]


def _variant(base: Concept, code: str, **changes) -> Concept:
    return dataclasses.replace(base, term=dataclasses.replace(base.term, code=code), **changes)


def test_higher_level_concepts_come_before_their_children_when_both_match() -> None:
    results = found("Diabetes mellitus Typ 2", limit=10)
    assert results.index("E11") < results.index("E11.90")
    results = found("Diabetes", limit=10)
    assert results.index("E10-E14") < results.index("E11")


def test_more_common_concepts_come_first_among_equals() -> None:
    base = concept(ICD, "E11")
    rare = _variant(base, "X1", display_de="Testkrankheit selten", weight=1)
    common = _variant(base, "X2", display_de="Testkrankheit häufig", weight=3)
    assert codes(ConceptIndex([rare, common]).search("Testkrankheit")) == ["X2", "X1"]


def test_display_matches_come_before_synonym_matches() -> None:
    base = concept(ICD, "E11")
    by_synonym = _variant(base, "X1", display_de="Etwas anderes", synonyms=("Zucker",), weight=3)
    by_display = _variant(base, "X2", display_de="Zuckerkrankheit", synonyms=(), weight=1)
    assert codes(ConceptIndex([by_synonym, by_display]).search("Zucker")) == ["X2", "X1"]


def test_chosen_language_display_matches_come_before_the_other_language() -> None:
    base = concept(ICD, "E11")
    english_only = _variant(base, "X1", display_de="Etwas", display_en="Sugar disease", weight=3)
    german = _variant(base, "X2", display_de="Sugar in German", display_en="Nothing", weight=1)
    assert codes(ConceptIndex([english_only, german]).search("sugar", language="de")) == ["X2", "X1"]
    assert codes(ConceptIndex([english_only, german]).search("sugar", language="en")) == ["X1", "X2"]


def test_every_word_must_match_when_typing_several_words() -> None:
    assert "E10" not in found("typ 2 diab", limit=50)
    assert found("diabetes zzzz") == []


def test_search_finds_nothing_for_a_miss() -> None:
    assert found("xqzjw") == []


@pytest.mark.parametrize("text", ["Hämoglobin", "Haemoglobin", "Hamoglobin", "HÄMOGLOBIN"])
def test_umlauts_fold_so_ae_and_a_find_the_same(text: str) -> None:
    assert found(text)[0] == "718-7"


def test_sharp_s_folds_to_ss() -> None:
    base = concept(ICD, "E11")
    index = ConceptIndex([_variant(base, "X1", display_de="Straßenverkehr")])
    assert codes(index.search("strassen")) == ["X1"]
    assert codes(index.search("Straße")) == ["X1"]


def test_kinds_restrict_the_results() -> None:
    results = concept_index().search("Diabetes", kinds=["medication"])
    assert results
    assert {c.kind for c in results} == {"medication"}


def test_limit_caps_the_number_of_results() -> None:
    assert len(concept_index().search("a", limit=3)) == 3


# --- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\t\n", "-.-", "\x00\x01"])
def test_blank_or_punctuation_only_text_gives_no_results(text: str) -> None:
    assert concept_index().search(text) == []


def test_control_characters_separate_words_instead_of_failing() -> None:
    assert "E11" in found("typ\x002\x07diab")


def test_overlong_text_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match=f"10000 characters long; at most {MAX_SEARCH_LENGTH}"):
        concept_index().search("a" * 10_000)


def test_text_of_the_longest_length_is_searched() -> None:
    text = "diabetes " * 22
    assert len(text) <= MAX_SEARCH_LENGTH
    assert found(text)[0] == "E10-E14"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"language": "fr"}, "language must be one of de, en"),
        ({"limit": 0}, "limit must be a whole number of at least 1"),
        ({"kinds": ["drugs"]}, "unknown kind drugs"),
    ],
)
def test_bad_search_options_are_refused_naming_the_option(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        concept_index().search("diabetes", **options)


def test_non_text_search_is_refused() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        concept_index().search(None)  # type: ignore[arg-type]


# --- the catalogue ----------------------------------------------------------------------------------


def test_catalogue_covers_every_kind_of_the_builder() -> None:
    assert {c.kind for c in load_catalogue()} == set(KINDS)


def test_catalogue_has_every_icd_chapter_as_a_block_range() -> None:
    chapters = [c for c in load_catalogue() if c.term.system == ICD and c.level == 0]
    assert len(chapters) == 22
    assert all("-" in c.term.code for c in chapters)


def test_catalogue_has_every_diagnosis_the_generator_codes() -> None:
    from datenraum.synth import codes as synth

    catalogue = {c.term.code: c.display_de for c in load_catalogue() if c.term.system == ICD}
    for diagnosis in synth.CHRONIC + synth.ACUTE:
        for code, display, _ in diagnosis.codes:
            assert catalogue.get(code) == display
            assert code[:3] in catalogue or code.startswith("U07")


def test_catalogue_has_every_lab_the_generator_measures() -> None:
    from datenraum.synth import codes as synth

    catalogue = {c.term.code for c in load_catalogue() if c.term.system == LOINC}
    assert {test.loinc for test in synth.LAB_TESTS.values()} <= catalogue


def test_every_quantity_filter_offers_only_units_that_units_py_compares() -> None:
    for candidate in load_catalogue():
        option = candidate.value_filter
        if isinstance(option, QuantityOption):
            comparable = {u.unit for u in comparable_units(option.default_unit)}
            assert option.default_unit in option.units
            assert set(option.units) == comparable


def test_hba1c_in_percent_is_never_comparable_with_ifcc_mmol_per_mol() -> None:
    percent = concept(LOINC, "4548-4").value_filter
    ifcc = concept(LOINC, "59261-8").value_filter
    assert (percent.default_unit, ifcc.default_unit) == ("%", "mmol/mol")
    assert "mmol/mol" not in percent.units


def test_offered_filters_are_the_ones_the_mapping_answers() -> None:
    mapping = load_mapping()
    for candidate in load_catalogue():
        mapped = mapping.contexts[candidate.context.code]
        assert candidate.time_restriction == (mapped.time is not None)
        assert {a.code.code for a in candidate.attributes} == set(mapped.attributes)
        if mapped.kind == "standard" and mapped.value is None:
            assert candidate.value_filter is None


def test_demographics_offer_age_units_and_gender_values() -> None:
    age = concept(SNOMED, "424144002").value_filter
    gender = concept(SNOMED, "263495000").value_filter
    assert isinstance(age, AgeOption)
    assert age.units == ("a", "mo", "wk")
    assert isinstance(gender, ConceptOption)
    assert {v.code for v in gender.concepts} == {"female", "male", "other", "unknown"}
    assert concept(SNOMED, "419099009").value_filter is None


def test_medications_are_offered_in_each_medication_context() -> None:
    contexts = {c.context.code for c in load_catalogue() if c.term.code == "A10BA02"}
    assert contexts == {"Medikamentenverabreichung", "Medikamentenverordnung", "Medikamentenanordnung"}


def test_combined_consent_codes_cover_every_answer_combination_in_the_portal_wording() -> None:
    combined = {c.term.code: c for c in load_catalogue() if c.term.system == "fdpg.consent.combined"}
    assert len(combined) == 16
    assert combined["yes-yes-no-no"].display_de == (
        "Verteilte, EU-DSGVO konforme Analyse, ohne Krankenkassendaten, und ohne Rekontaktierung"
    )


def test_every_concept_yields_a_criterion_a_site_accepts() -> None:
    mapping = load_mapping()
    for candidate in load_catalogue():
        value_filter = None
        if isinstance(candidate.value_filter, AgeOption):
            value_filter = ComparatorFilter("gt", 50)
        elif isinstance(candidate.value_filter, ConceptOption):
            value_filter = ConceptFilter((candidate.value_filter.concepts[0].term_code(),))
        body = {"inclusionCriteria": [[criterion_json(candidate, value_filter=value_filter)]]}
        check_query(parse_query(body), mapping)


def test_every_offered_unit_and_attribute_value_yields_a_criterion_a_site_accepts() -> None:
    mapping = load_mapping()
    for candidate in load_catalogue():
        choices = []
        if isinstance(candidate.value_filter, QuantityOption):
            choices += [
                {"value_filter": ComparatorFilter("ge", 1.5, Unit(unit, unit))}
                for unit in candidate.value_filter.units
            ]
        for option in candidate.attributes:
            if option.kind == "concept" and option.values:
                chosen = ConceptFilter(tuple(v.term_code() for v in option.values))
                choices.append({"attribute_filters": [AttributeFilter(option.code, chosen)]})
        if candidate.time_restriction:
            choices.append({"time_restriction": TimeRestriction(dt.date(2020, 1, 1), dt.date(2024, 12, 31))})
        for choice in choices:
            body = {"inclusionCriteria": [[criterion_json(candidate, **choice)]]}
            check_query(parse_query(body), mapping)


# --- criteria as the portal writes them --------------------------------------------------------------


def test_criterion_json_is_written_exactly_as_the_portal_writes_it() -> None:
    written = criterion_json(
        concept(LOINC, "4548-4"),
        value_filter=ComparatorFilter("gt", 6.5, Unit("%", "%")),
        time_restriction=TimeRestriction(dt.date(2023, 1, 1), dt.date(2023, 12, 31)),
    )
    assert written == {
        "context": {
            "system": "fdpg.mii.cds",
            "code": "Laboruntersuchung",
            "display": "Laboruntersuchung",
            "version": "1.0.0",
        },
        "termCodes": [{"system": LOINC, "code": "4548-4", "display": "HbA1c (Hämoglobin A1c) im Blut"}],
        "valueFilter": {
            "type": "quantity-comparator",
            "comparator": "gt",
            "value": 6.5,
            "unit": {"code": "%", "display": "%"},
        },
        "timeRestriction": {"afterDate": "2023-01-01", "beforeDate": "2023-12-31"},
    }


def test_criterion_json_round_trips_through_the_portal_format() -> None:
    criterion = build_criterion(
        concept(SNOMED, "119364003"),
        attribute_filters=[
            AttributeFilter(
                TermCode("http://hl7.org/fhir/StructureDefinition", "festgestellteDiagnose"),
                ReferenceFilter((build_criterion(concept(ICD, "C50")),)),
            )
        ],
    )
    query = parse_query(
        {
            "inclusionCriteria": [
                [criterion_json(concept(SNOMED, "119364003"), attribute_filters=criterion.attribute_filters)]
            ]
        }
    )
    assert query.inclusion[0][0] == criterion


def test_a_quantity_without_unit_gets_the_default_unit() -> None:
    written = criterion_json(concept(LOINC, "2160-0"), value_filter=RangeFilter(1.2, 3.0))
    assert written["valueFilter"]["unit"] == {"code": "mg/dL", "display": "mg/dL"}


def test_an_age_without_unit_is_in_years() -> None:
    written = criterion_json(concept(SNOMED, "424144002"), value_filter=ComparatorFilter("gt", 50))
    assert written["valueFilter"]["unit"] == {"code": "a", "display": "a"}


@pytest.mark.parametrize(
    ("base", "choice", "message"),
    [
        (
            (LOINC, "4548-4"),
            {"value_filter": ComparatorFilter("gt", 48, Unit("mmol/mol"))},
            "unit 'mmol/mol' cannot be compared",
        ),
        ((ICD, "E11"), {"value_filter": ComparatorFilter("gt", 1)}, "has no value to filter on"),
        ((SNOMED, "424144002"), {}, "needs a value filter"),
        (
            (SNOMED, "424144002"),
            {"value_filter": ComparatorFilter("gt", 50, Unit("d"))},
            "unit 'd' cannot be compared",
        ),
        (
            (SNOMED, "263495000"),
            {"value_filter": ConceptFilter((TermCode(GENDER, "woman"),))},
            "is not offered",
        ),
        ((SNOMED, "263495000"), {"value_filter": ComparatorFilter("gt", 1)}, "takes a choice of concepts"),
        (
            (SNOMED, "263495000"),
            {"time_restriction": TimeRestriction(dt.date(2020, 1, 1))},
            "no time to restrict",
        ),
        (
            (ICD, "E11"),
            {"attribute_filters": [AttributeFilter(TermCode("x", "color"), ConceptFilter(()))]},
            "has no attribute 'color'",
        ),
        (
            (ICD, "E11"),
            {
                "attribute_filters": [
                    AttributeFilter(TermCode("x", "clinicalStatus"), ConceptFilter((TermCode("x", "sad"),)))
                ]
            },
            "x|sad is not offered",
        ),
    ],
)
def test_choices_a_concept_does_not_offer_are_refused_naming_them(
    base: tuple, choice: dict, message: str
) -> None:
    with pytest.raises(ConceptChoiceError, match=re.escape(message)):
        criterion_json(concept(*base), **choice)


def test_reference_attribute_refuses_criteria_of_another_context() -> None:
    attribute = AttributeFilter(
        TermCode("http://hl7.org/fhir/StructureDefinition", "festgestellteDiagnose"),
        ReferenceFilter((build_criterion(concept(LOINC, "718-7")),)),
    )
    with pytest.raises(ConceptChoiceError, match="refers to a Diagnose, not a Laboruntersuchung"):
        build_criterion(concept(SNOMED, "119364003"), attribute_filters=[attribute])


# --- the "done" sentence -----------------------------------------------------------------------


def _patient(patient_id: str, gender: str, birth: str) -> dict:
    return {"resourceType": "Patient", "id": patient_id, "gender": gender, "birthDate": birth}


def _condition(patient_id: str, code: str) -> dict:
    return {
        "resourceType": "Condition",
        "id": f"c-{patient_id}-{code}",
        "subject": {"reference": f"Patient/{patient_id}"},
        "code": {"coding": [{"system": ICD, "code": code}]},
        "onsetDateTime": "2020-03-01",
    }


def _hba1c(patient_id: str, percent: float) -> dict:
    return {
        "resourceType": "Observation",
        "id": f"o-{patient_id}",
        "status": "final",
        "subject": {"reference": f"Patient/{patient_id}"},
        "code": {"coding": [{"system": LOINC, "code": "4548-4"}]},
        "effectiveDateTime": "2023-05-01T10:00:00+02:00",
        "valueQuantity": {"value": percent, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
    }


def test_women_over_50_with_type_2_diabetes_and_high_hba1c_without_cancer_from_search_results() -> None:
    index = concept_index()
    woman, age = index.search("Frau")[0], index.search("Alter")[0]
    diabetes, hba1c, cancer = index.search("Typ 2")[0], index.search("HbA1c")[0], index.search("Krebs")[0]
    female = next(v for v in woman.value_filter.concepts if v.code == "female")
    inclusion = [
        criterion_json(woman, value_filter=ConceptFilter((female.term_code(),))),
        criterion_json(age, value_filter=ComparatorFilter("gt", 50)),
        criterion_json(diabetes),
        criterion_json(hba1c, value_filter=ComparatorFilter("gt", 6.5, Unit("%", "%"))),
    ]
    query = parse_query(
        query_to_json(
            parse_query(
                {
                    "inclusionCriteria": [[c] for c in inclusion],
                    "exclusionCriteria": [[criterion_json(cancer)]],
                }
            )
        )
    )
    resources = [
        _patient("match", "female", "1960-01-01"),
        _condition("match", "E11.90"),
        _hba1c("match", 7.4),
        _patient("with-cancer", "female", "1960-01-01"),
        _condition("with-cancer", "E11.90"),
        _condition("with-cancer", "C50.4"),
        _hba1c("with-cancer", 7.4),
        _patient("man", "male", "1960-01-01"),
        _condition("man", "E11.90"),
        _hba1c("man", 7.4),
        _patient("young", "female", "1990-01-01"),
        _condition("young", "E11.90"),
        _hba1c("young", 7.4),
        _patient("well-controlled", "female", "1960-01-01"),
        _condition("well-controlled", "E11.90"),
        _hba1c("well-controlled", 6.1),
    ]
    assert reference.patient_ids(resources, query, today=dt.date(2024, 6, 15)) == {"match"}


def test_a_query_the_portal_wrote_is_accepted_alongside_catalogue_criteria() -> None:
    portal = {
        "context": {"code": "Diagnose", "system": "fdpg.mii.cds", "version": "1.0.0", "display": "Diagnose"},
        "termCodes": [
            {
                "code": "E13",
                "system": ICD,
                "version": "2023",
                "display": "Sonstiger näher bezeichneter Diabetes mellitus",
            }
        ],
    }
    accepted(portal, criterion_json(concept(ICD, "E13")))
    with pytest.raises(QueryError):
        accepted(
            {"context": {"code": "Unknown", "system": "fdpg.mii.cds"}, "termCodes": [portal["termCodes"][0]]}
        )


# --- a catalogue of one's own -------------------------------------------------------------------------


@pytest.fixture
def own_catalogue(tmp_path: Path) -> Path:
    """A copy of the shipped catalogue folder that a test may change."""
    for name in (
        "catalogues.json",
        *(c["file"] for c in orjson.loads(SHIPPED.joinpath("catalogues.json").read_bytes())["catalogues"]),
    ):
        (tmp_path / name).write_bytes(SHIPPED.joinpath(name).read_bytes())
    return tmp_path


def _append(folder: Path, name: str, line: str) -> None:
    with (folder / name).open("a", encoding="utf-8") as file:
        file.write(line + "\n")


def test_a_catalogue_folder_of_ones_own_is_loaded_and_searched(own_catalogue: Path) -> None:
    _append(
        own_catalogue,
        "icd10gm.tsv",
        "E11.74\t4\t1\tDiabetes mellitus, Typ 2: Mit diabetischem Fußsyndrom, nicht als entgleist bezeichnet\tType 2 diabetes mellitus: with diabetic foot syndrome, not stated as uncontrolled\tdiabetischer Fuß",
    )
    index = ConceptIndex(load_catalogue(own_catalogue))
    assert codes(index.search("diabetischer fuss")) == ["E11.74"]


@pytest.mark.parametrize(
    ("file", "line", "message"),
    [
        (
            "icd10gm.tsv",
            "X00\tone\t1\tTest\tTest\t",
            r"icd10gm.tsv, line \d+, level: expected a whole number, got 'one'",
        ),
        ("icd10gm.tsv", "X00\t2\t1\t\tTest\t", r"icd10gm.tsv, line \d+, display_de: must not be empty"),
        ("icd10gm.tsv", "X00\t2\t1", r"icd10gm.tsv, line \d+: expected 6 fields"),
        (
            "loinc.tsv",
            "1-1\t2\t1\tTest\tTest\tfurlongs\t",
            r"loinc.tsv, line \d+, unit: unit 'furlongs' is not a UCUM unit",
        ),
        (
            "demographics.tsv",
            "12345\t2\t1\tTest\tTest\t",
            r"demographics.tsv, line \d+, code: 12345 is not a Patient term",
        ),
    ],
)
def test_a_broken_catalogue_row_is_refused_naming_file_line_and_field(
    own_catalogue: Path, file: str, line: str, message: str
) -> None:
    _append(own_catalogue, file, line)
    with pytest.raises(CatalogueError, match=message):
        load_catalogue(own_catalogue)


def test_a_mapped_attribute_without_displays_is_refused(own_catalogue: Path) -> None:
    meta = orjson.loads((own_catalogue / "catalogues.json").read_bytes())
    del meta["attributes"]["Diagnose"]["severity"]
    (own_catalogue / "catalogues.json").write_bytes(orjson.dumps(meta))
    with pytest.raises(CatalogueError, match=r"attributes.Diagnose: no display or values for severity"):
        load_catalogue(own_catalogue)


def test_malformed_catalogue_json_is_refused_naming_line_and_column(own_catalogue: Path) -> None:
    (own_catalogue / "catalogues.json").write_text('{"contexts": \n  nope}')
    with pytest.raises(CatalogueError, match=r"catalogues.json, line 2, column \d+: malformed JSON"):
        load_catalogue(own_catalogue)


def test_a_missing_catalogue_file_is_refused_naming_it(own_catalogue: Path) -> None:
    (own_catalogue / "ops.tsv").unlink()
    with pytest.raises(CatalogueError, match=r"ops\.tsv: cannot be read"):
        load_catalogue(own_catalogue)


def test_a_concept_picked_from_the_results_is_found_again_by_context_system_and_code() -> None:
    picked = concept_index().search("Metformin")[1]
    again = concept_index().concept(picked.context.code, picked.term.system, picked.term.code)
    assert again == picked
    with pytest.raises(LookupError, match=re.escape("no concept http://loinc.org|E11 in context 'Diagnose'")):
        concept_index().concept("Diagnose", LOINC, "E11")
