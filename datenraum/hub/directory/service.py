"""The network directory: who is in the network, and who takes part in what.

Anyone may read it (the public listing and its JSON form); only the coordination office (role
"admin") changes it. Searching folds case and German spelling variants in Python rather than in SQL,
so that "koeln", "KÖLN" and "Köln" find the same site on SQLite (whose LIKE folds only ASCII) and on
PostgreSQL alike; the directory has some dozens of rows, not millions.

Biobanks are entries too, but the sites keep them: each site's catalogue report names the biobanks of
its store that hold samples of enough patients (`protocol.messages.BiobankListing`), and
`replace_biobanks` makes the site's biobank entries exactly those, with what they hold in words. The
office does not edit them; a biobank the site no longer reports leaves the directory.

The seed (`seed.json`) is the initial list of German university hospitals, infrastructures and
projects. Loading it adds what is missing and never overwrites: after the first load the office
maintains the entries, and loading again (at every start, if one likes) changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from datenraum.hub.directory.tables import DirectoryEntryRow, DirectorySiteRow, ParticipationRow
from datenraum.hub.errors import Forbidden, Invalid, NotFound
from datenraum.hub.roles import Actor, Role
from datenraum.hub.text import clean_text
from datenraum.protocol.messages import BiobankListing
from datenraum.query.biobank.terminology import CATEGORIES, TEMPERATURE_CLASSES

__all__ = [
    "DEFAULT_CONTACT",
    "SEED",
    "Directory",
    "Entry",
    "EntryKind",
    "NotAdministrator",
    "Participation",
    "SeedLoaded",
    "Site",
    "load_seed",
]

SEED = Path(__file__).with_name("seed.json")
# A placeholder that is plainly no person: each site enters its own role address.
DEFAULT_CONTACT = "Data integration centre office (role address, to be entered by the site)"
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,59}")
_FOLDS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})


class NotAdministrator(Forbidden):
    """Only the coordination office changes the directory."""


class EntryKind(StrEnum):
    INFRASTRUCTURE = "infrastructure"
    PROJECT = "project"
    BIOBANK = "biobank"  # kept by the sites' reports (`replace_biobanks`), not by the office


BIOBANK_ROLE = "biobank"
_CATEGORY_LABELS = {category.code: category.label_en for category in CATEGORIES}
_TEMPERATURE_LABELS = {temperature.code: temperature.label_en for temperature in TEMPERATURE_CLASSES}


@dataclass(frozen=True)
class Site:
    slug: str
    name: str
    city: str
    consortium: str | None = None
    data_integration_centre: str | None = None
    contact: str = DEFAULT_CONTACT


@dataclass(frozen=True)
class Entry:
    slug: str
    kind: EntryKind
    acronym: str
    name: str
    description: str = ""


@dataclass(frozen=True)
class Participation:
    site: str  # slug
    entry: str  # slug
    role: str | None = None


@dataclass(frozen=True)
class SeedLoaded:
    sites: int  # rows added
    entries: int
    participations: int


class Directory:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    # -- reading: public

    def sites(self, search: str = "") -> list[Site]:
        """Sites whose name, city, consortium or slug contain `search`, by city and name."""
        with self._sessions.begin() as session:
            sites = [_site(row) for row in session.scalars(sa.select(DirectorySiteRow))]
        found = [site for site in sites if _matches(search, site.name, site.city, site.consortium, site.slug)]
        return sorted(found, key=lambda site: (site.city, site.name))

    def entries(self, kind: EntryKind | None = None, search: str = "") -> list[Entry]:
        with self._sessions.begin() as session:
            query = sa.select(DirectoryEntryRow)
            if kind is not None:
                query = query.where(DirectoryEntryRow.kind == EntryKind(kind).value)
            entries = [_entry(row) for row in session.scalars(query)]
        found = [e for e in entries if _matches(search, e.acronym, e.name, e.description, e.slug)]
        return sorted(found, key=lambda entry: entry.acronym.casefold())

    def site(self, slug: str) -> tuple[Site, list[tuple[Entry, str | None]]]:
        """A site and what it takes part in (with its role there)."""
        with self._sessions.begin() as session:
            row = _site_row(session, slug)
            taking_part = session.execute(
                sa.select(DirectoryEntryRow, ParticipationRow.role)
                .join(ParticipationRow, ParticipationRow.entry_id == DirectoryEntryRow.id)
                .where(ParticipationRow.site_id == row.id)
            ).all()
            return _site(row), sorted(
                ((_entry(entry), role) for entry, role in taking_part),
                key=lambda pair: pair[0].acronym.casefold(),
            )

    def entry(self, slug: str) -> tuple[Entry, list[tuple[Site, str | None]]]:
        """An infrastructure or project and the sites that take part in it."""
        with self._sessions.begin() as session:
            row = _entry_row(session, slug)
            participants = session.execute(
                sa.select(DirectorySiteRow, ParticipationRow.role)
                .join(ParticipationRow, ParticipationRow.site_id == DirectorySiteRow.id)
                .where(ParticipationRow.entry_id == row.id)
            ).all()
            return _entry(row), sorted(
                ((_site(site), role) for site, role in participants),
                key=lambda pair: (pair[0].city, pair[0].name),
            )

    def to_json(self) -> dict[str, Any]:
        """The whole directory as JSON values: the public API's answer."""
        with self._sessions.begin() as session:
            sites = {row.id: _site(row) for row in session.scalars(sa.select(DirectorySiteRow))}
            entries = {row.id: _entry(row) for row in session.scalars(sa.select(DirectoryEntryRow))}
            links = session.execute(
                sa.select(ParticipationRow.site_id, ParticipationRow.entry_id, ParticipationRow.role)
            ).all()
        taking_part: dict[int, list[dict[str, Any]]] = {site_id: [] for site_id in sites}
        for site_id, entry_id, role in links:
            taking_part[site_id].append({"entry": entries[entry_id].slug, "role": role})
        return {
            "sites": [
                {**_values(site), "participations": sorted(taking_part[site_id], key=lambda p: p["entry"])}
                for site_id, site in sorted(sites.items(), key=lambda item: (item[1].city, item[1].name))
            ],
            "entries": [_values(entry) for entry in sorted(entries.values(), key=lambda entry: entry.slug)],
        }

    # -- changing: the coordination office

    def save_site(self, actor: Actor, site: Site) -> None:
        """Add the site, or change the one with its slug."""
        _require_admin(actor)
        _check_site(site)
        with self._sessions.begin() as session:
            _save_by_slug(session, DirectorySiteRow, _values(site))

    def save_entry(self, actor: Actor, entry: Entry) -> None:
        _require_admin(actor)
        _check_entry(entry)
        if entry.kind is EntryKind.BIOBANK:
            raise Invalid("kind: biobanks are listed by their sites' reports, not entered by hand")
        with self._sessions.begin() as session:
            _save_by_slug(session, DirectoryEntryRow, _values(entry))

    def delete_site(self, actor: Actor, slug: str) -> None:
        """Remove a site with its participations."""
        _require_admin(actor)
        with self._sessions.begin() as session:
            row = _site_row(session, slug)
            session.execute(sa.delete(ParticipationRow).where(ParticipationRow.site_id == row.id))
            session.delete(row)

    def delete_entry(self, actor: Actor, slug: str) -> None:
        _require_admin(actor)
        with self._sessions.begin() as session:
            row = _entry_row(session, slug)
            session.execute(sa.delete(ParticipationRow).where(ParticipationRow.entry_id == row.id))
            session.delete(row)

    def set_participation(self, actor: Actor, participation: Participation) -> None:
        """Record that a site takes part in an entry (or change its role there)."""
        _require_admin(actor)
        role = participation.role
        if role is not None:
            clean_text(role, "role", max_length=200, required=False)
        with self._sessions.begin() as session:
            site_id = _site_row(session, participation.site).id
            entry_id = _entry_row(session, participation.entry).id
            row = session.get(ParticipationRow, (site_id, entry_id))
            if row is None:
                session.add(ParticipationRow(site_id=site_id, entry_id=entry_id, role=role))
            else:
                row.role = role

    def remove_participation(self, actor: Actor, site: str, entry: str) -> None:
        _require_admin(actor)
        with self._sessions.begin() as session:
            row = session.get(ParticipationRow, (_site_row(session, site).id, _entry_row(session, entry).id))
            if row is None:
                raise NotFound(f"participation of {site} in {entry}")
            session.delete(row)


