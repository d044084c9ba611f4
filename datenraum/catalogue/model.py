"""The catalogue as values: what the hub knows about each thing it describes, before it becomes RDF.

The hub fills these from its contexts (sites and their reported figures, the directory, the dashboard's
public series, harvested catalogues); `build` turns them into DCAT / HealthDCAT-AP graphs. Figures here
have already passed the disclosure rules at the site (`privacy.metadata`): `None` means not reported or
below the threshold, and is left out of the graph.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "Access",
    "Agent",
    "Column",
    "Kind",
    "Network",
    "PublicSeries",
    "Record",
    "SiteData",
    "Study",
    "Table",
]


class Kind(StrEnum):
    SITE = "site"  # a site's routine-care data (non-public)
    INFRASTRUCTURE = "infrastructure"  # from the directory (non-public)
    PROJECT = "project"
    SERIES = "series"  # a public series of the dashboard


class Access(StrEnum):
    NON_PUBLIC = "NON_PUBLIC"
    PUBLIC = "PUBLIC"


@dataclass(frozen=True)
class Agent:
    """An organisation with a contact: `key` names it in IRIs; `kind` is a publisher-type NAL code."""

    key: str
    name: str
    email: str | None = None
    page: str | None = None  # a contact page (URL)
    kind: str = "non-gov-org"


@dataclass(frozen=True)
class Column:
    name: str
    datatype: str
    description: str


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]


@dataclass(frozen=True)
class Network:
    """The hub: its catalogue's title, where it is reached, who publishes and who decides on access."""

    base_url: str
    title: str
    description: str
    publisher: Agent
    access_body: Agent  # until an EHDS health data access body exists: the Use & Access office
    modified: dt.datetime
    dashboard: bool = False  # whether the dashboard (and its data service) exists on this hub


@dataclass(frozen=True)
class SiteData:
    """A site of the federation and what its agent last reported (`reported` None: nothing yet)."""

    key: str  # the site's name at the hub
    name: str
    city: str | None
    custodian: Agent  # the site's data integration centre
    reported: dt.datetime | None = None
    generation: int | None = None
    patients: int | None = None
    records: int | None = None
    min_age: int | None = None
    max_age: int | None = None
    first_year: int | None = None
    last_year: int | None = None
    coding_systems: tuple[str, ...] = ()  # code system URIs
    tables: tuple[Table, ...] = ()


@dataclass(frozen=True)
class Study:
    """An infrastructure or project of the network directory, with the sites that take part."""

    key: str
    kind: Kind
    acronym: str
    name: str
    description: str
    sites: tuple[str, ...] = ()


@dataclass(frozen=True)
class PublicSeries:
    """A public series of the dashboard, as the dashboard describes it (the interface it fills)."""

    key: str
    title: str
    description: str
    csv_url: str
    json_url: str
    schema_url: str  # its Frictionless Table Schema
    modified: dt.date
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class Record:
    """One dataset of the catalogue as searching and paging see it (its graph is built on demand)."""

    id: str
    kind: Kind
    access: Access
    title: str
    description: str
    modified: dt.datetime
    keywords: tuple[str, ...] = ()
    site: str | None = None  # the site it belongs to (facet)
    theme: str = "HEAL"
    health_category: str | None = None
    source: object = field(default=None, compare=False, repr=False)  # the value it is built from
