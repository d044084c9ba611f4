"""Biosamples at the site: the MII biobank module in the store, the sample terminology, the counts of a
sample search, and what of them may leave the site (issue 21)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from shared_data import shared_data_folder

from datenraum.privacy.counts import ObfuscationPolicy
from datenraum.privacy.samples import SamplePolicy, group_key, release_group
from datenraum.protocol.messages import BiobankListing, ProtocolError, SiteCount
from datenraum.protocol.samples import SampleResult, from_measure_report
from datenraum.query.biobank.search import SampleFilter, parse_sample_filter
from datenraum.query.biobank.terminology import (
    CATEGORIES,
    MIABIS_SAMPLE_TYPE,
    SNOMED,
    category_of,
    sample_types,
    temperature_class,
)
from datenraum.query.model import QueryError, parse_query
from datenraum.site.ingest import ingest
from datenraum.site.metadata import biobank_listings
from datenraum.site.samples import sample_counts
from datenraum.site.store import Store

BB = "https://www.medizininformatik-initiative.de/fhir/ext/modul-biobank"
LEVEL = f"{BB}/StructureDefinition/mii-ex-biobank-ebene"
ALIQUOTS = f"{BB}/StructureDefinition/mii-ex-biobank-anzahl-aliquots"
MANAGED_BY = f"{BB}/StructureDefinition/VerwaltendeOrganisation"
TEMPERATURE = f"{BB}/StructureDefinition/Temperaturbedingungen"
MIABIS_TEMPERATURE = (
    "https://fhir.bbmri-eric.eu/fhir/StructureDefinition/miabis-sample-storage-temperature-extension"
)
CHARITE = "mii-exa-test-data-organization-biobank-charite"


@pytest.fixture(scope="module")
def biobank_bundle() -> Path:
    return shared_data_folder("mii-kds-testdata") / "Bundle-mii-exa-test-data-bundle-biobank-1.json"


@pytest.fixture(scope="module")
def biobank_store(tmp_path_factory: pytest.TempPathFactory, biobank_bundle: Path) -> tuple[Store, object]:
    store = Store(tmp_path_factory.mktemp("biobank") / "store")
    return store, ingest(store, [biobank_bundle])


def _cells(counts) -> dict[tuple, tuple]:
    return {
        (c.biobank, c.category, c.temperature): (
            c.patients,
            c.samples,
            c.specimens,
            c.aliquots,
            dict(c.quantities),
        )
        for c in counts.cells
    }


# --- the store -----------------------------------------------------------------------------------------


def test_biobank_bundle_loads_whole_with_a_warning_per_foreign_diagnosis(biobank_store, biobank_bundle):
    report = biobank_store[1]
    assert report.added == {"Patient": 9, "Organization": 2, "Substance": 1, "Specimen": 20, "Condition": 1}
    assert report.total("rejected") == 0
    # 17 specimens name the one Condition, which is biobank-patient-1's: the 16 of other patients warn.
    assert report.warned == 16 and len(report.warnings) == 16
    first = report.warnings[0]
    assert first.location == f"{biobank_bundle}: Bundle.entry[6]"
    assert "Specimen/mii-exa-test-data-patient-3-specimen-2" in first.message
    assert "is of Patient/mii-exa-test-data-biobank-patient-1" in first.message
    assert not any("patient-1-specimen-1" in w.message for w in report.warnings)  # its own diagnosis
    assert report.to_dict()["warned"] == 16


def test_a_load_warns_only_about_its_own_specimens(biobank_bundle, tmp_path, write_ndjson):
    copy = Store(tmp_path / "copy")
    ingest(copy, [biobank_bundle])
    patient = {"resourceType": "Patient", "id": "other"}
    report = ingest(copy, [write_ndjson("patient.ndjson", [patient])])
    assert report.warned == 0 and report.warnings == []


def test_biobank_organizations_and_substances_are_tables(biobank_store):
    store, _ = biobank_store
    with store.snapshot() as snapshot:
        organizations = snapshot.connection.execute(
            "SELECT id, name, bbmri_id, part_of_id, alias FROM organization ORDER BY id"
        ).fetchall()
        substances = snapshot.connection.execute("SELECT id, code_system, code FROM substance").fetchall()
    assert organizations[0] == (
        CHARITE,
        "Zentrale Biobank der Charité",
        "de-12345",
        "mii-exa-test-data-organization-charite",
        "ZeBanC",
    )
    assert substances == [("mii-exa-test-data-patient-1-substance-1", SNOMED, "69519002")]


def test_counts_of_the_biobank_bundle_are_those_derived_by_hand(biobank_store):
    """From the Bundle's JSON: 20 specimens, all `available`, container quantities in ml, no storage
    steps (temperature Unknown). 17 name the Charité biobank; patient-3's colon tissue (128159001, 5 ml)
    and patient-4's two EDTA tubes of 2022-11-30 (5 ml each) name none.
    Charité, serum (119364003): patients 2..9 (patient-10's specimens are of biobank-patient-2), one
      tube each of 7 ml -> 8 patients, 8 samples, 8 specimens, 56 ml.
    Charité, whole blood: EDTA (445295009) of patients 2..9, 5 ml each, and patient-1's venous blood
      (122555007, 10 ml) -> 9 patients, 9 samples, 9 specimens, 50 ml.
    No biobank, whole blood: patient-4's two EDTA tubes, both collected `2022-11-30` (the same draw at
      date precision) -> 1 patient, 1 sample, 2 specimens, 10 ml.
    No biobank, tissue: 1 / 1 / 1, 5 ml. In total 9 patients, 19 samples, 20 specimens; no aliquots."""
    store, _ = biobank_store
    with store.snapshot() as snapshot:
        counts = sample_counts(snapshot)
    assert _cells(counts) == {
        (CHARITE, "blood-serum", "Unknown"): (8, 8, 8, 0, {"ml": 56.0}),
        (CHARITE, "whole-blood", "Unknown"): (9, 9, 9, 0, {"ml": 50.0}),
        (None, "tissue-other", "Unknown"): (1, 1, 1, 0, {"ml": 5.0}),
        (None, "whole-blood", "Unknown"): (1, 1, 2, 0, {"ml": 10.0}),
    }
    assert (counts.patients, counts.samples, counts.specimens, counts.aliquots) == (9, 19, 20, 0)
    assert [(b.id, b.bbmri_id) for b in counts.biobanks] == [(CHARITE, "de-12345")]
    assert [(b.biobank, b.patients) for b in counts.by_biobank] == [(CHARITE, 9), (None, 2)]


def _specimen_query(code: str) -> dict:
    return {
        "version": "https://medizininformatik-initiative.de/fdpg/StructuredQuery/v3/schema",
        "inclusionCriteria": [
            [
                {
                    "context": {
                        "code": "Specimen",
                        "system": "fdpg.mii.cds",
                        "version": "1.0.0",
                        "display": "Bioprobe",
                    },
                    "termCodes": [{"code": code, "system": SNOMED, "display": code}],
                }
            ]
        ],
    }


def test_a_specimen_criterion_counts_only_the_samples_of_its_type(biobank_store):
    """EDTA blood (445295009): 10 specimens of 8 patients, 9 MIABIS samples (patient-4's two tubes of
    2022-11-30 are one), 50 ml; the patients' serum and venous blood are not counted."""
    store, _ = biobank_store
    with store.snapshot() as snapshot:
        counts = sample_counts(snapshot, parse_query(_specimen_query("445295009")))
    assert (counts.patients, counts.samples, counts.specimens) == (8, 9, 10)
    assert sum(dict(c.quantities)["ml"] for c in counts.cells) == 50.0
    assert {c.category for c in counts.cells} == {"whole-blood"}


