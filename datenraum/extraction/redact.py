"""Copy the selected elements of a resource, then redact the copy to its profile (TORCH's semantics,
`torch:docs/implementation/redaction.md`, brief §3.3).

- `Selection`: the union of a group's element paths as a trie. Selecting an element selects its subtree;
  a slice selects only the list items its discriminator matches, and selecting below a slice copies the
  discriminator too (so the output still says which slice an item is).
- `select(resource, selection)`: the selected part of `resource` (`resourceType` and `id` always).
- `redact(resource, profile, ...)`: keep only elements FHIR R4 defines for the type, only extensions the
  profile declares (and data-absent-reason), drop references to resources outside the extraction (when
  `known` is given) and references to types that are not FHIR resources (masked), drop empty elements,
  and give every required element that ended up empty a data-absent-reason extension, code `masked`
  (`_recordedDate` for a primitive, `subject.extension` for a complex element).

Both functions build new objects and never modify their input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from datenraum.extraction.profiles import DAR_URL, ElementPath, Profile, element_model, is_primitive
from datenraum.fhir.resource_types import R4_RESOURCE_TYPES

__all__ = ["MASKED", "Selection", "redact", "select"]

MASKED = {"extension": [{"url": DAR_URL, "valueCode": "masked"}]}


def _masked() -> dict[str, Any]:
    return {"extension": [{"url": DAR_URL, "valueCode": "masked"}]}


@dataclass
class Selection:
    full: bool = False
    children: dict[str, list[tuple[tuple[tuple[str, str], ...], Selection]]] = field(default_factory=dict)

    @classmethod
    def of(cls, paths: Iterable[ElementPath]) -> Selection:
        root = cls()
        for path in paths:
            root.add(path)
        return root

    def add(self, path: ElementPath) -> None:
        nodes = [self]
        for step in path.steps:
            following = []
            for node in nodes:
                if node.full:
                    continue
                for key in step.keys:
                    entries = node.children.setdefault(key, [])
                    child = next((c for where, c in entries if where == step.where), None)
                    if child is None:
                        child = Selection()
                        entries.append((step.where, child))
                        for discriminator, _ in step.where:
                            child._add_dotted(discriminator)
                    following.append(child)
            nodes = following
        for node in nodes:
            node.full = True
            node.children = {}

    def _add_dotted(self, dotted: str) -> None:
        node = self
        for part in dotted.split("."):
            if node.full:
                return
            entries = node.children.setdefault(part, [])
            if not entries:
                entries.append(((), Selection()))
            node = entries[0][1]
        node.full = True
        node.children = {}

    def merged(self, other: Selection) -> Selection:
        if self.full or other.full:
            return Selection(full=True)
        children = {k: list(v) for k, v in self.children.items()}
        for key, entries in other.children.items():
            children.setdefault(key, []).extend(entries)
        return Selection(children=children)


def _values(node: Any, dotted: str) -> list[Any]:
    current = [node]
    for part in dotted.split("."):
        following = []
        for value in current:
            if isinstance(value, dict) and part in value:
                item = value[part]
                following.extend(item if isinstance(item, list) else [item])
        current = following
    return current


def _matches(item: Any, where: tuple[tuple[str, str], ...]) -> bool:
    return all(value in _values(item, path) for path, value in where)


def _copy(value: Any, node: Selection) -> Any:
    if node.full:
        return value
    if not isinstance(value, dict):
        return None
    out: dict[str, Any] = {}
    for key, entries in node.children.items():
        if key not in value:
            if f"_{key}" in value and any(child.full for _, child in entries):
                out[f"_{key}"] = value[f"_{key}"]
            continue
        item = value[key]
        if isinstance(item, list):
            copied = [c for c in (_copy_item(i, entries) for i in item) if c not in (None, {}, [])]
            if copied:
                out[key] = copied
        else:
            copied = _copy_item(item, entries)
            if copied not in (None, {}, []):
                out[key] = copied
        if f"_{key}" in value and any(child.full for _, child in entries):
            out[f"_{key}"] = value[f"_{key}"]
    return out


def _copy_item(item: Any, entries: list[tuple[tuple[tuple[str, str], ...], Selection]]) -> Any:
    matching = [child for where, child in entries if not where or _matches(item, where)]
    if not matching:
        return None
    node = matching[0]
    for other in matching[1:]:
        node = node.merged(other)
    return _copy(item, node)


def select(resource: dict[str, Any], selection: Selection) -> dict[str, Any]:
    """The selected elements of `resource` (shared with it, not copied: `redact` builds the new object)."""
    out = {"resourceType": resource["resourceType"]}
    if "id" in resource:
        out["id"] = resource["id"]
    copied = _copy(resource, selection)
    if isinstance(copied, dict):
        for key, value in copied.items():
            out.setdefault(key, value)
    return out


# --- redaction -------------------------------------------------------------------------------------


@dataclass
class _Redactor:
    allowed_extensions: frozenset[str]
    reference_allowed: Callable[[str], bool] | None
    resource_types: frozenset[str]

    def element(self, value: Any, type_name: str) -> Any:
        if type_name == "Extension" or type_name[:1].islower():  # an extension or a primitive
            return value
        if not isinstance(value, dict):
            return None
        model = _model_of(type_name)
        if model is None:  # a complex type we do not model (Timing.repeat, ...): kept as selected
            return self.extensions_only(value)
        children, specs = model
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "resourceType":
                continue
            if key.startswith("_"):
                spec = _spec(children, key[1:], specs)
                if spec is None:
                    continue
                repeats, _ = spec
                cleaned = (
                    [self.primitive_element(x) for x in item]
                    if repeats and isinstance(item, list)
                    else self.primitive_element(item)
                )
                if cleaned not in (None, {}, []) and (
                    not isinstance(cleaned, list) or any(c for c in cleaned)
                ):
                    out[key] = cleaned
                continue
            if key in ("extension", "modifierExtension"):
                kept = (
                    [e for e in item if isinstance(e, dict) and e.get("url") in self.allowed_extensions]
                    if isinstance(item, list)
                    else []
                )
                if kept:
                    out[key] = kept
                continue
            spec = _spec(children, key, specs)
            if spec is None:
                continue
            repeats, item_type = spec
            # A primitive or an extension is kept as it is: decided here, not by a call per value.
            leaf = item_type[:1].islower() or item_type == "Extension"
            if repeats:
                items = item if isinstance(item, list) else [item]
                if leaf:
                    cleaned = [i for i in items if i not in (None, {}, [])]
                else:
                    cleaned = [
                        c for c in (self.element(i, item_type) for i in items) if c not in (None, {}, [])
                    ]
                if cleaned:
                    out[key] = cleaned
            else:
                if isinstance(item, list):
                    item = item[0] if item else None
                cleaned = item if leaf else self.element(item, item_type)
                if cleaned not in (None, {}, []):
                    out[key] = cleaned
        if type_name == "Reference":
            self.reference(out)
        return out

    def primitive_element(self, value: Any) -> Any:
        if not isinstance(value, dict):
            return None
        return self.extensions_only(value)

    def extensions_only(self, value: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in value.items() if k not in ("extension", "modifierExtension")}
        for key in ("extension", "modifierExtension"):
            kept = [
                e
                for e in value.get(key, [])
                if isinstance(e, dict) and e.get("url") in self.allowed_extensions
            ]
            if kept:
                out[key] = kept
        return out

    def reference(self, ref: dict[str, Any]) -> None:
        target = ref.get("reference")
        if not isinstance(target, str):
            return
        kind, _, ident = target.partition("/")
        if ident and "/" not in ident and ":" not in kind and kind not in self.resource_types:
            # not a FHIR resource type at all: TORCH masks the reference
            del ref["reference"]
            ref["_reference"] = _masked()
        elif self.reference_allowed is not None and not self.reference_allowed(target):
            del ref["reference"]


_SPECS: dict[int, tuple[dict[str, str], dict[str, tuple[bool, str] | None]]] = {}
# Per type name its element model's children and their `_spec` memo: redaction asks for them once per
# element of every resource it writes, so the lookup is one dict access.
_MODELS: dict[str, tuple[dict[str, str], dict[str, tuple[bool, str] | None]] | None] = {}


def _model_of(type_name: str) -> tuple[dict[str, str], dict[str, tuple[bool, str] | None]] | None:
    try:
        return _MODELS[type_name]
    except KeyError:
        children = element_model().children(type_name)
        found = _MODELS[type_name] = None if children is None else (children, _specs_of(children))
        return found


def _specs_of(children: dict[str, str]) -> dict[str, tuple[bool, str] | None]:
    """The memo of `_spec` answers for one element model dict (made once per type, so kept by the
    dict's identity; the entry holds the dict, so its id is not reused)."""
    entry = _SPECS.get(id(children))
    if entry is None or entry[0] is not children:
        entry = _SPECS[id(children)] = (children, {})
    return entry[1]


def _spec(
    children: dict[str, str], key: str, specs: dict[str, tuple[bool, str] | None] | None = None
) -> tuple[bool, str] | None:
    """(repeats, type) of the JSON key `key` of an element with `children`."""
    if specs is None:
        specs = _specs_of(children)
    try:
        return specs[key]
    except KeyError:
        found = specs[key] = _compute_spec(children, key)
        return found


def _compute_spec(children: dict[str, str], key: str) -> tuple[bool, str] | None:
    spec = children.get(key)
    if spec is None:
        for name, choice in children.items():
            if name.endswith("[x]") and key.startswith(name[:-3]):
                suffix = key[len(name) - 3 :]
                for t in choice.removesuffix("[]").split("|"):
                    if t == "*" or (t[0].upper() + t[1:]) == suffix:
                        return choice.endswith("[]"), (t if t != "*" else "Element")
        return None
    return spec.endswith("[]"), spec.removesuffix("[]").split("|")[0]


# Per combination of matched profiles (kept with the profiles, so their ids are not reused): the
# extensions they allow, and per resource type the required top-level elements as (the JSON keys any of
# which fills it, the key a mask goes to, the mask's shape).
_ALLOWED: dict[tuple[int, ...], tuple[list[Profile], frozenset[str], dict[str, list[_Mask]]]] = {}


@dataclass(frozen=True)
class _Mask:
    present: tuple[str, ...]
    key: str
    shape: str  # "primitive" (`_key`), "list" or "single"


def _masks(matched: list[Profile], type_name: str) -> list[_Mask]:
    children = element_model().children(type_name) or {}
    masks: dict[str, _Mask] = {}
    for p in matched:
        for element_id in p.required:
            parts = element_id.split(".")
            if len(parts) != 2 or parts[0] != type_name or parts[1] in masks:
                continue
            name = parts[1]
            spec = children.get(name)
            if spec is None:
                continue
            types = spec.removesuffix("[]").split("|")
            choices = tuple(name[:-3] + t[0].upper() + t[1:] for t in types)
            keys = choices if name.endswith("[x]") else (name,)
            shape = "primitive" if is_primitive(types[0]) else "list" if spec.endswith("[]") else "single"
            masks[name] = _Mask(keys + tuple(f"_{k}" for k in keys), keys[0], shape)
    return list(masks.values())


def redact(
    resource: dict[str, Any],
    profile: Profile,
    *,
    profiles: Iterable[Profile] = (),
    reference_allowed: Callable[[str], bool] | None = None,
) -> dict[str, Any]:
    """`resource` redacted to `profile` (and the other matched `profiles`, whose extensions and required
    elements count too): see the module docstring. `reference_allowed(Type/id)` says whether a reference
    target is part of the extraction; None keeps every well-formed reference."""
    matched = [profile, *[p for p in profiles if p.url != profile.url]]
    key = tuple(id(p) for p in matched)
    cached = _ALLOWED.get(key)
    if cached is None or any(a is not b for a, b in zip(cached[0], matched, strict=True)):
        allowed = frozenset().union(*(p.extension_urls for p in matched))
        cached = _ALLOWED[key] = (matched, allowed, {})
    redactor = _Redactor(cached[1], reference_allowed, R4_RESOURCE_TYPES)
    type_name = resource["resourceType"]
    body = redactor.element(resource, type_name) or {}
    out: dict[str, Any] = {"resourceType": type_name, **body}
    masks = cached[2].get(type_name)
    if masks is None:
        masks = cached[2][type_name] = _masks(matched, type_name)
    for mask in masks:
        if any(k in out for k in mask.present):
            continue
        if mask.shape == "primitive":
            out[f"_{mask.key}"] = _masked()
        elif mask.shape == "list":
            out[mask.key] = [_masked()]
        else:
            out[mask.key] = _masked()
    return out
