"""The catalogue's endpoints on a hub started as the demo starts it (`datenraum hub serve` and a
`datenraum site serve` per site, real HTTP): what `curl -H 'Accept: text/turtle' http://HUB/catalog` gets
passes the shared HealthDCAT-AP check, the public series validate, the pages answer, the sites' biobanks
join the directory from their reports, and the office harvests the hub's own catalogue through the
harvest page (the hub fetching from itself)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
from rdflib import Graph
from shared_data import SHARED_DATA

from datenraum.catalogue.validate import Profile, validate
from datenraum.catalogue.vocab import DCAT, DCTERMS, RDF
from datenraum.devtools import demo
from datenraum.devtools.federation import LocalFederation, Researcher

SITES = (
    demo.DemoSite("nord", "Klinikum Nord", 300, 1, 0),
    demo.DemoSite("sued", "Klinikum Süd", 200, 2, 1),
)


def test_the_demo_hubs_catalogue_answers_validates_and_harvests_itself(tmp_path: Path) -> None:
    stores = demo.prepare_sites(tmp_path / "sites", SITES, say=lambda _line: None)
    with LocalFederation(tmp_path / "federation") as fed:
        fed.start_hub()
        secrets = fed.register(
            sites=list(stores),
            users=[(demo.DEMO_USER, "researcher"), (demo.DEMO_ADMIN, "admin")],
            passwords=demo.DEMO_PASSWORDS,
        )
        demo.list_in_directory(fed.hub_env["DATENRAUM_HUB_DATABASE_URL"], list(SITES))
        for name, store in stores.items():
            fed.start_agent(name, store, secrets[name])
        researcher = Researcher(fed.url, secrets[demo.DEMO_USER].read_text().strip())
        researcher.wait_for_sites(list(stores))
        researcher.close()
        with httpx.Client(base_url=fed.url, timeout=60) as curl:
            assert _biobank_sites(curl) == {s.key for s in SITES}
            catalog = curl.get("/catalog", headers={"Accept": "text/turtle"})
            assert catalog.status_code == 200 and catalog.headers["content-type"].startswith("text/turtle")
            turtle = tmp_path / "catalog.ttl"
            turtle.write_bytes(catalog.content)
            check = subprocess.run(
                [
                    sys.executable,
                    SHARED_DATA / "catalogue" / "check_healthdcat.py",
                    turtle,
                    SHARED_DATA / "catalogue" / "background-minimal.ttl",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            assert check.stdout.startswith("conforms True") and "Violation" not in check.stdout, check.stdout
            graph = Graph().parse(data=catalog.text, format="turtle")
            titles = {str(graph.value(d, DCTERMS.title)) for d in graph.subjects(RDF.type, DCAT.Dataset)}
            assert {f"Routine-care data of {s.name} (MII core data set, FHIR)" for s in SITES} <= titles
            assert len(set(graph.subjects(RDF.type, DCAT.DataService))) == 2  # feasibility, dashboard

            public = Graph().parse(data=curl.get("/catalog/public.ttl").text, format="turtle")
            assert len(set(public.subjects(RDF.type, DCAT.Dataset))) > 30
            assert validate(public, Profile.PUBLIC).conforms
            for path in ("/catalog.jsonld", "/catalog.rdf", "/catalog/validation", "/catalogue"):
                assert curl.get(path).status_code == 200, path
            page = curl.get("/catalogue/harvest")
            assert page.status_code == 200 and 'rel="alternate" type="text/turtle"' in page.text
            assert "harvest-form" not in page.text  # the form is the office's

            # The office signs in and harvests our own catalogue, two datasets a page.
            curl.get("/login")
            signed_in = curl.post(
                "/login",
                data={
                    "email": demo.DEMO_ADMIN,
                    "password": demo.DEMO_PASSWORDS[demo.DEMO_ADMIN],
                    "csrf": curl.cookies["dr_csrf"],
                },
            )
            assert signed_in.status_code == 303
            source = f"{fed.url}/catalog.ttl?page_size=2"
            done = curl.post(
                "/catalogue/harvest",
                data={"url": source, "title": "Our own", "csrf": curl.cookies["dr_csrf"]},
            )
            assert done.status_code == 200 and 'id="harvest-done"' in done.text, done.text[-2000:]
            assert "Our own" in done.text and source in done.text
            served = curl.get("/catalog/harvested/1.ttl")
            assert served.status_code == 200, served.text[-3000:]
            harvested = Graph().parse(data=served.text, format="turtle")
            assert len(set(harvested.subjects(RDF.type, DCAT.Dataset))) >= len(SITES)
            # A catalogue that is not there: the page says why, with the address kept in the form.
            failed = curl.post(
                "/catalogue/harvest",
                data={"url": f"{fed.url}/no-such-catalogue.ttl", "csrf": curl.cookies["dr_csrf"]},
            )
            assert failed.status_code == 200 and 'id="form-error"' in failed.text
            assert "no-such-catalogue" in failed.text


def _biobank_sites(curl: httpx.Client, timeout: float = 60.0) -> set[str]:
    """The sites with a biobank in the directory, once every site's report has listed one (or at the
    timeout: what is listed then)."""
    deadline = time.monotonic() + timeout
    while True:
        directory = curl.get("/api/v1/directory").json()
        biobanks = {entry["slug"] for entry in directory["entries"] if entry["kind"] == "biobank"}
        listing = {
            site["slug"]
            for site in directory["sites"]
            if any(p["entry"] in biobanks for p in site["participations"])
        }
        if listing >= {s.key for s in SITES} or time.monotonic() > deadline:
            return listing
        time.sleep(0.1)