def test_a_diagnosis_filter_ignores_a_diagnosis_of_another_patient(biobank_store):
    """The Bundle's Condition has no code, so no ICD filter matches; and the 16 references to it from
    other patients' specimens would not count even if it had one."""
    store, _ = biobank_store
    with store.snapshot() as snapshot:
        counts = sample_counts(snapshot, sample_filter=SampleFilter(diagnoses=frozenset({"E11"})))
    assert counts.cells == () and counts.patients == 0


def test_filters_by_category_group_temperature_and_bbmri_id(biobank_store):
    store, _ = biobank_store
    with store.snapshot() as snapshot:
        blood = sample_counts(snapshot, sample_filter=parse_sample_filter({"categories": ["blood"]}))
        charite = sample_counts(snapshot, sample_filter=parse_sample_filter({"biobanks": ["de-12345"]}))
        frozen = sample_counts(snapshot, sample_filter=parse_sample_filter({"temperatures": ["-60to-85"]}))
    assert blood.specimens == 19
    assert charite.specimens == 17 and {c.biobank for c in charite.cells} == {CHARITE}
    assert frozen.specimens == 0


# --- the aliquot hierarchy (modelled on the MII biobank IG's examples) ---------------------------------


def _specimen(id_: str, level: str, sct: str, miabis: str, **extra) -> dict:
    extensions = [
        {
            "url": LEVEL,
            "valueCoding": {"system": f"{BB}/CodeSystem/mii-cs-biobank-probenebene", "code": level},
        },
        {"url": MANAGED_BY, "valueReference": {"reference": "Organization/sammlung"}},
    ]
    if "aliquots" in extra:
        extensions.append({"url": ALIQUOTS, "valueInteger": extra.pop("aliquots")})
    if "future" in extra:
        extensions.append(extra.pop("future"))
    resource = {
        "resourceType": "Specimen",
        "id": id_,
        "extension": extensions,
        "status": extra.pop("status", "available"),
        "type": {"coding": [{"system": SNOMED, "code": sct}, {"system": MIABIS_SAMPLE_TYPE, "code": miabis}]},
        "subject": {"reference": "Patient/p1"},
        "collection": {"collectedDateTime": "2018-06-07T15:54:00+01:00"},
        "container": [
            {
                "type": {"coding": [{"system": SNOMED, "code": "83059008"}]},
                "specimenQuantity": {
                    "value": extra.pop("ml"),
                    "system": "http://unitsofmeasure.org",
                    "code": "ml",
                },
            }
        ],
        "processing": extra.pop("processing", []),
    }
    if "parent" in extra:
        resource["parent"] = [{"reference": f"Specimen/{extra.pop('parent')}"}]
    assert not extra
    return resource


