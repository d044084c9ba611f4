"""The leak gate: a package leaves only when nothing identifying of its input survives and its
references are closed.

Independent of the engine (it re-reads the input, it does not trust what the engine says it did):

1. from the input job folder, collect every original resource id, identifier value (except those of
   the systems the profile keeps, TORCH's Provenance identifiers), name part, address line and text, and
   exact birth date (day precision);
2. scan every file of the output: in the NDJSON every id, reference, `fullUrl`, `request.url` and
   identifier value in its place (exact), every other string and every CSV/JSON/Parquet cell by its
   tokens (ids of 6+ characters, names of 3+), values with spaces or slashes as substrings, and any
   `birthDate` (and CSV column with "birth" in its name) against the exact birth dates;
3. every reference in the output must resolve to a resource in the package (`Type/id` or a fullUrl).

A finding names the kind, the file and the place, and shows only a masked hint of the value. Files the
gate cannot read block the package too.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

__all__ = ["Finding", "Originals", "Verdict", "collect_originals", "leak_gate"]

PERSON_TYPES = frozenset({"Patient", "Practitioner", "RelatedPerson", "Person"})
_SPLIT = re.compile(r"[\s\"',/:{}\[\]|#=;()<>]+")
_DELIMITED = re.compile(r"[\s\"',/:{}\[\]|#=;()<>]")
MAX_FINDINGS = 200


def _mask(value: str) -> str:
    return value[:2] + "…" + f"({len(value)} characters)" if len(value) > 2 else "…"


@dataclass
class Finding:
    kind: str
    file: str
    where: str
    hint: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "file": self.file, "where": self.where, "hint": self.hint}


@dataclass
class Originals:
    ids: set[str] = field(default_factory=set)
    identifiers: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    addresses: set[str] = field(default_factory=set)
    birth_dates: set[str] = field(default_factory=set)

    def token_kinds(self) -> dict[str, str]:
        """Single-token originals by token (for the token scan) -> kind."""
        out: dict[str, str] = {}
        for kind, values, minimum in (
            ("address line", self.addresses, 4),
            ("name", self.names, 3),
            ("original id", self.ids, 6),
            ("identifier value", self.identifiers, 4),
        ):
            for value in values:
                if len(value) >= minimum and not _DELIMITED.search(value):
                    out[value] = kind
        return out

    def phrases(self) -> list[tuple[str, str]]:
        out = []
        for kind, values in (
            ("address line", self.addresses),
            ("name", self.names),
            ("identifier value", self.identifiers),
        ):
            out += [(v, kind) for v in values if _DELIMITED.search(v) and len(v.strip()) >= 4]
        return out


@dataclass
class Verdict:
    passed: bool
    findings: list[Finding]
    files: int
    resources: int
    references: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": "pass" if self.passed else "blocked",
            "files": self.files,
            "resources": self.resources,
            "references": self.references,
            "findings": [f.to_dict() for f in self.findings[:MAX_FINDINGS]],
            "findingsTotal": len(self.findings),
        }


def _lines(path: Path) -> Iterator[tuple[int, Any]]:
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                yield number, orjson.loads(line)


def _resources(document: Any) -> Iterator[dict[str, Any]]:
    if isinstance(document, dict) and document.get("resourceType") == "Bundle":
        for entry in document.get("entry") or ():
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                yield entry["resource"]
    elif isinstance(document, dict) and "resourceType" in document:
        yield document


def collect_originals(in_dir: Path, keep_systems: frozenset[str] = frozenset()) -> Originals:
    originals = Originals()
    for path in sorted(Path(in_dir).glob("*.ndjson")):
        for _, document in _lines(path):
            if isinstance(document, dict) and isinstance(document.get("id"), str):
                originals.ids.add(document["id"])
            for resource in _resources(document):
                _collect(resource, resource.get("resourceType"), originals, keep_systems, None)
    return originals


def _collect(node: Any, resource_type: Any, originals: Originals, keep: frozenset[str], key: Any) -> None:
    if isinstance(node, dict):
        if "resourceType" in node and isinstance(node.get("id"), str):
            originals.ids.add(node["id"])
            birth = node.get("birthDate")
            if node["resourceType"] == "Patient" and isinstance(birth, str) and len(birth) >= 10:
                originals.birth_dates.add(birth[:10])
        if key == "identifier" and isinstance(node.get("value"), str) and node.get("system") not in keep:
            originals.identifiers.add(node["value"])
        if key == "name" and resource_type in PERSON_TYPES:
            for part in ("family", "text"):
                if isinstance(node.get(part), str):
                    originals.names.add(node[part])
            for given in node.get("given") or ():
                if isinstance(given, str):
                    originals.names.add(given)
        if key == "address":
            for line in node.get("line") or ():
                if isinstance(line, str):
                    originals.addresses.add(line)
            if isinstance(node.get("text"), str):
                originals.addresses.add(node["text"])
        for k, v in node.items():
            if isinstance(v, dict | list):
                _collect(v, resource_type, originals, keep, k)
    elif isinstance(node, list):
        for item in node:
            _collect(item, resource_type, originals, keep, key)


class _Scanner:
    def __init__(self, originals: Originals, keep_systems: frozenset[str], day: str | None) -> None:
        self.o = originals
        self.generalized_day = day
        self.keep = keep_systems
        self.tokens = originals.token_kinds()
        self.phrases = originals.phrases()
        self.findings: list[Finding] = []
        self.defined: set[str] = set()
        self.used: dict[str, str] = {}
        self.resources = 0

    def exact_birth(self, value: str) -> bool:
        """An exact birth date of the input; a date on the day a profile generalizes every birth date
        to (FTS: the 15th) is that generalization, not a survivor."""
        if len(value) < 10 or value[:10] not in self.o.birth_dates:
            return False
        return self.generalized_day is None or value[8:10] != self.generalized_day

    def add(self, kind: str, file: str, where: str, value: str) -> None:
        self.findings.append(Finding(kind, file, where, _mask(value)))

    def text(self, text: str, file: str, where: str) -> None:
        tokens = self.tokens
        for token in _SPLIT.split(text):
            kind = tokens.get(token)
            if kind is not None:
                self.add(kind, file, where, token)
        for phrase, kind in self.phrases:
            if phrase in text:
                self.add(kind, file, where, phrase)

    def positional(self, value: Any, file: str, where: str) -> None:
        if isinstance(value, str):
            ident = value.rsplit("/", 1)[-1] if "/" in value else value
            if ident.startswith("urn:uuid:"):
                ident = ident[9:]
            if ident in self.o.ids:
                self.add("original id", file, where, ident)
            elif value in self.o.identifiers:
                self.add("identifier value", file, where, value)

    def walk(self, node: Any, file: str, where: str, key: str | None) -> None:
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str):
                self.positional(ref, file, where + ".reference")
                if not ref.startswith("#"):
                    self.used.setdefault(ref, f"{file}:{where}")
            if key == "identifier" and node.get("system") not in self.keep:
                self.positional(node.get("value"), file, where + ".value")
            birth = node.get("birthDate")
            if isinstance(birth, str) and self.exact_birth(birth):
                self.add("exact birth date", file, where + ".birthDate", birth)
            for k, v in node.items():
                if isinstance(v, str):
                    if k in ("reference", "id") or (k == "value" and key == "identifier"):
                        continue
                    self.text(v, file, f"{where}.{k}")
                else:
                    self.walk(v, file, f"{where}.{k}", k)
        elif isinstance(node, list):
            for i, item in enumerate(node):
                if isinstance(item, str):
                    self.text(item, file, f"{where}[{i}]")
                else:
                    self.walk(item, file, f"{where}[{i}]", key)

    def ndjson(self, path: Path, name: str) -> None:
        for number, document in _lines(path):
            where = f"line {number}"
            if isinstance(document, dict) and document.get("resourceType") == "Bundle":
                self.positional(document.get("id"), name, where + ".id")
                for i, entry in enumerate(document.get("entry") or ()):
                    self.positional(entry.get("fullUrl"), name, f"{where}.entry[{i}].fullUrl")
                    if isinstance(entry.get("fullUrl"), str):
                        self.defined.add(entry["fullUrl"])
                    self.positional(
                        (entry.get("request") or {}).get("url"), name, f"{where}.entry[{i}].request.url"
                    )
            for resource in _resources(document):
                self.resources += 1
                kind, ident = resource.get("resourceType"), resource.get("id")
                self.positional(ident, name, f"{where} {kind}.id")
                self.defined.add(f"{kind}/{ident}")
                self.walk(resource, name, f"{where} {kind}", None)

    def csv(self, path: Path, name: str) -> None:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            birth = {i for i, h in enumerate(header) if "birth" in h.lower()}
            for number, row in enumerate(reader, 2):
                for i, cell in enumerate(row):
                    where = f"row {number} column {header[i] if i < len(header) else i}"
                    self.positional(cell, name, where)
                    self.text(cell, name, where)
                    if i in birth and self.exact_birth(cell):
                        self.add("exact birth date", name, where, cell)


def leak_gate(
    in_dir: Path | str,
    out_dir: Path | str,
    keep_systems: frozenset[str] = frozenset(),
    *,
    generalized_day: str | None = None,
) -> Verdict:
    """Check the de-identified folder `out_dir` against its input `in_dir`."""
    originals = collect_originals(Path(in_dir), keep_systems)
    scanner = _Scanner(originals, keep_systems, generalized_day)
    out = Path(out_dir)
    files = 0
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        name = str(path.relative_to(out))
        files += 1
        try:
            if path.suffix == ".ndjson":
                scanner.ndjson(path, name)
            elif path.suffix == ".csv":
                scanner.csv(path, name)
            elif path.suffix == ".json":
                scanner.walk(orjson.loads(path.read_bytes()), name, "$", None)
            elif path.suffix == ".parquet":
                _parquet(scanner, path, name)
            else:
                scanner.add("file the gate cannot read", name, "", path.name)
        except (ValueError, UnicodeDecodeError, OSError) as error:
            scanner.add("file the gate cannot read", name, str(error)[:80], path.name)
    for ref, where in sorted(scanner.used.items()):
        if ref not in scanner.defined:
            scanner.findings.append(Finding("unresolved reference", *where.split(":", 1), _mask(ref)))
    return Verdict(not scanner.findings, scanner.findings, files, scanner.resources, len(scanner.used))


def _parquet(scanner: _Scanner, path: Path, name: str) -> None:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    for column in table.column_names:
        values = table.column(column).to_pylist()
        for row, value in enumerate(values):
            if value is None:
                continue
            value = str(value)
            where = f"row {row + 1} column {column}"
            scanner.positional(value, name, where)
            scanner.text(value, name, where)
            if "birth" in column.lower() and scanner.exact_birth(value):
                scanner.add("exact birth date", name, where, value)
