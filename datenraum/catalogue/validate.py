"""SHACL validation of the catalogue's graphs with pySHACL, offline.

Two profiles, as the brief's acceptance checks C-1 and C-2 set them:
- `NON_PUBLIC`: the HealthDCAT-AP Release 8 non-public validator (its shapes, ranges, vocabulary and
  recommended shapes, with the DCAT-AP 3.0.1 shapes it imports), for the catalog, the sites' datasets,
  the directory's infrastructures and projects, and the data services;
- `PUBLIC`: DCAT-AP 3.0.1 (`shapes.ttl`, `range.ttl`, `mdr-vocabularies.shape.ttl`, and the recommended
  shapes for warnings), for the dashboard's public series.
Both with the vocabulary background `shapes/background-minimal.ttl` and `inference='none'` (with RDFS
inference a catalog is a dataset and would need a dataset's properties). Only top-level results count:
pySHACL also reports the nested results of `sh:node` checks as `sh:detail`. The shapes are copies of the
official files (CC BY 4.0, `shapes/SOURCE.md`); one path-less `sh:property` of the R8 shapes, which
pySHACL refuses, is lifted to its node shape as `check_healthdcat.py` does (same meaning).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import pyshacl
from rdflib import Graph
from rdflib.namespace import SH

__all__ = ["Profile", "Report", "Result", "background", "shapes", "validate"]

SHAPES = Path(__file__).with_name("shapes")


class Profile(StrEnum):
    NON_PUBLIC = "non-public"
    PUBLIC = "public"


_FILES = {
    Profile.NON_PUBLIC: (
        "healthdcat-ap-r8/validator/shapes/graph-guard.ttl",
        "dcat-ap-3.0.1/shacl/deprecateduris.ttl",
        "healthdcat-ap-r8/validator/ranges/range.ttl",
        "healthdcat-ap-r8/validator/shapes/non-public-shapes.ttl",
        "healthdcat-ap-r8/validator/controlled-vocabularies/mdr-vocabularies.shape.ttl",
        "healthdcat-ap-r8/validator/recommended/non-public-shapes_recommended.ttl",
        "dcat-ap-3.0.1/shacl/shapes.ttl",
        "dcat-ap-3.0.1/shacl/range.ttl",
        "dcat-ap-3.0.1/shacl/shapes_recommended.ttl",
    ),
    Profile.PUBLIC: (
        "dcat-ap-3.0.1/shacl/shapes.ttl",
        "dcat-ap-3.0.1/shacl/range.ttl",
        "dcat-ap-3.0.1/shacl/mdr-vocabularies.shape.ttl",
        "dcat-ap-3.0.1/shacl/shapes_recommended.ttl",
    ),
}


@dataclass(frozen=True)
class Result:
    severity: str  # Violation | Warning | Info
    focus: str
    path: str
    message: str


@dataclass(frozen=True)
class Report:
    profile: Profile
    conforms: bool
    results: tuple[Result, ...]
    checked: dt.datetime
    triples: int
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def violations(self) -> list[Result]:
        return [result for result in self.results if result.severity == "Violation"]

    @property
    def warnings(self) -> list[Result]:
        return [result for result in self.results if result.severity == "Warning"]

    def summary(self) -> list[tuple[str, str, str, int]]:
        """(severity, path, message, how often), the most frequent first."""
        counted = Counter((r.severity, r.path, r.message) for r in self.results)
        return [(*key, n) for key, n in sorted(counted.items(), key=lambda item: (-item[1], item[0]))]


@functools.cache
def shapes(profile: Profile) -> Graph:
    graph = Graph()
    for name in _FILES[profile]:
        graph.parse(SHAPES / name, format="turtle")
    for shape, prop in list(graph.subject_objects(SH.property)):
        if (prop, SH.path, None) not in graph:
            graph.remove((shape, SH.property, prop))
            for alternatives in graph.objects(prop, SH["or"]):
                graph.add((shape, SH["or"], alternatives))
    return graph


@functools.cache
def background() -> Graph:
    return Graph().parse(SHAPES / "background-minimal.ttl", format="turtle")


def validate(data: Graph, profile: Profile, now: dt.datetime | None = None) -> Report:
    """The top-level SHACL results of `data` (with the background) under `profile`."""
    combined = Graph()
    for triple in data:
        combined.add(triple)
    for triple in background():
        combined.add(triple)
    conforms, results, _text = pyshacl.validate(
        combined,
        shacl_graph=shapes(profile),
        inference="none",
        allow_warnings=True,
        abort_on_first=False,
    )
    found = []
    for node in results.objects(None, SH.result):
        severity = results.value(node, SH.resultSeverity)
        found.append(
            Result(
                str(severity).rsplit("#", 1)[-1],
                str(results.value(node, SH.focusNode)),
                str(results.value(node, SH.resultPath) or ""),
                str(results.value(node, SH.resultMessage) or ""),
            )
        )
    found.sort(key=lambda r: (r.severity, r.path, r.message, r.focus))
    counts = Counter(result.severity for result in found)
    return Report(
        profile, bool(conforms), tuple(found), now or dt.datetime.now(dt.UTC), len(data), dict(counts)
    )