def replace_biobanks(session: Session, site_slug: str, listings: Sequence[BiobankListing]) -> int:
    """Make the biobank entries of the directory site `site_slug` those of its latest report, in the
    caller's transaction (the report and the directory change together); returns how many are listed.
    A site the directory does not know lists nothing: the office adds the site first."""
    site = session.scalar(sa.select(DirectorySiteRow).where(DirectorySiteRow.slug == site_slug))
    if site is None:
        return 0
    prefix = _biobank_prefix(site_slug)
    wanted = {f"{prefix}{_digest(listing.id)}": listing for listing in listings}
    owned = session.scalars(
        sa.select(DirectoryEntryRow).where(
            DirectoryEntryRow.kind == EntryKind.BIOBANK.value, DirectoryEntryRow.slug.startswith(prefix)
        )
    ).all()
    for row in owned:
        if row.slug not in wanted:
            session.execute(sa.delete(ParticipationRow).where(ParticipationRow.entry_id == row.id))
            session.delete(row)
    by_slug = {row.slug: row for row in owned}
    for slug, listing in wanted.items():
        values = _values(_biobank_entry(slug, listing, site.name))
        row = by_slug.get(slug)
        if row is None:
            row = DirectoryEntryRow(**values)
            session.add(row)
            session.flush()
            session.add(ParticipationRow(site_id=site.id, entry_id=row.id, role=BIOBANK_ROLE))
        else:
            for name, value in values.items():
                setattr(row, name, value)
    return len(wanted)


