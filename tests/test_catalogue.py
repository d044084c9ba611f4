"""The FAIR catalogue's acceptance checks C-1 to C-6 (brief dashboard-catalogue.md, E4), on the library.

SHACL validation takes a second or so: each graph is validated once per module (fixtures), and the
negative tests validate one small dataset graph each.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rdflib import Graph, Literal, URIRef
from rdflib.compare import isomorphic
from shared_data import SHARED_DATA

from datenraum.catalogue import build, paging
from datenraum.catalogue.harvest import harvest
from datenraum.catalogue.model import (
    Access,
    Agent,
    Column,
    Kind,
    Network,
    PublicSeries,
    SiteData,
    Study,
    Table,
)
from datenraum.catalogue.serialise import FORMATS, JSONLD, RDFXML, TURTLE, negotiate, serialise
from datenraum.catalogue.validate import Profile, validate
from datenraum.catalogue.vocab import DATA_THEME, DCAT, DCTERMS, HEALTH, HYDRA
from datenraum.privacy.counts import ObfuscationPolicy
from datenraum.privacy.metadata import coverage_years, disclosed_count, typical_ages
from datenraum.site.ingest import ingest
from datenraum.site.metadata import site_metadata, table_descriptions
from datenraum.site.store import Store

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
WARNINGS = Path(__file__).parent / "fixtures" / "catalogue_known_warnings.txt"
R8_EXAMPLE = SHARED_DATA / "catalogue" / "healthdcat-ap-r8" / "examples" / "example-healthdcat-dataset.ttl"
OFFICE = Agent(
    "use-and-access-office", "Use & Access office", "uac@datenraum.example", "http://hub/proposals"
)
NETWORK = Network("http://hub", "Datenraum catalogue", "The network's metadata", OFFICE, OFFICE, NOW)
TABLES = tuple(
    Table(t.name, t.description, tuple(Column(*column) for column in t.columns)) for t in table_descriptions()
)


def _site(key: str, reported: bool = True) -> SiteData:
    custodian = Agent(f"dic-{key}", f"DIZ {key}", f"diz@{key}.example")
    if not reported:
        return SiteData(key, f"Uniklinikum {key}", "Kiel", custodian)
    systems = (
        "http://loinc.org",
        "http://fhir.de/CodeSystem/bfarm/icd-10-gm",
        "http://fhir.de/CodeSystem/bfarm/ops",
    )
    return SiteData(
        key, f"Uniklinikum {key}", None, custodian, NOW, 3, 4000, 120_000, 5, 90, 2015, 2025, systems, TABLES
    )


SITES = [_site("uk-nord"), _site("uk-sued", reported=False)]
STUDIES = [
    Study(
        "mii",
        Kind.INFRASTRUCTURE,
        "MII",
        "Medizininformatik-Initiative",
        "Data integration centres",
        ("Nord",),
    ),
    Study("nub", Kind.PROJECT, "NUB", "Nationale Biobanken", "A biobank project"),
]
SERIES = [
    PublicSeries(
        "covid19-new-inpatients",
        "COVID-19: new inpatient cases",
        "Daily new inpatient cases, pooled over the sites.",
        "http://hub/dashboard/covid19/new.csv",
        "http://hub/dashboard/covid19/new.json",
        "http://hub/dashboard/covid19/new.schema.json",
        dt.date(2026, 11, 30),
    )
]
RECORDS = build.records(NETWORK, SITES, STUDIES, SERIES)
NON_PUBLIC = [r for r in RECORDS if r.access == Access.NON_PUBLIC]
PUBLIC = [r for r in RECORDS if r.access == Access.PUBLIC]


@pytest.fixture(scope="module")
def catalog() -> Graph:
    parts = [("http://hub/catalog/public", "Public series")]
    return build.catalog_graph(NETWORK, NON_PUBLIC, served=NON_PUBLIC, parts=parts)


@pytest.fixture(scope="module")
def non_public_report(catalog: Graph):
    return validate(catalog, Profile.NON_PUBLIC)


def _normalised(message: str) -> str:
    """A result message without the IRIs of our nodes, so that the snapshot names kinds of warnings."""
    return re.sub(r"<http://hub/[^>]*>", "<ours>", message)


# -- C-1


def test_c1_catalog_site_datasets_and_services_have_no_violations(non_public_report, catalog) -> None:
    assert non_public_report.violations == []
    focus = {result.focus for result in non_public_report.results}
    # every kind of node was checked: the shapes' targets are all there
    assert (None, None, DCAT.DataService) in catalog or any(catalog.subjects(None, DCAT.DataService))
    assert len(list(catalog.subjects(predicate=None, object=DCAT.Dataset))) == len(NON_PUBLIC)
    assert focus  # recommended-property warnings are reported


def test_c1_no_new_warnings(non_public_report) -> None:
    known = set(WARNINGS.read_text(encoding="utf-8").splitlines())
    found = {f"{r.path} | {_normalised(r.message)}" for r in non_public_report.warnings}
    assert found <= known, "new warnings (add to known_warnings.txt if intended):\n" + "\n".join(
        sorted(found - known)
    )


def test_c1_check_healthdcat_script_passes_on_the_turtle(catalog: Graph, tmp_path: Path) -> None:
    """The shared script itself, as the issue's "done when" runs it (on the Turtle we serve)."""
    import subprocess
    import sys

    data = tmp_path / "catalog.ttl"
    data.write_bytes(serialise(catalog, TURTLE))
    script = SHARED_DATA / "catalogue" / "check_healthdcat.py"
    background = SHARED_DATA / "catalogue" / "background-minimal.ttl"
    run = subprocess.run(
        [sys.executable, script, data, background], capture_output=True, text=True, check=True
    )
    assert run.stdout.startswith("conforms True"), run.stdout
    assert "Violation" not in run.stdout