def _storage(low: float, high: float, start: str, end: str | None = None, miabis: str | None = None) -> dict:
    extensions = [
        {
            "url": TEMPERATURE,
            "valueRange": {
                "low": {"value": low, "system": "http://unitsofmeasure.org", "code": "Cel"},
                "high": {"value": high, "system": "http://unitsofmeasure.org", "code": "Cel"},
            },
        }
    ]
    if miabis:
        extensions.append(
            {
                "url": MIABIS_TEMPERATURE,
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": "https://fhir.bbmri-eric.eu/fhir/CodeSystem/miabis-storage-temperature-cs",
                            "code": miabis,
                        }
                    ]
                },
            }
        )
    period = {"start": start} | ({"end": end} if end else {})
    return {
        "extension": extensions,
        "procedure": {"coding": [{"system": SNOMED, "code": "1186936003"}]},
        "timePeriod": period,
    }


UNKNOWN_EXTENSION = {
    "url": "https://example.org/fhir/StructureDefinition/freezer-rack",
    "valueString": "R7-S3",
}


def _hierarchy(buffy_aliquot_2_status: str = "available") -> list[dict]:
    """Primary venous blood 10 ml (room temperature) -> plasma group (4 declared aliquots, none stored;
    stored at room temperature, then at -85..-75 °C, which is open) and buffy coat group (2 declared)
    -> its 2 aliquots of 0.05 ml in liquid nitrogen."""
    rt = _storage(15, 25, "2018-06-07T16:00:00+01:00")
    return [
        {"resourceType": "Patient", "id": "p1"},
        {
            "resourceType": "Organization",
            "id": "sammlung",
            "identifier": [{"system": "http://www.bbmri-eric.eu/", "value": "DE_MUSTER:collection:blood"}],
            "name": "Mustersammlung",
            "partOf": {"reference": "Organization/biobank-musterstadt"},
        },
        _specimen(
            "primary",
            "PRIMÄRPROBE",
            "122555007",
            "WholeBlood",
            ml=10,
            processing=[rt],
            future=UNKNOWN_EXTENSION,
        ),
        _specimen(
            "plasma-group",
            "ALIQUOTGRUPPE",
            "119361006",
            "Plasma",
            ml=5,
            aliquots=4,
            parent="primary",
            processing=[
                _storage(15, 25, "2018-06-07T16:37:00+01:00", "2018-06-07T17:17:00+01:00", "RT"),
                _storage(-85, -75, "2018-06-07T17:17:00+01:00"),
            ],
        ),
        _specimen(
            "buffy-group",
            "ALIQUOTGRUPPE",
            "258587000",
            "BuffyCoat",
            ml=0.5,
            aliquots=2,
            parent="primary",
            processing=[_storage(-196, -150, "2018-06-07T17:07:00+01:00", miabis="LN")],
        ),
        *(
            _specimen(
                f"buffy-{n}",
                "ALIQUOT",
                "258587000",
                "BuffyCoat",
                ml=0.05,
                parent="buffy-group",
                status=status,
                processing=[_storage(-196, -150, "2018-06-07T17:07:00+01:00", miabis="LN")],
            )
            for n, status in ((1, "available"), (2, buffy_aliquot_2_status))
        ),
    ]