def _biobank_prefix(site_slug: str) -> str:
    # Slugs are at most 60 characters: a long site slug is replaced by its digest.
    return f"biobank-{site_slug if len(site_slug) <= 40 else _digest(site_slug)}-"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _biobank_entry(slug: str, listing: BiobankListing, site_name: str) -> Entry:
    held = ", ".join(_CATEGORY_LABELS.get(code, code) for code in listing.categories) or "no category yet"
    stored = ", ".join(_TEMPERATURE_LABELS.get(code, code) for code in listing.temperatures) or "unknown"
    ids = f" BBMRI-ERIC id {listing.bbmri_id}." if listing.bbmri_id else ""
    name = clean_text(listing.name, "biobanks[].name", max_length=300) or listing.id
    return Entry(
        slug,
        EntryKind.BIOBANK,
        (listing.bbmri_id or name)[:40],
        name,
        f"Biobank at {site_name}.{ids} Holds samples of: {held}. Storage: {stored}. "
        "Listed from the site's own report; counts are in the sample locator.",
    )


def load_seed(sessions: sessionmaker[Session], path: Path = SEED) -> SeedLoaded:
    """Add the seed's sites, entries and participations that are not there yet; returns what was added."""
    seed = json.loads(path.read_text(encoding="utf-8"))
    sites = [Site(**values) for values in seed["sites"]]
    entries = [Entry(**{**values, "kind": EntryKind(values["kind"])}) for values in seed["entries"]]
    participations = [Participation(**values) for values in seed["participations"]]
    for site in sites:
        _check_site(site)
    for entry in entries:
        _check_entry(entry)
    with sessions.begin() as session:
        known_sites = set(session.scalars(sa.select(DirectorySiteRow.slug)))
        known_entries = set(session.scalars(sa.select(DirectoryEntryRow.slug)))
        new_sites = [site for site in sites if site.slug not in known_sites]
        new_entries = [entry for entry in entries if entry.slug not in known_entries]
        session.add_all(DirectorySiteRow(**_values(site)) for site in new_sites)
        session.add_all(DirectoryEntryRow(**_values(entry)) for entry in new_entries)
        session.flush()
        site_ids = dict(session.execute(sa.select(DirectorySiteRow.slug, DirectorySiteRow.id)).all())
        entry_ids = dict(session.execute(sa.select(DirectoryEntryRow.slug, DirectoryEntryRow.id)).all())
        known_links = set(
            session.execute(sa.select(ParticipationRow.site_id, ParticipationRow.entry_id)).all()
        )
        added = 0
        for participation in participations:
            try:
                key = (site_ids[participation.site], entry_ids[participation.entry])
            except KeyError as error:
                raise Invalid(f"{path.name}: participation names unknown {error.args[0]!r}") from None
            if key not in known_links:
                session.add(ParticipationRow(site_id=key[0], entry_id=key[1], role=participation.role))
                known_links.add(key)
                added += 1
        return SeedLoaded(len(new_sites), len(new_entries), added)