# -- C-2


def test_c2_public_series_conform_to_dcat_ap_301() -> None:
    graph = build.new_graph()
    for record in PUBLIC:
        build.dataset_graph(NETWORK, record, graph)
    report = validate(graph, Profile.PUBLIC)
    assert report.violations == []
    distributions = list(graph.objects(build.dataset_iri(NETWORK, PUBLIC[0].id), DCAT.distribution))
    assert len(distributions) == 2  # CSV and JSON, each with its Frictionless schema
    assert all(graph.value(d, DCTERMS.conformsTo) == URIRef(SERIES[0].schema_url) for d in distributions)


# -- C-3


def test_c3_the_three_serialisations_are_isomorphic(catalog: Graph) -> None:
    graphs = [
        Graph().parse(data=serialise(catalog, fmt), format=fmt.rdflib.replace("pretty-", ""))
        for fmt in FORMATS
    ]
    for graph in graphs:
        assert isomorphic(graph, catalog)


def test_content_negotiation() -> None:
    assert negotiate(None) is TURTLE
    assert negotiate("application/ld+json") is JSONLD
    assert negotiate("text/html,application/xhtml+xml,*/*;q=0.8") is None
    assert negotiate("application/rdf+xml;q=0.5, text/turtle;q=0.9") is TURTLE
    assert negotiate("application/rdf+xml") is RDFXML
    assert negotiate("*/*") is TURTLE


# -- C-4


def _site_graph() -> Graph:
    record = next(r for r in RECORDS if r.kind == Kind.SITE and r.site == "uk-nord")
    return build.dataset_graph(NETWORK, record)


def _without(predicate: URIRef, value: object = None) -> Graph:
    graph = _site_graph()
    node = build.dataset_iri(NETWORK, "site-uk-nord")
    graph.remove((node, predicate, value))
    return graph


def _violations(graph: Graph) -> list[str]:
    return sorted(_normalised(r.message) for r in validate(graph, Profile.NON_PUBLIC).violations)


def _replaced(predicate: URIRef, value: URIRef) -> Graph:
    graph = _without(predicate)
    graph.add((build.dataset_iri(NETWORK, "site-uk-nord"), predicate, value))
    return graph