def _hierarchy_counts(store: Store, write_ndjson, resources: list[dict]) -> dict:
    ingest(store, [write_ndjson("hierarchy.ndjson", resources)])
    with store.snapshot() as snapshot:
        return _cells(sample_counts(snapshot))


def test_aliquots_are_declared_until_the_aliquots_themselves_are_stored(store, write_ndjson):
    """Plasma: the group's 4 declared aliquots (none stored), its open storage step gives -60to-85 from
    the Range alone. Buffy coat: the group has its 2 aliquots in the store, so they count (1 each) and
    the group's declared 2 do not; the group's 0.5 ml is the same material as its aliquots' 0.05 ml each,
    counted once (the aliquots'). All of one draw: each category one MIABIS sample."""
    cells = _hierarchy_counts(store, write_ndjson, _hierarchy())
    assert cells == {
        ("sammlung", "whole-blood", "RT"): (1, 1, 1, 0, {"ml": 10.0}),
        ("sammlung", "blood-plasma", "-60to-85"): (1, 1, 1, 4, {"ml": 5.0}),
        ("sammlung", "buffy-coat", "LN"): (1, 1, 3, 2, {"ml": 0.1}),
    }


def test_a_used_aliquot_is_one_aliquot_less(store, write_ndjson):
    cells = _hierarchy_counts(store, write_ndjson, _hierarchy(buffy_aliquot_2_status="unavailable"))
    assert cells[("sammlung", "buffy-coat", "LN")] == (1, 1, 2, 1, {"ml": 0.05})


def test_an_aliquot_group_without_its_aliquots_counts_the_declared_number(store, write_ndjson):
    resources = [r for r in _hierarchy() if r["id"] not in {"buffy-1", "buffy-2"}]
    cells = _hierarchy_counts(store, write_ndjson, resources)
    assert cells[("sammlung", "buffy-coat", "LN")] == (1, 1, 1, 2, {"ml": 0.5})


def test_unknown_extensions_are_kept_in_the_stored_resource(store, write_ndjson):
    _hierarchy_counts(store, write_ndjson, _hierarchy())
    with store.snapshot() as snapshot:
        (text,) = snapshot.connection.execute("SELECT json FROM resource WHERE id = 'primary'").fetchone()
    assert UNKNOWN_EXTENSION in orjson.loads(text)["extension"]


