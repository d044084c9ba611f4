"""The catalogue as the hub serves it: site-metadata tasks, `/catalog` by suffix and Accept, Hydra
paging, dataset documents, the validation summary, the page; and the shared check script on the Turtle.

SQLite only (the catalogue's SQL is a handful of plain reads and writes that the service tests of the
other contexts exercise on both databases); SHACL runs once per module where it can.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from rdflib import Graph, URIRef
from rdflib.compare import isomorphic
from shared_data import SHARED_DATA

from datenraum.catalogue.validate import Profile, validate
from datenraum.catalogue.vocab import DCAT, DCTERMS, HEALTH, HYDRA, RDF
from datenraum.hub.db import SiteRow
from datenraum.protocol.messages import SiteCount, SiteMetadata, TableDescription, TaskResult, TaskState

from .helpers import SITE_API, HubFixture, bearer, serving

pytestmark = pytest.mark.anyio

METADATA = SiteMetadata(
    generation=4,
    patients=SiteCount(4000),
    records=SiteCount(120_000),
    min_age=5,
    max_age=90,
    first_year=2016,
    last_year=2025,
    coding_systems=("http://loinc.org", "http://fhir.de/CodeSystem/bfarm/icd-10-gm"),
    tables=(TableDescription("patient", "One row per patient.", (("id", "string", "FHIR Patient: id"),)),),
)


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    import shutil

    path = tmp_path / "hub.db"
    shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
    return f"sqlite:///{path}"


async def _report(client, credential: str, metadata: SiteMetadata = METADATA) -> str:
    tasks = (await client.get(f"{SITE_API}/metadata-tasks", headers=bearer(credential))).json()["tasks"]
    assert [task["type"] for task in tasks] == ["site-metadata"]
    task_id = tasks[0]["id"]
    body = TaskResult(task_id, TaskState.ANSWERED, metadata=metadata).to_json()
    response = await client.post(
        f"{SITE_API}/metadata-tasks/{task_id}/result", json=body, headers=bearer(credential)
    )
    assert response.status_code == 200, response.text
    return task_id


async def test_sites_report_their_figures_when_due(hub: HubFixture) -> None:
    credential = hub.sites("uk-a")["uk-a"]
    async with serving(hub.app()) as client:
        task_id = await _report(client, credential)
        headers = bearer(credential)
        # the same answer again is a no-op; now nothing is due until tomorrow or a new load
        again = TaskResult(task_id, TaskState.ANSWERED, metadata=METADATA).to_json()
        response = await client.post(
            f"{SITE_API}/metadata-tasks/{task_id}/result", json=again, headers=headers
        )
        assert response.json() == {"state": "recorded before"}
        assert (await client.get(f"{SITE_API}/metadata-tasks", headers=headers)).json() == {"tasks": []}
        await client.post(f"{SITE_API}/heartbeat", json={"version": "1", "generation": 5}, headers=headers)
        assert len((await client.get(f"{SITE_API}/metadata-tasks", headers=headers)).json()["tasks"]) == 1
        hub.clock.advance(3600)
        # a feasibility task cannot be answered with metadata
        response = await client.post(f"{SITE_API}/tasks/{task_id}/result", json=again, headers=headers)
        assert response.status_code in (404, 422)
        turtle = (await client.get("/catalog", headers={"Accept": "text/turtle"})).text
    graph = Graph().parse(data=turtle, format="turtle")
    dataset = next(iter(graph.subjects(HEALTH.healthCategory, None)))
    assert str(dataset).endswith("/catalog/datasets/site-uk-a")
    assert int(graph.value(dataset, HEALTH.numberOfUniqueIndividuals)) == 4000
    assert int(graph.value(dataset, HEALTH.minTypicalAge)) == 5


async def test_a_site_cannot_answer_another_sites_task(hub: HubFixture) -> None:
    credentials = hub.sites("uk-a", "uk-b")
    async with serving(hub.app()) as client:
        tasks = (await client.get(f"{SITE_API}/metadata-tasks", headers=bearer(credentials["uk-a"]))).json()
        task_id = tasks["tasks"][0]["id"]
        body = TaskResult(task_id, TaskState.ANSWERED, metadata=METADATA).to_json()
        other = bearer(credentials["uk-b"])
        response = await client.post(f"{SITE_API}/metadata-tasks/{task_id}/result", json=body, headers=other)
        assert response.status_code == 404


def _without_paging(graph: Graph) -> Graph:
    kept = Graph()
    for subject, predicate, value in graph:
        if not str(predicate).startswith(str(HYDRA)) and value != HYDRA.PagedCollection:
            kept.add((subject, predicate, value))
    return kept


async def test_the_catalog_by_suffix_and_accept_is_the_same_graph(hub: HubFixture) -> None:
    credential = hub.sites("uk-a")["uk-a"]
    async with serving(hub.app()) as client:
        await _report(client, credential)
        graphs = {}
        for suffix, media, parser in (
            ("ttl", "text/turtle", "turtle"),
            ("jsonld", "application/ld+json", "json-ld"),
            ("rdf", "application/rdf+xml", "xml"),
        ):
            by_suffix = await client.get(f"/catalog.{suffix}")
            by_accept = await client.get("/catalog", headers={"Accept": media})
            assert by_suffix.headers["content-type"].startswith(media)
            assert by_accept.headers["content-type"].startswith(media)
            graphs[suffix] = Graph().parse(data=by_suffix.content, format=parser)
            assert isomorphic(
                _without_paging(graphs[suffix]),
                _without_paging(Graph().parse(data=by_accept.content, format=parser)),
            )
        browser = await client.get("/catalog", headers={"Accept": "text/html,*/*;q=0.8"})
        assert browser.status_code == 303 and browser.headers["location"] == "/catalogue"
        assert (await client.get("/catalog.csv")).status_code == 404
        document = await client.get("/catalog/datasets/site-uk-a.jsonld")
        assert document.status_code == 200
        assert (await client.get("/catalog/datasets/site-nowhere.ttl")).status_code == 404
        page = await client.get("/catalogue")
        assert page.status_code == 200
        assert '<link rel="alternate" type="text/turtle" href="/catalog.ttl">' in page.text
        assert "site-uk-a" in page.text
        detail = await client.get("/catalogue/datasets/site-uk-a")
        assert 'href="/proposals/new"' in detail.text and 'href="/queries/new"' in detail.text
        assert "4000" in detail.text
    # the documents differ only in their Hydra page IRIs, which name the suffix
    ttl, jsonld, rdf = (_without_paging(graphs[suffix]) for suffix in ("ttl", "jsonld", "rdf"))
    assert isomorphic(ttl, jsonld) and isomorphic(ttl, rdf)


async def test_paging_250_sites_with_hydra(hub: HubFixture) -> None:
    with hub.sessions.begin() as session:
        for number in range(250):
            session.add(
                SiteRow(
                    name=f"uk-{number:03d}",
                    credential_hash=f"{number:064d}",
                    created=hub.clock(),
                    active=True,
                )
            )
    async with serving(hub.app()) as client:
        first = Graph().parse(data=(await client.get("/catalog.ttl?page_size=100")).text, format="turtle")
        last = Graph().parse(
            data=(await client.get("/catalog.ttl?page_size=100&page=3")).text, format="turtle"
        )
        assert (await client.get("/catalog.ttl?page_size=101")).status_code == 422
        found = Graph().parse(data=(await client.get("/catalog.ttl?q=uk-042")).text, format="turtle")
    page = next(iter(first.subjects(HYDRA.totalItems, None)))
    assert int(first.value(page, HYDRA.totalItems)) == 250
    assert str(first.value(page, HYDRA.next)).endswith("/catalog.ttl?page_size=100&page=2")
    assert str(first.value(page, HYDRA.last)).endswith("page=3")
    assert len(list(first.objects(None, DCAT.dataset))) == 100
    assert len(list(last.objects(None, DCAT.dataset))) == 50
    assert last.value(next(iter(last.subjects(HYDRA.totalItems, None))), HYDRA.next) is None
    assert [str(o).rsplit("/", 1)[1] for o in found.objects(None, DCAT.dataset)] == ["site-uk-042"]


async def test_the_served_turtle_passes_the_shared_check_and_the_validation_page(
    hub: HubFixture, tmp_path: Path
) -> None:
    credential = hub.sites("uk-a", "uk-b")["uk-a"]
    app = hub.app()
    async with serving(app) as client:
        await _report(client, credential)
        turtle = (await client.get("/catalog", headers={"Accept": "text/turtle"})).content
        summary = (await client.get("/catalog/validation")).json()
    data = tmp_path / "catalog.ttl"
    data.write_bytes(turtle)
    script = SHARED_DATA / "catalogue" / "check_healthdcat.py"
    background = SHARED_DATA / "catalogue" / "background-minimal.ttl"
    run = subprocess.run(
        [sys.executable, script, data, background], capture_output=True, text=True, check=True
    )
    assert run.stdout.startswith("conforms True") and "Violation" not in run.stdout, run.stdout
    # The sites' datasets against HealthDCAT-AP R8, the dashboard's public series against DCAT-AP 3.0.1.
    assert [report["profile"] for report in summary["reports"]] == ["non-public", "public"]
    assert all(report["violations"] == 0 and report["conforms"] for report in summary["reports"]), summary


async def test_the_dashboards_public_series_are_public_datasets_with_a_table_schema(
    hub: HubFixture, tmp_path: Path
) -> None:
    hub.sites("uk-a")
    async with serving(hub.app()) as client:
        public = Graph().parse(
            data=(await client.get("/catalog/public", headers={"Accept": "text/turtle"})).text,
            format="turtle",
        )
        schema = (await client.get("/api/v1/dashboard/schema.json")).json()
        listed = (await client.get("/api/v1/dashboard")).json()
        series = [s for d in listed["diseases"] for s in d["series"]]
        datasets = set(public.subjects(RDF.type, DCAT.Dataset))
        assert len(datasets) == len(series) > 30
        base = hub.config.public_url.rstrip("/")
        for dataset in datasets:
            assert public.value(dataset, DCTERMS.accessRights).endswith("/PUBLIC")
            distributions = list(public.objects(dataset, DCAT.distribution))
            urls = {str(public.value(d, DCAT.downloadURL)) for d in distributions}
            assert {url.rsplit(".", 1)[1] for url in urls} == {"csv", "json"}
            assert {public.value(d, DCTERMS.conformsTo) for d in distributions} == {
                URIRef(f"{base}/api/v1/dashboard/schema.json")
            }
        # Every distribution answers, and the CSV's header is the schema's fields, in order.
        first = next(iter(datasets))
        for distribution in public.objects(first, DCAT.distribution):
            path = str(public.value(distribution, DCAT.downloadURL)).removeprefix(base)
            response = await client.get(path)
            assert response.status_code == 200, path
            if path.endswith(".csv"):
                header = response.text.splitlines()[0].split(",")
                assert header == [field["name"] for field in schema["fields"]]
    # The public catalogue against the DCAT-AP 3.0.1 shapes (check C-2).
    report = validate(public, Profile.PUBLIC, hub.clock())
    assert report.conforms and not report.violations, report.summary()


async def test_figures_below_threshold_are_not_in_the_catalogue(hub: HubFixture) -> None:
    credential = hub.sites("uk-klein")["uk-klein"]
    small = SiteMetadata(generation=1, patients=SiteCount(None, True), records=SiteCount(30))
    async with serving(hub.app()) as client:
        await _report(client, credential, small)
        turtle = (await client.get("/catalog/datasets/site-uk-klein.ttl")).text
    graph = Graph().parse(data=turtle, format="turtle")
    assert not list(graph.objects(None, HEALTH.numberOfUniqueIndividuals))
    assert [int(o) for o in graph.objects(None, HEALTH.numberOfRecords)] == [30]
    with hub.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM catalogue_site_reports")).scalar_one() == 1
