"""CRTDL (Clinical Resource Transfer Definition Language) as frozen values: read both shapes, write v1.

A CRTDL is a CCDL cohort plus `dataExtraction.attributeGroups`. Two shapes are in circulation
(brief R-CRTDL, `../shared/briefs/extraction.md` §2.1): v0.1 as the portal and every TORCH test emit it
(`version` any URI, `name` optional, `attributes` may be empty) and v1 by the schema
(`CRTDL_schema_v1.json`: `version` "1", `name` required, no empty lists, `additionalProperties: false`).

- `validate_strict(data)`: every violation of the v1 schema (with *format assertion* for `uri` and `date`,
  the checkers are ours so they cannot be silently missing) and of the cross-field rules the schema cannot
  express (unique group ids, names unique after slugification, no Windows device names, every linked
  group exists, date filter end >= start), each with the JSON path of the offending value.
- `parse_crtdl(data, mode=...)`: "strict" raises `CrtdlError` with all violations of `validate_strict`;
  "legacy" accepts what TORCH accepts (unknown keys, URI versions, missing names, empty attribute lists)
  and returns warnings for what v1 would refuse; hard errors (a group without id, a dangling link, ...)
  are raised in both modes.
- `crtdl_to_json(crtdl)` writes v1 (`version` "1", names set, no empty attribute lists), so that
  `validate_strict(crtdl_to_json(parse_crtdl(x)))` is empty for every CRTDL with attributes.

The cohort stays raw JSON here (`Crtdl.cohort`); `datenraum.query.model.parse_query` reads it.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import orjson

__all__ = [
    "Attribute",
    "AttributeGroup",
    "Code",
    "Crtdl",
    "CrtdlError",
    "Filter",
    "Violation",
    "crtdl_to_json",
    "file_slugs",
    "parse_crtdl",
    "slugify",
    "validate_strict",
]

RESERVED_SLUGS = frozenset(
    ["con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))]
)
CCDL_V2_ID = "https://medizininformatik-initiative.de/fdpg/ClinicalCohortDefinitionLanguage/v2/schema"


@dataclass(frozen=True)
class Violation:
    """One problem of a CRTDL: where (a JSON path, `$` the document), what, and for the rules the portal
    knows, its dataportal-backend issue code (2000001-2000007)."""

    path: str
    message: str
    code: int | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"path": self.path, "message": self.message}
        if self.code is not None:
            body["code"] = self.code
        return body


class CrtdlError(ValueError):
    """A CRTDL that cannot be run: every violation found, each with its JSON path."""

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = list(violations)
        super().__init__("; ".join(str(v) for v in self.violations))


@dataclass(frozen=True)
class Code:
    system: str
    code: str
    display: str = ""
    version: str | None = None


@dataclass(frozen=True)
class Filter:
    type: str  # "token" or "date"
    name: str  # a FHIR search parameter code: "code", "date", ...
    codes: tuple[Code, ...] = ()
    start: dt.date | None = None
    end: dt.date | None = None


@dataclass(frozen=True)
class Attribute:
    ref: str  # an ElementDefinition id of the group's profile, e.g. "Condition.extension:Feststellungsdatum"
    must_have: bool = False
    linked_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class AttributeGroup:
    id: str
    name: str
    group_reference: str  # the profile's canonical URL
    attributes: tuple[Attribute, ...] = ()
    filters: tuple[Filter, ...] = ()
    include_reference_only: bool = False

    @property
    def slug(self) -> str:
        return slugify(self.name)


@dataclass(frozen=True)
class Crtdl:
    cohort: dict[str, Any]
    groups: tuple[AttributeGroup, ...]
    display: str = ""
    source_version: str = "1"  # the `version` as read
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def group(self, group_id: str) -> AttributeGroup:
        for group in self.groups:
            if group.id == group_id:
                return group
        raise KeyError(group_id)


# --- slugs -----------------------------------------------------------------------------------------

_UMLAUTS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})


def slugify(name: str) -> str:
    """The output file base name of a group (`crtdl:docs/documentation.md`): trim, lowercase, German
    umlauts spelled out, NFKD without combining marks, runs outside [a-z0-9] to `_`, `_` stripped."""
    text = name.strip().lower().translate(_UMLAUTS)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return re.sub(r"[^a-z0-9]+", "_", text).strip("_")


# --- strict validation -------------------------------------------------------------------------------


def _is_uri(value: object) -> bool:
    """RFC 3986 absolute URI: a scheme, then no spaces or other characters URIs never hold. The empty
    string passes: emptiness is the schema's minLength rule, reported once."""
    if not isinstance(value, str) or value == "":
        return True
    if re.search(r"[\s<>\"{}|\\^`]", value):
        return False
    return bool(re.match(r"[A-Za-z][A-Za-z0-9+.\-]*:", value)) and bool(urlsplit(value).scheme)


