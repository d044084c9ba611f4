"""The profiles' element model: which elements a profile has, which it requires, its named slices; and
attributeRefs (ElementDefinition ids) compiled to element paths over FHIR JSON.

A profile here is a *digest* (`data/profiles/*.json`): its canonical URL, resource type, title, the
element ids it requires (min >= 1), its named extension slices (slice id -> extension URL) and its pattern
slices (slice id -> the values its discriminator fixes). The element tree itself is FHIR R4's
(`data/r4_elements.json`). A site adds profiles by putting digests or whole StructureDefinitions (with
a snapshot; `digest_structure_definition` reads them) into a folder passed as `profile_dirs`.

attributeRef syntax (`crtdl:docs/documentation.md`): `Type.a.b`, choice elements `Type.value[x]`, type
slices `Type.value[x]:valueQuantity`, named slices `Type.extension:name`, `Type.a.coding:slice`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "DAR_URL",
    "PATIENT_REFERENCE",
    "ElementPath",
    "Profile",
    "ProfileError",
    "Profiles",
    "Step",
    "digest_structure_definition",
    "element_model",
]

DAR_URL = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"

# The element of each patient-compartment type that names the patient (a standard attribute, linked to
# the Patient group). Types not listed are outside the compartment: core resources.
PATIENT_REFERENCE = {
    "Condition": "subject",
    "Encounter": "subject",
    "Observation": "subject",
    "Procedure": "subject",
    "MedicationAdministration": "subject",
    "MedicationStatement": "subject",
    "MedicationRequest": "subject",
    "Specimen": "subject",
    "DiagnosticReport": "subject",
    "ServiceRequest": "subject",
    "List": "subject",
    "ImagingStudy": "subject",
    "DocumentReference": "subject",
    "Consent": "patient",
    "FamilyMemberHistory": "patient",
    "RiskAssessment": "subject",
    "Task": "for",
    "ResearchSubject": "individual",
    "QuestionnaireResponse": "subject",
}


class ProfileError(ValueError):
    """An attributeRef or profile that cannot be used; `path` is the CRTDL's JSON path when known."""

    def __init__(self, message: str, path: str = "$", code: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.code = code


@dataclass(frozen=True)
class ElementModel:
    resource: dict[str, str]
    types: dict[str, dict[str, str]]
    datatypes: dict[str, dict[str, str]]
    _children: dict[str, dict[str, str] | None] = field(default_factory=dict, compare=False, repr=False)

    def children(self, type_name: str) -> dict[str, str] | None:
        """Element name -> type of a resource type, backbone or datatype; None for primitives/unknown.
        The same dict for the same type (computed once): callers must not modify it."""
        cache = self._children
        if type_name not in cache:
            cache[type_name] = self._compute_children(type_name)
        return cache[type_name]

    def _compute_children(self, type_name: str) -> dict[str, str] | None:
        if type_name in self.types:
            return (
                {**self.resource, **self.types[type_name]}
                if "." not in type_name
                else {
                    "id": "string",
                    "extension": "Extension[]",
                    "modifierExtension": "Extension[]",
                    **self.types[type_name],
                }
            )
        if type_name in self.datatypes:
            return {"id": "string", "extension": "Extension[]", **self.datatypes[type_name]}
        if type_name == "BackboneElement":
            return None
        return None


@functools.cache
def element_model() -> ElementModel:
    raw = orjson.loads(resources.files(__package__).joinpath("data/r4_elements.json").read_bytes())
    return ElementModel(raw["resource"], raw["types"], raw["datatypes"])


def is_primitive(type_name: str) -> bool:
    return type_name[:1].islower()


@dataclass(frozen=True)
class Step:
    """One step of an element path: the JSON keys it may take (several for a choice element), whether
    it repeats, and for a slice the values an item must have (dotted path -> value)."""

    keys: tuple[str, ...]
    types: tuple[str, ...]
    repeats: bool
    where: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ElementPath:
    ref: str
    steps: tuple[Step, ...]

    @property
    def types(self) -> tuple[str, ...]:
        return self.steps[-1].types if self.steps else ()

    @property
    def is_reference(self) -> bool:
        return "Reference" in self.types

    @property
    def top(self) -> str:
        return self.steps[0].keys[0] if self.steps else ""


@dataclass(frozen=True)
class Profile:
    url: str
    type: str
    title: str
    required: tuple[str, ...] = ()
    extensions: dict[str, str] = field(default_factory=dict)
    slices: dict[str, dict[str, str]] = field(default_factory=dict)
    source: str = ""

    @functools.cached_property
    def extension_urls(self) -> frozenset[str]:
        """Every extension the profile declares, anywhere; data-absent-reason is always allowed."""
        return frozenset([*self.extensions.values(), DAR_URL])

    @property
    def patient_reference(self) -> str | None:
        return PATIENT_REFERENCE.get(self.type)

    def standard_refs(self) -> list[str]:
        refs = [f"{self.type}.id", f"{self.type}.meta.profile"]
        if self.patient_reference:
            refs.append(f"{self.type}.{self.patient_reference}")
        return refs

    def compile(self, ref: str) -> ElementPath:
        """The element path of an attributeRef; raises ProfileError if the profile has no such element."""
        return _compile(self, ref)


def _split(ref: str) -> list[tuple[str, str | None]]:
    """`A.b[x]:slice.c` -> [(A, None), (b[x], slice), (c, None)]; slice names may contain dots only in
    no known profile, so a dot always separates elements."""
    parts = []
    for piece in ref.split("."):
        name, _, slice_name = piece.partition(":")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*(\[x\])?", name) or (_ and not slice_name):
            raise ProfileError(f"{ref!r} is not an element id")
        parts.append((name, slice_name or None))
    return parts


def _compile(profile: Profile, ref: str) -> ElementPath:
    model = element_model()
    parts = _split(ref)
    if parts[0][0] != profile.type or parts[0][1]:
        raise ProfileError(
            f"{ref!r} is not an element of {profile.type} (profile {profile.url})", code=2000002
        )
    current = profile.type
    steps: list[Step] = []
    prefix = profile.type
    for name, slice_name in parts[1:]:
        children = model.children(current)
        if children is not None and name not in children and f"{name}[x]" in children:
            name = f"{name}[x]"  # `Observation.value` for `Observation.value[x]`, as CRTDL examples write it
        if children is None or name not in children:
            raise ProfileError(
                f"{ref!r}: {prefix} has no element {name!r} (profile {profile.url})", code=2000002
            )
        spec = children[name]
        repeats = spec.endswith("[]")
        types = tuple(spec.removesuffix("[]").split("|"))
        element_id = f"{prefix}.{name}"
        where: tuple[tuple[str, str], ...] = ()
        if name.endswith("[x]"):
            base = name[:-3]
            keys = tuple(base + t[0].upper() + t[1:] for t in types) if types != ("*",) else ()
            if slice_name:
                if not slice_name.startswith(base) or slice_name not in keys:
                    raise ProfileError(f"{ref!r}: {slice_name!r} is not a type of {element_id}", code=2000002)
                keys = (slice_name,)
                types = (slice_name[len(base) :][0].lower() + slice_name[len(base) + 1 :],)
                types = tuple(t for t in spec.removesuffix("[]").split("|") if t.lower() == types[0].lower())
        else:
            keys = (name,)
            if slice_name:
                slice_id = f"{element_id}:{slice_name}"
                if name in ("extension", "modifierExtension"):
                    url = profile.extensions.get(slice_id)
                    if url is None:
                        raise ProfileError(
                            f"{ref!r}: the profile {profile.url} has no extension slice {slice_id!r}",
                            code=2000002,
                        )
                    where = (("url", url),)
                else:
                    pattern = profile.slices.get(slice_id)
                    if pattern is None:
                        raise ProfileError(
                            f"{ref!r}: the profile {profile.url} has no slice {slice_id!r}", code=2000002
                        )
                    where = tuple(sorted(pattern.items()))
        steps.append(Step(keys, types, repeats, where))
        prefix = f"{element_id}:{slice_name}" if slice_name else element_id
        backbone = _path_type(prefix)
        current = backbone if backbone in model.types else (types[0] if len(types) == 1 else "")
    return ElementPath(ref, tuple(steps))


def _path_type(element_id: str) -> str:
    """`Encounter.diagnosis:slice.condition` -> `Encounter.diagnosis.condition` (backbone type names)."""
    return ".".join(p.partition(":")[0] for p in element_id.split("."))


# --- the registry ------------------------------------------------------------------------------------


def _profile_from_digest(body: dict[str, Any]) -> Profile:
    return Profile(
        url=body["url"],
        type=body["type"],
        title=body.get("title") or body.get("name") or body["url"],
        required=tuple(body.get("required", ())),
        extensions=dict(body.get("extensions", {})),
        slices={k: dict(v) for k, v in body.get("slices", {}).items()},
        source=body.get("source", ""),
    )


def digest_structure_definition(sd: dict[str, Any]) -> dict[str, Any]:
    """A profile digest from a StructureDefinition with a snapshot: required elements (min >= 1 at any
    depth whose parents are in the snapshot), extension slices by their type profile, pattern slices by the
    fixed or pattern value at their discriminator path."""
    if sd.get("resourceType") != "StructureDefinition" or "snapshot" not in sd:
        raise ProfileError("not a StructureDefinition with a snapshot")
    elements = sd["snapshot"]["element"]
    required, extensions, slices = [], {}, {}
    discriminators: dict[str, list[str]] = {}
    for element in elements:
        element_id = element.get("id", "")
        if element.get("slicing"):
            discriminators[element_id] = [
                d.get("path", "") for d in element["slicing"].get("discriminator", [])
            ]
        last = element_id.rsplit(".", 1)[-1]
        if element.get("min", 0) >= 1 and element_id.count(".") == 1 and ":" not in element_id:
            required.append(element_id)
        if ":" in last:
            name = last.partition(":")[0]
            if name in ("extension", "modifierExtension"):
                for t in element.get("type", []):
                    for url in t.get("profile", []):
                        extensions[element_id] = url.split("|")[0]
            else:
                slices.setdefault(element_id, {})
    # pattern slices: the fixed/pattern value of each slice at its discriminator path
    for element in elements:
        element_id = element.get("id", "")
        for slice_id in slices:
            base = slice_id.rsplit(":", 1)[0]
            for path in discriminators.get(base, []):
                if element_id == f"{slice_id}.{path}" or (path == "$this" and element_id == slice_id):
                    for key, value in element.items():
                        if key.startswith(("fixed", "pattern")) and isinstance(value, str):
                            slices[slice_id][path] = value
                if element_id == slice_id:
                    for key, value in element.items():
                        if key.startswith("pattern") and isinstance(value, dict) and path in value:
                            slices[slice_id][path] = value[path]
                        if key == "patternCodeableConcept" and path.startswith("coding"):
                            for coding in value.get("coding", []):
                                for k in ("system", "code"):
                                    if f"coding.{k}" == path:
                                        slices[slice_id][path] = coding[k]
    return {
        "url": sd["url"],
        "type": sd["type"],
        "title": sd.get("title") or sd.get("name") or sd["url"],
        "source": f"digest of StructureDefinition {sd.get('id', '')} version {sd.get('version', '')}",
        "required": required,
        "extensions": extensions,
        "slices": {k: v for k, v in slices.items() if v},
    }


class Profiles:
    """The profiles a site knows: the shipped digests, then those of `profile_dirs` (digests or
    StructureDefinitions, `*.json`), a later one replacing an earlier one of the same URL."""

    def __init__(self, profile_dirs: Iterable[Path] = ()) -> None:
        self._by_url: dict[str, Profile] = {}
        shipped = resources.files(__package__).joinpath("data/profiles")
        for entry in sorted(shipped.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".json"):
                self.add(orjson.loads(entry.read_bytes()))
        for folder in profile_dirs:
            for path in sorted(Path(folder).glob("*.json")):
                self.add(orjson.loads(path.read_bytes()))

    def add(self, body: dict[str, Any]) -> Profile:
        if body.get("resourceType") == "StructureDefinition":
            body = digest_structure_definition(body)
        profile = _profile_from_digest(body)
        self._by_url[profile.url] = profile
        return profile

    def get(self, url: str) -> Profile | None:
        return self._by_url.get(url.split("|")[0])

    def __contains__(self, url: str) -> bool:
        return self.get(url) is not None

    def urls(self) -> list[str]:
        return sorted(self._by_url)


@functools.cache
def shipped_profiles() -> Profiles:
    return Profiles()
