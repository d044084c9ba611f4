"""Searching and paging the catalogue's datasets, and the Hydra description of a page.

The page is described as ckanext-dcat describes its `/catalog` pages: a `hydra:PagedCollection` named by
the page's own URL, with `hydra:totalItems`, `hydra:itemsPerPage` and `hydra:first`, `hydra:last`,
`hydra:next`, `hydra:previous` (the URLs keep the other parameters of the request).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from rdflib import Graph, Literal, URIRef

from datenraum.catalogue.model import Record
from datenraum.catalogue.vocab import HYDRA, RDF, XSD

__all__ = ["MAX_PAGE_SIZE", "Page", "describe", "matches", "select"]

MAX_PAGE_SIZE = 100


def _fold(text: str) -> str:
    return text.casefold().translate(str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"}))


def matches(record: Record, q: str) -> bool:
    """Whether every word of `q` is in the record's title, description, keywords or site."""
    haystack = _fold(" ".join((record.title, record.description, *record.keywords, record.site or "")))
    return all(word in haystack for word in _fold(q).split())


@dataclass(frozen=True)
class Page:
    records: list[Record]
    number: int
    size: int
    total: int

    @property
    def last(self) -> int:
        return max(1, math.ceil(self.total / self.size))


def select(
    records: Sequence[Record],
    *,
    page: int = 1,
    page_size: int = MAX_PAGE_SIZE,
    q: str = "",
    modified_since: dt.datetime | None = None,
) -> Page:
    """The records on page `page` (from 1) of those that match `q` and changed since `modified_since`."""
    if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page must be at least 1, page_size from 1 to {MAX_PAGE_SIZE}")
    found = [r for r in records if matches(r, q) and (modified_since is None or r.modified >= modified_since)]
    start = (page - 1) * page_size
    return Page(found[start : start + page_size], page, page_size, len(found))


def describe(graph: Graph, page: Page, url: str, parameters: dict[str, str]) -> URIRef:
    """Add the page's `hydra:PagedCollection` to `graph`; `url` without query, `parameters` the others."""

    def link(number: int) -> URIRef:
        return URIRef(f"{url}?{urlencode({**parameters, 'page': str(number)})}")

    node = link(page.number)
    graph.add((node, RDF.type, HYDRA.PagedCollection))
    graph.add((node, HYDRA.totalItems, Literal(page.total, datatype=XSD.integer)))
    graph.add((node, HYDRA.itemsPerPage, Literal(page.size, datatype=XSD.integer)))
    graph.add((node, HYDRA.first, link(1)))
    graph.add((node, HYDRA.last, link(page.last)))
    if page.number < page.last:
        graph.add((node, HYDRA.next, link(page.number + 1)))
    if page.number > 1:
        graph.add((node, HYDRA.previous, link(min(page.number - 1, page.last))))
    return node
