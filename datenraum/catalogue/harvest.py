"""Harvesting another DCAT catalogue: its pages, parsed by content type, followed by `hydra:next`.

- **Loop-safe**: a page already fetched is never fetched again (a `next` that points back, at itself or
  to an earlier page ends the harvest), and at most `max_pages` pages are read.
- **Size-limited**: a response larger than `max_bytes` is refused while it arrives (not after), and the
  whole harvest stops at `max_total_bytes`.
- **Records its source**: the result names the URL it started from, every page read, when, and why it
  stopped; the hub keeps it with the harvested graph (`dct:source`, `dct:issued` on the sub-catalogue).
Formats: Turtle, JSON-LD, RDF/XML, N-Triples, by the response's `Content-Type` (else by the URL's suffix).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urldefrag, urljoin

import httpx
from rdflib import Graph, URIRef

from datenraum.catalogue.vocab import DCAT, HYDRA, RDF

__all__ = ["Fetch", "HarvestError", "Harvested", "fetch_http", "harvest"]

MAX_BYTES = 50 * 1024 * 1024  # per response, as ckanext-dcat's harvester
MAX_PAGES = 100

_PARSERS = {
    "text/turtle": "turtle",
    "application/x-turtle": "turtle",
    "application/ld+json": "json-ld",
    "application/json": "json-ld",
    "application/rdf+xml": "xml",
    "application/xml": "xml",
    "text/xml": "xml",
    "application/n-triples": "nt",
}
_SUFFIXES = {
    ".ttl": "turtle",
    ".jsonld": "json-ld",
    ".json": "json-ld",
    ".rdf": "xml",
    ".xml": "xml",
    ".nt": "nt",
}

# (content type, body) of a URL; raises HarvestError
Fetch = Callable[[str, int], tuple[str, bytes]]


class HarvestError(Exception):
    pass


@dataclass
class Harvested:
    source: str
    started: dt.datetime
    graph: Graph
    pages: list[str] = field(default_factory=list)
    stopped: str = "no next page"  # why the harvest ended
    bytes: int = 0

    @property
    def datasets(self) -> list[str]:
        return sorted(str(node) for node in self.graph.subjects(RDF.type, DCAT.Dataset))


def fetch_http(url: str, max_bytes: int, timeout: float = 30.0) -> tuple[str, bytes]:
    """GET `url` asking for RDF; refuses more than `max_bytes` while reading."""
    accept = "text/turtle, application/ld+json;q=0.9, application/rdf+xml;q=0.8"
    try:
        with httpx.stream(
            "GET", url, headers={"Accept": accept}, timeout=timeout, follow_redirects=True
        ) as r:
            if r.status_code != 200:
                raise HarvestError(f"{url}: HTTP {r.status_code}")
            declared = r.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise HarvestError(f"{url}: {declared} bytes, more than the limit of {max_bytes}")
            body = bytearray()
            for chunk in r.iter_bytes():
                body.extend(chunk)
                if len(body) > max_bytes:
                    raise HarvestError(f"{url}: more than the limit of {max_bytes} bytes")
            return r.headers.get("content-type", ""), bytes(body)
    except httpx.HTTPError as error:
        raise HarvestError(f"{url}: {type(error).__name__}: {error}") from None


def _format(content_type: str, url: str) -> str:
    media = content_type.split(";")[0].strip().lower()
    if media in _PARSERS:
        return _PARSERS[media]
    path = urldefrag(url)[0].split("?")[0].lower()
    for suffix, name in _SUFFIXES.items():
        if path.endswith(suffix):
            return name
    raise HarvestError(f"{url}: cannot read content type {content_type or '(none)'!r} as RDF")


def harvest(
    url: str,
    fetch: Fetch = fetch_http,
    *,
    max_pages: int = MAX_PAGES,
    max_bytes: int = MAX_BYTES,
    max_total_bytes: int = 4 * MAX_BYTES,
    now: dt.datetime | None = None,
) -> Harvested:
    """Every page of the catalogue at `url`, merged into one graph (Hydra paging information left out)."""
    result = Harvested(url, now or dt.datetime.now(dt.UTC), Graph())
    seen: set[str] = set()
    page: str | None = url
    while page is not None:
        key = urldefrag(page)[0]
        if key in seen:
            result.stopped = f"the next page {page} was read already"
            break
        if len(result.pages) >= max_pages:
            result.stopped = f"stopped after {max_pages} pages"
            break
        seen.add(key)
        content_type, body = fetch(page, max_bytes)
        if len(body) > max_bytes:
            raise HarvestError(f"{page}: more than the limit of {max_bytes} bytes")
        result.bytes += len(body)
        if result.bytes > max_total_bytes:
            result.stopped = f"stopped at the limit of {max_total_bytes} bytes in all"
            break
        graph = Graph()
        try:
            graph.parse(data=body, format=_format(content_type, page), publicID=page)
        except HarvestError:
            raise
        except Exception as error:
            raise HarvestError(f"{page}: not readable as RDF: {type(error).__name__}: {error}") from None
        result.pages.append(page)
        page = _next(graph, page)
        for triple in graph:
            if not str(triple[1]).startswith(str(HYDRA)) and (triple[1], triple[2]) != (
                RDF.type,
                HYDRA.PagedCollection,
            ):
                result.graph.add(triple)
    for prefix, namespace in graph.namespaces() if result.pages else ():
        result.graph.bind(prefix, namespace, override=False)
    return result


def _next(graph: Graph, page: str) -> str | None:
    for collection in graph.subjects(RDF.type, HYDRA.PagedCollection):
        following = graph.value(collection, HYDRA.next) or graph.value(collection, HYDRA.nextPage)
        if isinstance(following, URIRef):
            return urljoin(page, str(following))
    return None