def _is_date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


@functools.cache
def _validator() -> Any:
    import jsonschema
    from referencing import Registry, Resource

    schema = orjson.loads(resources.files(__package__).joinpath("data/CRTDL_schema_v1.json").read_bytes())
    # The cohort is read (and every problem of it named) by datenraum.query.model.parse_query; the CCDL
    # schema itself is not shipped, so its $ref resolves to "anything".
    registry = Registry().with_resource(
        CCDL_V2_ID, Resource.from_contents({"$schema": "https://json-schema.org/draft/2020-12/schema"})
    )
    checker = jsonschema.FormatChecker(formats=())
    checker.checks("uri")(_is_uri)
    checker.checks("date")(_is_date)
    return jsonschema.Draft202012Validator(schema, registry=registry, format_checker=checker)


def _json_path(parts: Any) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _schema_violations(data: Any) -> list[Violation]:
    found = []
    for error in _validator().iter_errors(data):
        found.append(Violation(_json_path(error.absolute_path), error.message))
    return found


def _groups_raw(data: Any) -> list[tuple[int, dict]]:
    if not isinstance(data, dict):
        return []
    extraction = data.get("dataExtraction")
    groups = extraction.get("attributeGroups") if isinstance(extraction, dict) else None
    if not isinstance(groups, list):
        return []
    return [(i, g) for i, g in enumerate(groups) if isinstance(g, dict)]


def _cross_field_violations(data: Any, *, names_required: bool = True) -> list[Violation]:
    """The rules of `crtdl:docs/documentation.md` "Validation" that the schema cannot express."""
    found: list[Violation] = []
    groups = _groups_raw(data)
    ids: dict[str, int] = {}
    slugs: dict[str, int] = {}
    for index, group in groups:
        path = f"$.dataExtraction.attributeGroups[{index}]"
        group_id = group.get("id")
        if isinstance(group_id, str) and group_id:
            if group_id in ids:
                found.append(
                    Violation(
                        f"{path}.id", f"duplicate group id {group_id!r} (first at group {ids[group_id]})"
                    )
                )
            else:
                ids[group_id] = index
        name = group.get("name")
        if isinstance(name, str) and name.strip():
            slug = slugify(name)
            if not slug:
                found.append(Violation(f"{path}.name", f"name {name!r} has an empty slug"))
            elif slug in RESERVED_SLUGS:
                found.append(
                    Violation(f"{path}.name", f"name {name!r} slugifies to the reserved file name {slug!r}")
                )
            elif slug in slugs:
                found.append(
                    Violation(
                        f"{path}.name",
                        f"name {name!r} slugifies to {slug!r}, as group {slugs[slug]}'s does (file names must be unique)",
                    )
                )
            else:
                slugs[slug] = index
        for f_index, filt in enumerate(group.get("filter") or []):
            if not isinstance(filt, dict):
                continue
            start, end = filt.get("start"), filt.get("end")
            dated = isinstance(start, str) and isinstance(end, str) and _is_date(start) and _is_date(end)
            if dated and end < start:
                found.append(
                    Violation(
                        f"{path}.filter[{f_index}].end", f"end {end} lies before start {start}", 2000007
                    )
                )
    known = {g.get("id") for _, g in groups}
    for index, group in groups:
        for a_index, attribute in enumerate(group.get("attributes") or []):
            if not isinstance(attribute, dict):
                continue
            for l_index, link in enumerate(attribute.get("linkedGroups") or []):
                if link not in known:
                    found.append(
                        Violation(
                            f"$.dataExtraction.attributeGroups[{index}].attributes[{a_index}].linkedGroups[{l_index}]",
                            f"linked group {link!r} is not a group of this CRTDL",
                            2000006,
                        )
                    )
    return found