NOT_A_CONCEPT = "Value does not have class skos:Concept"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda: _without(HEALTH.hdab), ["Each dcat:Dataset must have exactly one healthdcatap:hdab"]),
        (lambda: _without(DCTERMS.provenance), ["Each dcat:Dataset must have at least one dct:provenance."]),
        (lambda: _without(DCAT.keyword), ["Each dcat:Dataset must have at least one dcat:keyword."]),
        (
            lambda: _replaced(DCAT.theme, DATA_THEME.SOCI),
            [
                "A non-EU managed concept is used to indicate the dataset theme.",
                "Dataset must include theme http://publications.europa.eu/resource/authority/data-theme/HEAL.",
                NOT_A_CONCEPT,
            ],
        ),
        (
            lambda: _replaced(HEALTH.healthCategory, URIRef("https://example.org/categories/EHR")),
            ["A non-EU managed concept is used to indicate the health category.", NOT_A_CONCEPT],
        ),
    ],
    ids=["hdab", "provenance", "keyword", "HEAL theme", "health category not in the NAL"],
)
def test_c4_dropping_a_required_property_gives_exactly_its_violation(change, expected) -> None:
    found = _violations(change())
    assert len(found) == len(expected), found
    for message, start in zip(found, sorted(expected), strict=True):
        assert message.startswith(start), found


def test_the_unchanged_site_dataset_has_no_violations() -> None:
    assert _violations(_site_graph()) == []


# -- C-5


def _many(n: int):
    sites = [_site(f"uk-{i:03d}", reported=False) for i in range(n)]
    return build.records(NETWORK, sites, [], [])


def test_c5_paging_of_250_datasets() -> None:
    records = _many(250)
    pages = [paging.select(records, page=number, page_size=100) for number in (1, 2, 3)]
    assert [len(page.records) for page in pages] == [100, 100, 50]
    assert len({r.id for page in pages for r in page.records}) == 250
    graph = Graph()
    node = paging.describe(graph, pages[0], "http://hub/catalog", {"page_size": "100"})
    assert int(graph.value(node, HYDRA.totalItems)) == 250
    assert str(graph.value(node, HYDRA.next)) == "http://hub/catalog?page_size=100&page=2"
    assert str(graph.value(node, HYDRA.last)) == "http://hub/catalog?page_size=100&page=3"
    last = Graph()
    node = paging.describe(last, pages[2], "http://hub/catalog", {"page_size": "100"})
    assert last.value(node, HYDRA.next) is None
    with pytest.raises(ValueError):
        paging.select(records, page_size=101)


def test_c5_modified_since_and_q_filter() -> None:
    old = _site("uk-alt")
    new = SiteData(**{**vars(_site("uk-neu")), "reported": NOW + dt.timedelta(days=2)})
    records = build.records(NETWORK, [old, new], [], [])
    since = paging.select(records, modified_since=NOW + dt.timedelta(days=1))
    assert [r.site for r in since.records] == ["uk-neu"]
    assert [r.site for r in paging.select(records, q="uniklinikum uk-alt").records] == ["uk-alt"]


def _served_pages(records, page_size: int = 100) -> dict[str, tuple[str, bytes]]:
    """Our catalog's pages as a server would answer them, by URL."""
    pages = {}
    last = paging.select(records, page_size=page_size).last
    for number in range(1, last + 1):
        chosen = paging.select(records, page=number, page_size=page_size)
        graph = build.catalog_graph(NETWORK, chosen.records)
        paging.describe(graph, chosen, "http://hub/catalog", {"page_size": str(page_size)})
        url = f"http://hub/catalog?page_size={page_size}&page={number}"
        pages[url] = ("text/turtle; charset=utf-8", serialise(graph, TURTLE))
    return pages


def test_c5_our_harvester_imports_our_own_catalogue() -> None:
    records = _many(250)
    pages = _served_pages(records)
    fetched = []

    def fetch(url: str, max_bytes: int) -> tuple[str, bytes]:
        fetched.append(url)
        return pages[url]

    result = harvest("http://hub/catalog?page_size=100&page=1", fetch)
    assert len(fetched) == 3 and result.stopped == "no next page"
    assert len(result.datasets) == 250
    assert not list(result.graph.subjects(None, HYDRA.PagedCollection))


def test_c5_a_self_referencing_next_does_not_loop() -> None:
    graph = build.catalog_graph(NETWORK, NON_PUBLIC[:1])
    url = "http://partner.example/catalog.ttl"
    graph.add((URIRef(url), HYDRA.next, URIRef(url)))
    graph.add((URIRef(url), build.RDF.type, HYDRA.PagedCollection))
    body = serialise(graph, TURTLE)
    calls = []

    def fetch(page: str, max_bytes: int) -> tuple[str, bytes]:
        calls.append(page)
        return "text/turtle", body

    result = harvest(url, fetch)
    assert calls == [url]
    assert "read already" in result.stopped
    assert len(result.datasets) == 1