def test_the_storage_history_is_one_row_per_step(store, write_ndjson):
    _hierarchy_counts(store, write_ndjson, _hierarchy())
    with store.snapshot() as snapshot:
        rows = snapshot.connection.execute(
            'SELECT is_storage, temperature_low, temperature_high, temperature_class, "end" IS NULL '
            "FROM specimen_processing WHERE id = 'plasma-group' ORDER BY start"
        ).fetchall()
    assert rows == [(True, 15.0, 25.0, "RT", False), (True, -85.0, -75.0, None, True)]


def test_entered_in_error_and_unavailable_specimens_never_count(store, write_ndjson):
    resources = _hierarchy()
    for resource in resources[2:]:
        resource["status"] = "entered-in-error" if resource["id"] == "primary" else "unavailable"
    assert _hierarchy_counts(store, write_ndjson, resources) == {}


# --- the terminology -----------------------------------------------------------------------------------


def test_every_shipped_sample_type_has_a_known_category():
    codes = {category.code for category in CATEGORIES}
    assert set(sample_types().values()) <= codes
    assert len(sample_types()) > 50


def test_a_miabis_type_is_more_specific_than_the_snomed_one():
    # The IG's tissue example: a lung biopsy (SNOMED) that MIABIS says is fresh frozen.
    assert (
        category_of([(SNOMED, "16214371000119104"), (MIABIS_SAMPLE_TYPE, "TissueFreshFrozen")])
        == "tissue-frozen"
    )
    assert category_of([(SNOMED, "16214371000119104")]) == "tissue-other"
    assert category_of([(SNOMED, "999999999"), ("http://example.org", "x")]) == "Unknown"


@pytest.mark.parametrize(
    ("low", "high", "unit", "miabis", "expected"),
    [
        (15, 25, "Cel", None, "RT"),
        (2, 8, "Cel", None, "2to10"),
        (-30, -20, "Cel", None, "-18to-35"),
        (-85, -75, "Cel", None, "-60to-85"),
        (-196, -150, "Cel", None, "LN"),
        (-85, -75, "Cel", "LN", "LN"),  # the stated MIABIS class wins
        (-40, 4, "Cel", None, "Other"),  # spans two classes
        (-80, -70, "[degF]", None, "Other"),  # not Celsius: no guess
        (None, None, None, None, "Unknown"),
        (None, -80, "Cel", None, "-60to-85"),
    ],
)
def test_storage_temperature_classes(low, high, unit, miabis, expected):
    assert temperature_class(low, high, unit, miabis) == expected


# --- hostile search input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "samples: expected an object"),
        ({"categories": "blood"}, "samples.categories: expected a list of strings"),
        ({"categories": ["blood", "plutonium"]}, "samples.categories[1]: 'plutonium' is not a known sample"),
        (
            {"temperatures": ["-80"]},
            "samples.temperatures[0]: '-80' is not a known storage temperature class",
        ),
        ({"biobanks": ["x' OR 1=1 --"]}, 'samples.biobanks[0]: "x\' OR 1=1 --" is not a known biobank id'),
        ({"diagnoses": ["E11%"]}, "samples.diagnoses[0]: 'E11%' is not a known ICD-10-GM code"),
        ({"diagnoses": [17]}, "samples.diagnoses[0]: 17 is not a known ICD-10-GM code"),
        ({"biobanks": ["b"] * 201}, "samples.biobanks: at most 200 values"),
        ({"sites": ["x"]}, "samples.sites: unknown field"),
    ],
)
def test_a_bad_sample_filter_is_refused_with_its_json_path(body, message):
    with pytest.raises(QueryError) as caught:
        parse_sample_filter(body)
    assert str(caught.value).startswith(message)