def validate_strict(data: Any) -> list[Violation]:
    """Every violation of CRTDL v1 (schema with format assertion, and the cross-field rules), in document
    order; empty when `data` is a valid v1 CRTDL."""
    found = _schema_violations(data) + _cross_field_violations(data)
    return sorted(found, key=lambda v: _sort_key(v.path))


def _sort_key(path: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]$]+", path)]


# --- parsing -------------------------------------------------------------------------------------------

_TOP = {"version", "display", "cohortDefinition", "dataExtraction"}
_GROUP = {"id", "name", "groupReference", "includeReferenceOnly", "attributes", "filter"}
_ATTRIBUTE = {"attributeRef", "mustHave", "linkedGroups"}
_FILTER = {"type", "name", "codes", "start", "end"}
_CODE = {"code", "system", "display", "version"}


class _Reader:
    def __init__(self) -> None:
        self.errors: list[Violation] = []
        self.warnings: list[str] = []

    def unknown(self, node: dict, known: set[str], path: str) -> None:
        for key in node:
            if key not in known:
                self.warnings.append(f"{path}.{key}: unknown key ignored")

    def string(self, node: dict, key: str, path: str, *, required: bool = True) -> str | None:
        value = node.get(key)
        if value is None:
            if required:
                self.errors.append(Violation(f"{path}.{key}", "required"))
            return None
        if not isinstance(value, str):
            self.errors.append(Violation(f"{path}.{key}", f"must be a string, got {type(value).__name__}"))
            return None
        if required and not value:
            self.errors.append(Violation(f"{path}.{key}", "must not be empty"))
            return None
        return value

    def date(self, node: dict, key: str, path: str) -> dt.date | None:
        value = node.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not _is_date(value):
            self.errors.append(Violation(f"{path}.{key}", f"not a date (YYYY-MM-DD): {value!r}"))
            return None
        return dt.date.fromisoformat(value)


def parse_crtdl(data: Any, *, mode: str = "legacy") -> Crtdl:
    """Read a CRTDL (bytes, str or parsed JSON). `mode` "strict": v1 only, every violation raised at
    once; "legacy": what TORCH accepts, with warnings. Raises CrtdlError."""
    if isinstance(data, bytes | str):
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise CrtdlError([Violation("$", f"not JSON: {error}")]) from None
    if mode not in ("strict", "legacy"):
        raise ValueError(f"unknown mode {mode!r}")
    if not isinstance(data, dict):
        raise CrtdlError([Violation("$", "a CRTDL is a JSON object")])
    if mode == "strict":
        violations = validate_strict(data)
        if violations:
            raise CrtdlError(violations)
    reader = _Reader()
    if mode == "legacy":
        reader.unknown(data, _TOP, "$")
    version = data.get("version")
    if version != "1":
        reader.warnings.append(f"$.version: {version!r} is not CRTDL v1 (read as the v0.1 shape)")
    cohort = data.get("cohortDefinition")
    if not isinstance(cohort, dict):
        reader.errors.append(Violation("$.cohortDefinition", "required: a CCDL object"))
        cohort = {}
    extraction = data.get("dataExtraction")
    raw_groups: list = []
    if not isinstance(extraction, dict):
        reader.errors.append(Violation("$.dataExtraction", "required: an object with attributeGroups"))
    else:
        if mode == "legacy":
            reader.unknown(extraction, {"attributeGroups"}, "$.dataExtraction")
        raw_groups = extraction.get("attributeGroups")
        if not isinstance(raw_groups, list) or not raw_groups:
            reader.errors.append(
                Violation("$.dataExtraction.attributeGroups", "must be a non-empty array of attribute groups")
            )
            raw_groups = []
    groups = []
    for index, raw in enumerate(raw_groups):
        path = f"$.dataExtraction.attributeGroups[{index}]"
        if not isinstance(raw, dict):
            reader.errors.append(Violation(path, "an attribute group is an object"))
            continue
        groups.append(_group(reader, raw, path, mode))
    for violation in _cross_field_violations(data):
        if "slugifies" in violation.message or "empty slug" in violation.message:
            # TORCH names no files after groups: a legacy CRTDL may repeat names (files get the group id).
            reader.warnings.append(str(violation))
        elif violation not in reader.errors:
            reader.errors.append(violation)
    if reader.errors:
        raise CrtdlError(sorted(set(reader.errors), key=lambda v: _sort_key(v.path)))
    display = data.get("display") if isinstance(data.get("display"), str) else ""
    return Crtdl(
        cohort=cohort,
        groups=tuple(groups),
        display=display,
        source_version=str(version),
        warnings=tuple(reader.warnings),
    )