def test_c5_a_response_over_the_size_limit_is_refused() -> None:
    from datenraum.catalogue.harvest import HarvestError

    with pytest.raises(HarvestError, match="limit"):
        harvest("http://x/c.ttl", lambda url, limit: ("text/turtle", b"#" * (limit + 1)), max_bytes=10)


def test_c5_the_r8_example_round_trips_through_harvester_and_serialiser() -> None:
    body = R8_EXAMPLE.read_bytes()
    harvested = harvest("http://partner.example/r8.ttl", lambda url, limit: ("text/turtle", body))
    again = Graph().parse(data=serialise(harvested.graph, JSONLD), format="json-ld")
    assert isomorphic(again, Graph().parse(data=body, format="turtle"))
    assert validate(again, Profile.NON_PUBLIC).violations == []


# -- C-6


def _patient(i: int, year: int) -> list[dict]:
    return [
        {"resourceType": "Patient", "id": f"p{i}", "gender": "female", "birthDate": f"{1940 + i % 60}-05-01"},
        {
            "resourceType": "Encounter",
            "id": f"e{i}",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": f"Patient/p{i}"},
            "period": {"start": f"{year}-03-01T10:00:00Z", "end": f"{year}-03-05T10:00:00Z"},
        },
    ]


@pytest.mark.parametrize("patients", [7, 37])
def test_c6_number_of_unique_individuals_is_the_store_count_rounded(
    patients: int, store: Store, write_ndjson
) -> None:
    policy = ObfuscationPolicy()
    resources = [r for i in range(patients) for r in _patient(i, 2019 if i < 3 else 2021)]
    ingest(store, [write_ndjson("site.ndjson", resources)])
    with store.snapshot() as snapshot:
        metadata = site_metadata(snapshot, policy, dt.date(2026, 12, 1))
    assert metadata.patients == disclosed_count(patients, policy)
    if patients < policy.threshold:
        assert metadata.patients.below_threshold and metadata.min_age is None and metadata.first_year is None
    else:
        assert metadata.patients.obfuscated == 40
        # 2019 had 3 patients' encounters: below the threshold, not named as the start of the coverage
        assert (metadata.first_year, metadata.last_year) == (2021, 2021)
        assert metadata.min_age % 5 == 0 and metadata.max_age % 5 == 0
    assert {t.name for t in metadata.tables} >= {"patient", "encounter", "condition"}


def test_c6_a_figure_below_threshold_is_left_out_of_the_graph() -> None:
    site = SiteData(**{**vars(_site("uk-klein")), "patients": None, "records": 120})
    record = build.records(NETWORK, [site], [], [])[0]
    graph = build.dataset_graph(NETWORK, record)
    node = build.dataset_iri(NETWORK, record.id)
    assert graph.value(node, HEALTH.numberOfUniqueIndividuals) is None
    assert graph.value(node, HEALTH.numberOfRecords) == Literal("120", datatype=build.XSD.nonNegativeInteger)


@given(st.integers(min_value=0, max_value=10**7), st.integers(1, 20), st.integers(1, 20))
def test_c6_no_disclosed_figure_is_below_the_threshold(exact: int, threshold: int, rounding: int) -> None:
    policy = ObfuscationPolicy(threshold=threshold, rounding=rounding)
    count = disclosed_count(exact, policy)
    if exact < threshold:
        assert count.below_threshold
    else:
        assert count.obfuscated % rounding == 0 and count.obfuscated >= rounding
        assert abs(count.obfuscated - exact) <= max(rounding // 2, rounding - exact)


def test_c6_typical_ages_and_coverage_need_enough_patients() -> None:
    policy = ObfuscationPolicy()
    assert typical_ages([30] * 9, policy) is None
    assert typical_ages(list(range(20, 90)), policy) == (20, 90)
    assert coverage_years({2018: 9, 2019: 10, 2024: 12, 2025: 3}, policy) == (2019, 2024)