def _require_admin(actor: Actor) -> None:
    if Role.ADMIN not in actor.roles:
        raise NotAdministrator("directory: only the coordination office (role 'admin') changes it")


def _fold(text: str) -> str:
    return text.casefold().translate(_FOLDS)


def _matches(search: str, *fields: str | None) -> bool:
    words = _fold(search).split()
    haystack = " ".join(_fold(field) for field in fields if field)
    return all(word in haystack for word in words)


def _values(value: Site | Entry) -> dict[str, Any]:
    values = dict(vars(value))
    if isinstance(value, Entry):
        values["kind"] = EntryKind(value.kind).value
    return values


def _site(row: DirectorySiteRow) -> Site:
    return Site(row.slug, row.name, row.city, row.consortium, row.data_integration_centre, row.contact)


def _entry(row: DirectoryEntryRow) -> Entry:
    return Entry(row.slug, EntryKind(row.kind), row.acronym, row.name, row.description)


def _site_row(session: Session, slug: str) -> DirectorySiteRow:
    row = session.scalar(sa.select(DirectorySiteRow).where(DirectorySiteRow.slug == slug))
    if row is None:
        raise NotFound(f"directory site {slug!r}")
    return row


def _entry_row(session: Session, slug: str) -> DirectoryEntryRow:
    row = session.scalar(sa.select(DirectoryEntryRow).where(DirectoryEntryRow.slug == slug))
    if row is None:
        raise NotFound(f"directory entry {slug!r}")
    return row


def _check_slug(slug: str) -> None:
    if not isinstance(slug, str) or not _SLUG.fullmatch(slug):
        raise Invalid(
            f"slug {slug!r}: use 1 to 60 lower-case letters, digits and '-', starting with a letter or digit"
        )


def _check_site(site: Site) -> None:
    _check_slug(site.slug)
    where = f"site {site.slug}"
    clean_text(site.name, f"{where}: name", max_length=200)
    clean_text(site.city, f"{where}: city", max_length=100)
    clean_text(site.contact, f"{where}: contact", max_length=300)
    for value, name, limit in (
        (site.consortium, "consortium", 40),
        (site.data_integration_centre, "data_integration_centre", 200),
    ):
        if value is not None:  # not given
            clean_text(value, f"{where}: {name}", max_length=limit, required=False)


def _check_entry(entry: Entry) -> None:
    _check_slug(entry.slug)
    where = f"entry {entry.slug}"
    try:
        EntryKind(entry.kind)
    except ValueError:
        raise Invalid(f"{where}: kind must be one of {', '.join(EntryKind)}") from None
    clean_text(entry.acronym, f"{where}: acronym", max_length=40)
    clean_text(entry.name, f"{where}: name", max_length=300)
    if entry.description is not None:
        clean_text(entry.description, f"{where}: description", max_length=5000, required=False)


def _save_by_slug(
    session: Session, table: type[DirectorySiteRow] | type[DirectoryEntryRow], values: dict
) -> None:
    """Add the row with these values, or change the one with their slug."""
    row = session.scalar(sa.select(table).where(table.slug == values["slug"]))
    if row is None:
        session.add(table(**values))
        return
    for name, value in values.items():
        setattr(row, name, value)