def _group(reader: _Reader, raw: dict, path: str, mode: str) -> AttributeGroup:
    if mode == "legacy":
        reader.unknown(raw, _GROUP, path)
    group_id = reader.string(raw, "id", path) or ""
    reference = reader.string(raw, "groupReference", path) or ""
    if reference and not _is_uri(reference):
        reader.errors.append(Violation(f"{path}.groupReference", f"not a URI: {reference!r}", 2000001))
    name = reader.string(raw, "name", path, required=False)
    if name is None or not name.strip():
        reader.warnings.append(f"{path}.name: missing (v1 requires it); named after the group id")
        name = group_id
    only_ref = raw.get("includeReferenceOnly", False)
    if not isinstance(only_ref, bool):
        reader.errors.append(Violation(f"{path}.includeReferenceOnly", "must be true or false"))
        only_ref = False
    raw_attributes = raw.get("attributes")
    attributes = []
    if not isinstance(raw_attributes, list):
        reader.errors.append(Violation(f"{path}.attributes", "required: an array"))
        raw_attributes = []
    elif not raw_attributes:
        reader.warnings.append(f"{path}.attributes: empty (v1 requires at least one attribute)")
    for a_index, a_raw in enumerate(raw_attributes):
        a_path = f"{path}.attributes[{a_index}]"
        if not isinstance(a_raw, dict):
            reader.errors.append(Violation(a_path, "an attribute is an object"))
            continue
        if mode == "legacy":
            reader.unknown(a_raw, _ATTRIBUTE, a_path)
        ref = reader.string(a_raw, "attributeRef", a_path) or ""
        must = a_raw.get("mustHave")
        if must is None:
            reader.warnings.append(f"{a_path}.mustHave: missing, read as false")
            must = False
        elif not isinstance(must, bool):
            reader.errors.append(Violation(f"{a_path}.mustHave", "must be true or false"))
            must = False
        links = a_raw.get("linkedGroups") or []
        if not isinstance(links, list) or not all(isinstance(x, str) for x in links):
            reader.errors.append(Violation(f"{a_path}.linkedGroups", "must be an array of group ids"))
            links = []
        attributes.append(Attribute(ref, must, tuple(links)))
    filters = []
    raw_filters = raw.get("filter") or []
    if not isinstance(raw_filters, list):
        reader.errors.append(Violation(f"{path}.filter", "must be an array"))
        raw_filters = []
    for f_index, f_raw in enumerate(raw_filters):
        f_path = f"{path}.filter[{f_index}]"
        if not isinstance(f_raw, dict):
            reader.errors.append(Violation(f_path, "a filter is an object"))
            continue
        if mode == "legacy":
            reader.unknown(f_raw, _FILTER, f_path)
        f_type = reader.string(f_raw, "type", f_path) or ""
        f_name = reader.string(f_raw, "name", f_path) or ""
        if f_type and f_type not in ("token", "date"):
            reader.errors.append(
                Violation(f"{f_path}.type", f"filter type {f_type!r} is not supported (token, date)", 2000004)
            )
        codes = []
        for c_index, c_raw in enumerate(f_raw.get("codes") or []):
            c_path = f"{f_path}.codes[{c_index}]"
            if not isinstance(c_raw, dict):
                reader.errors.append(Violation(c_path, "a code is an object"))
                continue
            if mode == "legacy":
                reader.unknown(c_raw, _CODE, c_path)
            system = reader.string(c_raw, "system", c_path) or ""
            code = reader.string(c_raw, "code", c_path) or ""
            display = c_raw.get("display") if isinstance(c_raw.get("display"), str) else ""
            version = c_raw.get("version") if isinstance(c_raw.get("version"), str) else None
            codes.append(Code(system, code, display, version))
        if f_type == "token" and not codes:
            reader.errors.append(Violation(f"{f_path}.codes", "a token filter needs at least one code"))
        start, end = reader.date(f_raw, "start", f_path), reader.date(f_raw, "end", f_path)
        if f_type == "date" and start is None and end is None:
            reader.errors.append(Violation(f_path, "a date filter needs start or end", 2000007))
        filters.append(Filter(f_type, f_name, tuple(codes), start, end))
    dates = [i for i, f in enumerate(filters) if f.type == "date"]
    if len(dates) > 1:
        reader.errors.append(Violation(f"{path}.filter[{dates[1]}]", "a group has at most one date filter"))
    return AttributeGroup(group_id, name, reference, tuple(attributes), tuple(filters), only_ref)


