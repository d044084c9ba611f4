"""The network directory: the seed of German university hospitals, search, the public JSON form, and
changes by the coordination office only."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from datenraum.hub.directory.service import (
    DEFAULT_CONTACT,
    SEED,
    Directory,
    Entry,
    EntryKind,
    NotAdministrator,
    Participation,
    SeedLoaded,
    Site,
    load_seed,
)
from datenraum.hub.errors import Invalid, NotFound
from datenraum.hub.roles import Actor

from .helpers import HubFixture

OFFICE = Actor(1, frozenset({"admin"}))
RESEARCHER = Actor(2, frozenset({"researcher"}))
CONSORTIA = {"DIFUTURE", "HiGHmed", "MIRACUM", "SMITH"}

# Every location of university medicine in Germany that the seed must list, by city.
UNIVERSITY_MEDICINE_CITIES = {
    "Aachen", "Augsburg", "Berlin", "Bochum", "Bonn", "Dresden", "Düsseldorf", "Erlangen", "Essen",
    "Frankfurt am Main", "Freiburg im Breisgau", "Gießen", "Göttingen", "Greifswald", "Halle (Saale)",
    "Hamburg", "Hannover", "Heidelberg", "Homburg", "Jena", "Kiel", "Köln", "Leipzig", "Lübeck", "Magdeburg",
    "Mainz", "Mannheim", "Marburg", "München", "Münster", "Oldenburg", "Regensburg", "Rostock", "Tübingen",
    "Ulm", "Würzburg",
}  # fmt: skip


@pytest.fixture
def directory(hub: HubFixture) -> Directory:
    return Directory(hub.sessions)


@pytest.fixture
def seeded(hub: HubFixture, directory: Directory) -> Directory:
    load_seed(hub.sessions)
    return directory


def test_the_seed_lists_every_university_hospital_location(seeded: Directory) -> None:
    sites = seeded.sites()
    assert {site.city for site in sites} == UNIVERSITY_MEDICINE_CITIES
    assert len(sites) == 37  # München has two: LMU Klinikum and TUM Klinikum
    assert [site.name for site in sites if site.city == "München"] == [
        "LMU Klinikum",
        "TUM Klinikum Rechts der Isar",
    ]


def test_every_seeded_contact_is_a_role_placeholder_not_a_person(seeded: Directory) -> None:
    assert {site.contact for site in seeded.sites()} == {DEFAULT_CONTACT}


def test_a_seeded_consortium_is_one_of_the_four_and_matches_the_participations(seeded: Directory) -> None:
    for site in seeded.sites():
        _, taking_part = seeded.site(site.slug)
        consortia = {entry.acronym for entry, _ in taking_part if entry.acronym in CONSORTIA}
        assert consortia == ({site.consortium} if site.consortium else set()), site.slug
        assert ("MII" in {entry.acronym for entry, _ in taking_part}) == (site.consortium is not None)


def test_the_seed_has_the_infrastructures_and_projects_of_the_network(seeded: Directory) -> None:
    infrastructures = {entry.acronym for entry in seeded.entries(EntryKind.INFRASTRUCTURE)}
    projects = {entry.acronym for entry in seeded.entries(EntryKind.PROJECT)}
    assert infrastructures == {"MII", "NUM", "FDPG", "GBN", "GBA"}
    assert projects == CONSORTIA | {"NAPKON"}


def test_loading_the_seed_twice_changes_nothing(hub: HubFixture, seeded: Directory) -> None:
    before = seeded.to_json()
    assert load_seed(hub.sessions) == SeedLoaded(0, 0, 0)
    assert seeded.to_json() == before


def test_loading_the_seed_keeps_what_the_office_changed_and_adds_what_is_missing(
    hub: HubFixture, seeded: Directory
) -> None:
    jena = next(site for site in seeded.sites("jena"))
    seeded.save_site(OFFICE, Site(**{**vars(jena), "contact": "diz@uniklinikum-jena.example"}))
    seeded.delete_site(OFFICE, "uk-ulm")
    loaded = load_seed(hub.sessions)
    assert loaded == SeedLoaded(sites=1, entries=0, participations=2)  # Ulm, in DIFUTURE and MII
    assert seeded.site("uk-jena")[0].contact == "diz@uniklinikum-jena.example"


def test_the_first_load_reports_what_it_added(hub: HubFixture) -> None:
    seed = json.loads(SEED.read_text(encoding="utf-8"))
    assert load_seed(hub.sessions) == SeedLoaded(
        len(seed["sites"]), len(seed["entries"]), len(seed["participations"])
    )


def test_a_seed_naming_an_unknown_site_is_refused_naming_the_file(hub: HubFixture, tmp_path: Path) -> None:
    broken = tmp_path / "seed.json"
    broken.write_text(
        json.dumps({"sites": [], "entries": [], "participations": [{"site": "x", "entry": "y"}]})
    )
    with pytest.raises(Invalid, match=r"seed\.json: participation names unknown 'x'"):
        load_seed(hub.sessions, broken)
    assert hub.count("directory_participations") == 0


# -- search and the public listing


@pytest.mark.parametrize("search", ["Köln", "koeln", "KÖLN", "uniklinik köln"])
def test_search_folds_case_and_umlauts(seeded: Directory, search: str) -> None:
    assert [site.slug for site in seeded.sites(search)] == ["uk-koeln"]


def test_search_finds_sites_by_consortium_and_entries_by_words(seeded: Directory) -> None:
    assert {site.city for site in seeded.sites("smith")} == {
        "Aachen", "Bochum", "Bonn", "Düsseldorf", "Essen", "Halle (Saale)", "Hamburg", "Jena", "Leipzig", "Rostock",
    }  # fmt: skip
    assert [entry.slug for entry in seeded.entries(search="biobank alliance")] == ["gba", "gbn"]
    assert seeded.sites("no such place") == []


def test_a_site_shows_what_it_takes_part_in_and_an_entry_who_takes_part(seeded: Directory) -> None:
    site, taking_part = seeded.site("ukr-regensburg")
    assert site.name == "Universitätsklinikum Regensburg"
    assert [(entry.slug, role) for entry, role in taking_part] == [
        ("difuture", "network partner"),
        ("mii", "DIFUTURE consortium"),
    ]
    entry, participants = seeded.entry("highmed")
    assert entry.name == "Heidelberg – Göttingen – Hannover Medical Informatics"
    assert [site.city for site, _ in participants] == [
        "Berlin", "Göttingen", "Hannover", "Heidelberg", "Kiel", "Köln", "Münster", "Würzburg",
    ]  # fmt: skip


def test_an_unknown_slug_is_not_found(seeded: Directory) -> None:
    with pytest.raises(NotFound, match="directory site 'uk-atlantis'"):
        seeded.site("uk-atlantis")
    with pytest.raises(NotFound):
        seeded.entry("nothing")


def test_the_json_form_lists_every_site_with_its_participations(seeded: Directory) -> None:
    listing = seeded.to_json()
    assert json.loads(json.dumps(listing)) == listing
    assert len(listing["sites"]) == 37
    leipzig = next(site for site in listing["sites"] if site["slug"] == "uk-leipzig")
    assert leipzig["participations"] == [
        {"entry": "mii", "role": "SMITH consortium"},
        {"entry": "smith", "role": "data integration centre"},
    ]
    assert {entry["kind"] for entry in listing["entries"]} == {"infrastructure", "project"}


# -- changes by the coordination office


def test_the_office_adds_changes_and_removes_entries(directory: Directory) -> None:
    directory.save_entry(
        OFFICE, Entry("nfdi4health", EntryKind.INFRASTRUCTURE, "NFDI4Health", "NFDI für Gesundheit")
    )
    directory.save_site(OFFICE, Site("uk-test", "Universitätsklinikum Test", "Teststadt"))
    directory.set_participation(OFFICE, Participation("uk-test", "nfdi4health", "partner"))
    directory.set_participation(OFFICE, Participation("uk-test", "nfdi4health", "coordinator"))
    assert [(entry.slug, role) for entry, role in directory.site("uk-test")[1]] == [
        ("nfdi4health", "coordinator")
    ]
    directory.save_site(OFFICE, Site("uk-test", "Universitätsklinikum Testhausen", "Testhausen"))
    assert directory.site("uk-test")[0].city == "Testhausen"
    directory.remove_participation(OFFICE, "uk-test", "nfdi4health")
    assert directory.site("uk-test")[1] == []
    with pytest.raises(NotFound):
        directory.remove_participation(OFFICE, "uk-test", "nfdi4health")
    directory.set_participation(OFFICE, Participation("uk-test", "nfdi4health"))
    directory.delete_entry(OFFICE, "nfdi4health")
    assert directory.site("uk-test")[1] == []
    directory.delete_site(OFFICE, "uk-test")
    assert directory.sites() == []


def test_only_the_office_changes_the_directory(seeded: Directory) -> None:
    with pytest.raises(NotAdministrator):
        seeded.save_site(RESEARCHER, Site("uk-x", "X", "Y"))
    with pytest.raises(NotAdministrator):
        seeded.delete_site(RESEARCHER, "uk-jena")
    with pytest.raises(NotAdministrator):
        seeded.set_participation(RESEARCHER, Participation("uk-jena", "napkon"))
    assert seeded.site("uk-jena")[0].name == "Universitätsklinikum Jena"


@pytest.mark.parametrize(
    ("site", "message"),
    [
        (Site("Bad Slug", "X", "Y"), "slug 'Bad Slug': use 1 to 60"),
        (Site("../etc", "X", "Y"), "slug '../etc'"),
        (Site("uk-x", " ", "Y"), "site uk-x: name: must not be empty"),
        (Site("uk-x", "X", "Y", consortium="x" * 41), "site uk-x: consortium: at most 40 characters"),
        (Site("uk-x", "X", "Y\x00"), "site uk-x: city: must not contain NUL"),
    ],
)
def test_a_bad_site_is_refused_naming_the_field(directory: Directory, site: Site, message: str) -> None:
    with pytest.raises(Invalid, match=re.escape(message)):
        directory.save_site(OFFICE, site)
    assert directory.sites() == []