def test_the_command_prints_exact_counts_and_refuses_a_bad_filter_without_a_traceback(
    biobank_store, tmp_path
):
    store, _ = biobank_store
    query = tmp_path / "edta.json"
    query.write_text(json.dumps(_specimen_query("445295009")))
    command = [sys.executable, "-m", "datenraum", "samples", "--store", str(store.path)]
    done = subprocess.run(
        [*command, "--query", str(query), "--json"], capture_output=True, text=True, check=True
    )
    printed = json.loads(done.stdout)
    assert (printed["patients"], printed["samples"], printed["specimens"]) == (8, 9, 10)
    bad = tmp_path / "filter.json"
    bad.write_text('{"categories": ["blood", 3]}')
    failed = subprocess.run([*command, "--filter", str(bad)], capture_output=True, text=True)
    assert failed.returncode == 2
    assert (
        failed.stderr == f"error: {bad}: samples.categories[1]: 3 is not a known sample category or group\n"
    )


# --- what leaves the site ------------------------------------------------------------------------------

SECRET = b"site secret of the test"


def test_a_site_with_few_patients_reports_every_figure_below_threshold(biobank_store):
    """9 patients with 20 specimens: under the threshold of 10, nothing of the search leaves the site,
    not even the specimens (20 tubes of 9 patients say as much as the 9)."""
    store, _ = biobank_store
    with store.snapshot() as snapshot:
        released = sample_counts(snapshot).release(SECRET, SamplePolicy())
    figures = [released.patients, released.samples, released.specimens]
    figures += [b.patients for b in released.biobanks]
    figures += [
        getattr(c, name) for c in released.cells for name in ("patients", "samples", "specimens", "aliquots")
    ]
    assert figures and all(figure == SiteCount(None, below_threshold=True) for figure in figures)


def test_many_specimens_of_few_patients_are_withheld_whole():
    released = release_group(
        {"patients": 3, "specimens": 400, "samples": 120}, group_key(["a"]), SECRET, SamplePolicy()
    )
    assert set(released.values()) == {SiteCount(None, below_threshold=True)}


def test_the_same_samples_get_the_same_answer_however_asked(biobank_store):
    """Rephrasing a search (a category group instead of its categories; asking again) returns the same
    noisy figures: nothing to average."""
    store, _ = biobank_store
    policy = SamplePolicy(ObfuscationPolicy(threshold=5))
    with store.snapshot() as snapshot:
        by_group = sample_counts(snapshot, sample_filter=parse_sample_filter({"categories": ["blood"]}))
        listed = sample_counts(
            snapshot,
            sample_filter=parse_sample_filter(
                {"categories": ["blood-serum", "whole-blood", "buffy-coat", "rna"]}
            ),
        )
    assert (
        by_group.release(SECRET, policy) == listed.release(SECRET, policy) == by_group.release(SECRET, policy)
    )


def test_specimen_figures_carry_twenty_times_the_patient_noise():
    """Over many groups (keys), the patients' noise stays within ±5 and the specimens' within ±100, and
    the specimens' spreads far beyond the patients': one patient's 20 tubes are lost in it."""
    policy = SamplePolicy(ObfuscationPolicy(threshold=10, noise=5, rounding=1))
    patient_noise, specimen_noise = [], []
    for n in range(400):
        released = release_group({"patients": 500, "specimens": 5000}, group_key([f"s{n}"]), SECRET, policy)
        patient_noise.append(released["patients"].obfuscated - 500)
        specimen_noise.append(released["specimens"].obfuscated - 5000)
    assert max(map(abs, patient_noise)) <= 5
    assert max(map(abs, specimen_noise)) <= 100
    assert max(specimen_noise) - min(specimen_noise) > 150