def file_slugs(crtdl: Crtdl) -> dict[str, str]:
    """Group id -> the base name of its files: the slug of its name, or for a legacy CRTDL whose names
    collide or are reserved, the slug followed by the slug of the id."""
    taken: set[str] = set()
    result = {}
    for group in crtdl.groups:
        slug = group.slug or "group"
        if slug in taken or slug in RESERVED_SLUGS:
            slug = f"{slug}_{slugify(group.id) or len(taken)}"
        while slug in taken:
            slug += "_"
        taken.add(slug)
        result[group.id] = slug
    return result


# --- writing -------------------------------------------------------------------------------------------


def crtdl_to_json(crtdl: Crtdl) -> dict[str, Any]:
    """The CRTDL as v1 JSON (groups without attributes cannot be written in v1: they get none, and
    `validate_strict` will say so; the extraction adds the standard attributes anyway)."""
    groups = []
    for group in crtdl.groups:
        body: dict[str, Any] = {"id": group.id, "name": group.name, "groupReference": group.group_reference}
        if group.include_reference_only:
            body["includeReferenceOnly"] = True
        body["attributes"] = [
            {
                "attributeRef": a.ref,
                "mustHave": a.must_have,
                **({"linkedGroups": list(a.linked_groups)} if a.linked_groups else {}),
            }
            for a in group.attributes
        ]
        if group.filters:
            body["filter"] = [_filter_json(f) for f in group.filters]
        groups.append(body)
    return {
        "version": "1",
        "display": crtdl.display,
        "cohortDefinition": crtdl.cohort,
        "dataExtraction": {"attributeGroups": groups},
    }


def _filter_json(f: Filter) -> dict[str, Any]:
    body: dict[str, Any] = {"type": f.type, "name": f.name}
    if f.codes:
        body["codes"] = [
            {
                "code": c.code,
                "system": c.system,
                "display": c.display,
                **({"version": c.version} if c.version else {}),
            }
            for c in f.codes
        ]
    if f.start:
        body["start"] = f.start.isoformat()
    if f.end:
        body["end"] = f.end.isoformat()
    return body
