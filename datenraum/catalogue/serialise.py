"""The catalogue's documents in Turtle, JSON-LD and RDF/XML, chosen by suffix or by `Accept`.

As ckanext-dcat serves them (`/catalog.ttl`, `.jsonld`, `.rdf`/`.xml`, or content negotiation), so that its
harvester and others read them.
"""

from __future__ import annotations

from dataclasses import dataclass

from rdflib import Graph

__all__ = ["FORMATS", "Format", "by_suffix", "negotiate", "serialise"]


@dataclass(frozen=True)
class Format:
    suffix: str
    media_type: str
    rdflib: str


TURTLE = Format("ttl", "text/turtle", "turtle")
JSONLD = Format("jsonld", "application/ld+json", "json-ld")
RDFXML = Format("rdf", "application/rdf+xml", "pretty-xml")
FORMATS = (TURTLE, JSONLD, RDFXML)
_SUFFIXES = {"ttl": TURTLE, "jsonld": JSONLD, "json": JSONLD, "rdf": RDFXML, "xml": RDFXML}
_MEDIA = {
    "text/turtle": TURTLE,
    "application/x-turtle": TURTLE,
    "application/ld+json": JSONLD,
    "application/json": JSONLD,
    "application/rdf+xml": RDFXML,
    "application/xml": RDFXML,
    "text/xml": RDFXML,
}


def by_suffix(suffix: str) -> Format | None:
    return _SUFFIXES.get(suffix.lower())


def negotiate(accept: str | None) -> Format | None:
    """The RDF format `accept` prefers; None when it prefers HTML (a browser). No header or `*/*`: Turtle."""
    if not accept:
        return TURTLE
    offers: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept.split(",")):
        media, *params = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        if quality > 0:
            offers.append((-quality, position, media.lower()))
    for _quality, _position, media in sorted(offers):
        if media in _MEDIA:
            return _MEDIA[media]
        if media in ("text/html", "application/xhtml+xml"):
            return None
        if media in ("*/*", "text/*", "application/*"):
            return TURTLE
    return TURTLE


def serialise(graph: Graph, fmt: Format) -> bytes:
    if fmt is JSONLD:
        return graph.serialize(format="json-ld", auto_compact=True).encode("utf-8")
    data = graph.serialize(format=fmt.rdflib, encoding="utf-8")
    return data if isinstance(data, bytes) else data.encode("utf-8")