def test_searches_differing_by_one_specimen_draw_independent_noise():
    """The differencing attack: two searches whose groups differ by one specimen. Their released
    specimen counts differ by the fresh noise, not by 1, so the difference tells nothing about it."""
    policy = SamplePolicy(ObfuscationPolicy(threshold=10, noise=5, rounding=1))
    ids = [f"s{n}" for n in range(300)]
    differences = set()
    for extra in range(50):
        with_it = release_group(
            {"patients": 100, "specimens": 301}, group_key([*ids, f"x{extra}"]), SECRET, policy
        )
        without = release_group({"patients": 100, "specimens": 300}, group_key(ids), SECRET, policy)
        differences.add(with_it["specimens"].obfuscated - without["specimens"].obfuscated)
    assert len(differences) > 20 and 1 not in {min(differences), max(differences)}


def test_the_released_answer_round_trips_through_json(biobank_store):
    store, _ = biobank_store
    with store.snapshot() as snapshot:
        released = sample_counts(snapshot).release(SECRET, SamplePolicy(ObfuscationPolicy(threshold=5)))
    assert SampleResult.from_json(orjson.loads(orjson.dumps(released.to_json()))) == released
    assert "quantit" not in orjson.dumps(released.to_json()).decode()  # amounts stay at the site


# --- the Sample Locator's MeasureReport ----------------------------------------------------------------


def test_a_sample_locator_measure_report_imports_into_the_site_result():
    path = shared_data_folder("biobank") / "samply-focus" / "measure_report_bbmri.json"
    result = from_measure_report(json.loads(path.read_text()))
    assert result.patients == SiteCount(74) and result.specimens == SiteCount(124)
    assert {c.category: c.specimens for c in result.cells} == {
        "blood-plasma": SiteCount(62),
        "blood-serum": SiteCount(62),
    }
    assert {b.biobank: b.patients for b in result.biobanks} == {
        "bbmri-eric:ID:CZ_CUNI_PILS:collection:serum_plasma": SiteCount(31),
        None: SiteCount(43),
    }
    assert SampleResult.from_json(orjson.loads(orjson.dumps(result.to_json()))) == result


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.update(resourceType="Measure"), "MeasureReport: expected a FHIR MeasureReport"),
        (lambda r: r["group"].pop(0), "MeasureReport.group: no group 'patients'"),
        (
            lambda r: r["group"][0]["population"][0].update(count=-1),
            "MeasureReport.group[0].population[0].count",
        ),
        (
            lambda r: r["group"][2]["stratifier"][0]["stratum"][0]["population"][0].update(count="62"),
            "MeasureReport.group[2].stratifier[0].stratum[0].population[0].count",
        ),
    ],
)
def test_a_broken_measure_report_is_refused_with_its_json_path(mutate, message):
    report = json.loads(
        (shared_data_folder("biobank") / "samply-focus" / "measure_report_bbmri.json").read_text()
    )
    mutate(report)
    with pytest.raises(ProtocolError) as caught:
        from_measure_report(report)
    assert str(caught.value).startswith(message)


def test_a_hostile_site_result_is_refused_with_its_json_path():
    body = {
        "patients": {"obfuscated": 10},
        "biobanks": [],
        "cells": [{"category": "x" * 201, "temperature": "RT"}],
    }
    with pytest.raises(ProtocolError, match=r"samples\.cells\[0\]\.category"):
        SampleResult.from_json(body)
    with pytest.raises(ProtocolError, match=r"samples\.cells"):
        SampleResult.from_json({"patients": {"obfuscated": 10}, "biobanks": [], "cells": [{}] * 5001})


# --- synthetic biobanks ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_biobank(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Store]:
    from datenraum.synth import generate

    root = tmp_path_factory.mktemp("synth-biobanks")
    generate(root / "plain", 400, 7, workers=1)
    generate(root / "biobanks", 400, 7, workers=1, biobanks=True)
    store = Store(root / "store")
    report = ingest(store, [root / "biobanks"])
    assert report.total("rejected") == 0 and report.warned == 0
    return root / "plain", root / "biobanks", store


def test_synthetic_biobanks_change_nothing_but_the_specimens(synthetic_biobank):
    plain, biobanks, _ = synthetic_biobank
    assert {p.name for p in biobanks.iterdir()} == {p.name for p in plain.iterdir()} | {
        "Organization.biobanks.ndjson"
    }
    for path in plain.iterdir():
        if not path.name.startswith("Specimen."):
            assert path.read_bytes() == (biobanks / path.name).read_bytes(), path.name
    primaries = {
        r["id"]: r for r in map(orjson.loads, (biobanks / "Specimen.0000.ndjson").read_bytes().splitlines())
    }
    for line in (plain / "Specimen.0000.ndjson").read_bytes().splitlines():
        drawn = orjson.loads(line)
        kept = primaries[drawn["id"]]
        assert (kept["status"], kept["subject"], kept["collection"]) == (
            drawn["status"],
            drawn["subject"],
            drawn["collection"],
        )
        assert kept["type"]["coding"][0] == drawn["type"]["coding"][0]


def test_synthetic_biobanks_have_collections_aliquots_and_storage_temperatures(synthetic_biobank):
    *_, store = synthetic_biobank
    with store.snapshot() as snapshot:
        counts = sample_counts(snapshot)

        def one(sql: str) -> int:
            return snapshot.connection.execute(sql).fetchone()[0]

        orphans = one(
            "SELECT count(*) FROM specimen s WHERE parent_id IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM specimen p WHERE p.id = s.parent_id)"
        )
        available = "status = 'available' AND type_code"
        declared = one(f"SELECT sum(aliquot_count) FROM specimen WHERE {available} = '119361006'")
        groups = one(
            f"SELECT count(*) FROM specimen WHERE {available} = '258587000' AND level = 'ALIQUOTGRUPPE'"
        )
        stored = one(f"SELECT count(*) FROM specimen WHERE {available} = '258587000' AND level = 'ALIQUOT'")
    cells = {(c.biobank, c.category, c.temperature): c for c in counts.cells}
    liquid, tissue = "s7.0-collection-liquid", "s7.0-collection-tissue"
    assert {biobank for biobank, _, _ in cells} <= {liquid, tissue}
    # Plasma groups declare their aliquots (none stored one by one); buffy coat groups have theirs stored,
    # so those count, one each, and some have been used.
    assert cells[(liquid, "blood-plasma", "-60to-85")].aliquots == declared > 0
    assert cells[(liquid, "buffy-coat", "LN")].aliquots == stored
    assert groups <= stored < 2 * groups
    assert {temperature for _, _, temperature in cells} <= {"RT", "-60to-85", "LN"}
    assert orphans == 0
    assert [b.bbmri_id for b in counts.biobanks] == [
        "DE_S7_0:collection:liquid",
        "DE_S7_0:collection:tissue",
    ][: len(counts.biobanks)]


# --- the directory's listing -----------------------------------------------------------------------------


def test_the_directory_lists_a_biobank_with_what_it_holds_for_enough_patients(biobank_store):
    """The Charité biobank holds samples of 9 patients: whole blood of 9, serum of 8 (see the counts
    derived by hand above); the specimens without a biobank are nobody's listing."""
    store, _ = biobank_store
    with store.snapshot() as snapshot:
        at_nine = biobank_listings(snapshot, ObfuscationPolicy(threshold=9))
        at_ten = biobank_listings(snapshot, ObfuscationPolicy(threshold=10))
    assert [(b.id, b.bbmri_id, b.categories, b.temperatures) for b in at_nine] == [
        (CHARITE, "de-12345", ("whole-blood",), ("Unknown",))
    ]
    assert at_ten == ()
    assert BiobankListing.from_json(at_nine[0].to_json()) == at_nine[0]


def test_a_biobank_listing_from_the_wire_is_checked_field_by_field():
    with pytest.raises(ProtocolError, match=r"metadata.biobanks\[\].name: expected a string"):
        BiobankListing.from_json({"id": "b", "name": 3})
    with pytest.raises(ProtocolError, match="categories and temperatures must be lists"):
        BiobankListing.from_json({"id": "b", "name": "B", "categories": "serum"})
