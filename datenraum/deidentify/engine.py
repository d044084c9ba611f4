"""The de-identification engine: one transaction Bundle (or resource) at a time, in place, one walk.

`Deidentifier(profile, keys, pseudonyms)` turns the Bundles of an extraction job into their
de-identified form. Per resource: the module (keep-listed profiles) prunes to the keep-list; the id
becomes its pseudonym; then one walk over the resource applies the path rules (a trie per resource
type), the type rules (by element name: `address`, `telecom`, `note`, a person's `name`, `*Age`, ...),
rewrites every reference, removes `Reference.display`, turns identifiers into pseudonyms or removes
them, and shifts dates. A reference to a resource the profile dropped is removed with its element, and
counted: nothing is lost silently (fts#1916).

Ids: a shared resource (in `core.ndjson`, or of a shared type such as Medication) is namespaced by the
project; the others by the patient of their Bundle (FTS profile) or not at all (FDPG: the HMAC of the id,
as DIMP does). So every patient's reference to one Medication still joins.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections import Counter
from typing import Any, Protocol

from datenraum.deidentify.keys import ProjectKeys
from datenraum.deidentify.profile import DateShift, Profile, Rule

__all__ = ["Deidentifier", "Pseudonymizer", "shift_date"]

PERSON_TYPES = frozenset({"Patient", "Practitioner", "RelatedPerson", "Person"})
TYPE_KEYS = {
    "Address": ("address",),
    "ContactPoint": ("telecom",),
    "Annotation": ("note",),
    "Attachment": ("photo", "attachment", "valueAttachment"),
}
META_KEEP = ("profile", "security", "tag")
_DATE_NAMES = frozenset(
    {
        "date",
        "start",
        "end",
        "issued",
        "recorded",
        "authoredOn",
        "created",
        "timestamp",
        "dateAsserted",
        "whenHandedOver",
        "whenPrepared",
        "lastUpdated",
        "sent",
        "received",
    }
)
_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?)?)?$")


class Pseudonymizer(Protocol):
    def pseudonymize(self, domain: str, original: str) -> str: ...


def _is_date_key(key: str, cache: dict[str, bool] = {}) -> bool:  # noqa: B006 - a module-level cache
    found = cache.get(key)
    if found is None:
        found = cache[key] = key in _DATE_NAMES or key.endswith(("Date", "DateTime", "Instant"))
    return found


def shift_date(value: str, shift: dt.timedelta) -> str | None:
    """`value` (FHIR date, dateTime or instant) moved by `shift`, in its own precision and time zone;
    None when it is not a date. A year stays a year and a month a month unless the shift crosses it
    from the middle (more than 182 or 14 days)."""
    match = _DATE.match(value)
    if not match:
        return None
    year, month, day, time = match.groups()
    if month is None:
        return str((dt.datetime(int(year), 7, 2) + shift).year)
    if day is None:
        moved = dt.datetime(int(year), int(month), 15) + shift
        return f"{moved.year:04d}-{moved.month:02d}"
    if time is None:  # whole days, away from zero: a shift of hours must not leave the day as it was
        days = int(shift / dt.timedelta(days=1)) or (1 if shift > dt.timedelta(0) else -1 if shift else 0)
        moved = dt.datetime(int(year), int(month), int(day)) + dt.timedelta(days=days)
        return moved.date().isoformat()
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    fraction = re.match(r"T[0-9:]+\.(\d+)", time)
    digits = len(fraction.group(1)) if fraction else 0
    spec = "seconds" if not digits else "milliseconds" if digits <= 3 else "microseconds"
    out = (parsed + shift).isoformat(timespec=spec)
    if value.endswith("Z"):
        out = out.replace("+00:00", "Z")
    return out


class _Node:
    __slots__ = ("keep_kids", "kids", "rule")

    def __init__(self) -> None:
        self.rule: Rule | None = None
        self.kids: dict[str, _Node] = {}
        self.keep_kids: frozenset[str] = frozenset()

    def finish(self) -> None:
        self.keep_kids = frozenset(
            k for k, n in self.kids.items() if n.rule is None or n.rule.method != "redact"
        )
        for kid in self.kids.values():
            kid.finish()


_KEEP_ALL = object()


_CATCH, _AGE, _IDENTIFIER, _DATEKEY, _SKIP = 1, 2, 4, 8, 16
# elements that hold no reference, identifier, name or date (codes, quantities): not walked unless a
# path rule names something inside them
_NOTHING_INSIDE = frozenset({"coding", "valueQuantity", "quantity", "class", "valueCodeableConcept"})


class _Compiled:
    __slots__ = ("age", "all_dates", "catch", "classes", "keep", "narrative", "trie")

    def __init__(
        self, trie: _Node, catch: frozenset[str], age: bool, narrative: bool, keep: Any, all_dates: bool
    ) -> None:
        self.trie = trie
        self.catch = catch
        self.age = age
        self.narrative = narrative
        self.keep = keep
        self.all_dates = all_dates
        self.classes: dict[str, int] = {}

    def classify(self, key: str) -> int:
        code = 0
        if key in self.catch:
            code |= _CATCH
        if self.age and key.endswith("Age"):
            code |= _AGE
        if key == "identifier":
            code |= _IDENTIFIER
        if self.all_dates and _is_date_key(key):
            code |= _DATEKEY
        if key in _NOTHING_INSIDE:
            code |= _SKIP
        return code


def _keep_trie(paths: list[str]) -> dict[str, Any]:
    from datenraum.deidentify.profile import element_key

    root: dict[str, Any] = {}
    for path in paths:
        node = root
        steps = [element_key(s) for s in path.split(".")[1:]]
        for i, step in enumerate(steps):
            if i == len(steps) - 1:
                node[step] = _KEEP_ALL
            else:
                found = node.get(step)
                if found is _KEEP_ALL:
                    break
                node = node.setdefault(step, {})
    return root


def _prune(obj: dict[str, Any], trie: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in obj.items():
        sub = trie.get(key[1:] if key[0] == "_" else key)
        if sub is None:
            continue
        if sub is _KEEP_ALL:
            out[key] = value
            continue
        kind = type(value)
        if kind is dict:
            pruned = _prune(value, sub)
            if pruned:
                out[key] = pruned
        elif kind is list:
            items = [_prune(i, sub) if type(i) is dict else None for i in value]
            if any(items):
                out[key] = [i for i in items if i] if key[0] != "_" else items
    return out


class _Context:
    """One Bundle: its patient (None for shared resources), date shift and caches."""

    __slots__ = ("dropped", "engine", "ids", "patient", "salt", "shift")

    def __init__(self, engine: Deidentifier, patient: str | None, dropped: set[str]) -> None:
        self.engine = engine
        self.patient = patient
        self.dropped = dropped
        self.ids: dict[str, str | None] = {}
        self.salt = engine.keys.salt(patient) if patient is not None and engine.fts else ""
        self.shift = engine.shift_for(patient) if patient is not None and engine.date_shift else None

    def id(self, resource_type: str, original: str) -> str:
        engine = self.engine
        if not engine.fts:
            found = engine.shared_cache.get(original)
            if found is None:
                found = engine.shared_cache[original] = engine.keys.crypto_hash(original, engine.truncate)
            return found
        ref = f"{resource_type}/{original}"
        if self.patient is None or ref in engine.shared_ids or resource_type in engine.shared_types:
            found = engine.shared_cache.get(ref)
            if found is None:
                key = f"{engine.keys.project}.{ref.replace('/', ':', 1)}"
                found = hashlib.sha256((engine.project_salt + key).encode()).hexdigest()
                engine.shared_cache[ref] = found
            return found
        key = f"{self.patient}.{resource_type}:{original}"
        return hashlib.sha256((self.salt + key).encode()).hexdigest()

    def ref(self, value: str) -> str | None:
        """The pseudonymous form of a reference (`Type/id`, absolute, `urn:uuid:`), None when its
        target was dropped; `#contained` and unreadable references are left for the leak gate."""
        found = self.ids.get(value, False)
        if found is not False:
            return found
        if value.startswith("#"):
            out: str | None = value
        elif value.startswith("urn:uuid:"):
            out = "urn:uuid:" + self.id("urn", value[9:])
        else:
            parts = value.split("/")
            if len(parts) >= 4 and parts[-2] == "_history":
                parts = parts[:-2]
            if len(parts) < 2 or not parts[-2][:1].isupper():
                out = value
            elif f"{parts[-2]}/{parts[-1]}" in self.dropped or (
                f"{parts[-2]}/{parts[-1]}" in self.engine.shared_dropped
            ):
                out = None
            else:
                out = f"{parts[-2]}/{self.id(parts[-2], parts[-1])}"
        self.ids[value] = out
        return out


class Deidentifier:
    """De-identifies Bundles with one profile and one project's keys; counts what it did (`stats`)."""

    def __init__(self, profile: Profile, keys: ProjectKeys, pseudonyms: Pseudonymizer) -> None:
        self.profile = profile
        self.keys = keys
        self.pseudonyms = pseudonyms
        self.fts = profile.ids == "fts-sha256"
        self.truncate = profile.truncate
        self.keep_listed = profile.mode == "keep-listed"
        self.date_shift: DateShift | None = profile.date_shift
        self.shared_types = profile.shared_types
        self.shared_ids: set[str] = set()
        self.shared_cache: dict[str, str] = {}
        self.shared_dropped: set[str] = set()
        self.project_salt = keys.salt(f"project:{keys.project}")
        self.keep_systems = profile.keep_systems
        self.pseudonymize_types = profile.pseudonymize_types
        self.pseudonymize_all = profile.identifiers_otherwise == "pseudonymize"
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled | None] = {}
        self._type_rules = {r.type_rule for r in profile.rules if r.type_rule}
        self.stats: Counter[str] = Counter()
        self.resources_in: Counter[str] = Counter()
        self.resources_out: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()

    # --- compilation ---------------------------------------------------------------------------

    def _compile(self, resource_type: str, profiles: tuple[str, ...]) -> _Compiled | None:
        rules = [r for r in self.profile.rules if not r.type_rule]
        keep: Any = None
        if self.keep_listed:
            modules = [
                m
                for m in self.profile.modules
                if m.resource_type == resource_type
                and (m.profile is None or any(m.profile in p for p in profiles))
            ]
            if not modules:
                return None
            keep = _keep_trie([p for m in modules for p in m.keep])
            keep["resourceType"] = keep["id"] = _KEEP_ALL
            rules += [r for m in modules for r in m.rules]
        trie = _Node()
        for rule in rules:
            first, steps = rule.steps()
            if first not in ("*", resource_type):
                continue
            node = trie
            for step in steps:
                node = node.kids.setdefault(step, _Node())
            if node.rule is None:  # the first rule of a path wins
                node.rule = rule
        trie.finish()
        catch = set()
        for kind in self._type_rules:
            catch.update(TYPE_KEYS.get(kind, ()))
        if "HumanName" in self._type_rules and resource_type in PERSON_TYPES:
            catch.add("name")
        all_dates = bool(self.date_shift and self.date_shift.all_dates)
        age, narrative = "Age" in self._type_rules, "Narrative" in self._type_rules
        return _Compiled(trie, frozenset(catch), age, narrative, keep, all_dates)

    def compiled(self, resource: dict[str, Any]) -> _Compiled | None:
        meta = resource.get("meta")
        profiles = tuple(meta.get("profile", ())) if type(meta) is dict and self.keep_listed else ()
        key = (resource.get("resourceType", ""), profiles)
        if key not in self._compiled:
            self._compiled[key] = self._compile(*key)
        return self._compiled[key]

    def shift_for(self, patient: str) -> dt.timedelta:
        """The patient's date shift: derived from the project key, the same in every run; within
        [-max, +max] days (whole weeks under WEEKDAY, whole days under DAYTIME, seconds under NONE),
        never less than one day (one week under WEEKDAY): a shift of zero would leave the exact dates,
        the birth date among them."""
        shift = self.date_shift
        assert shift is not None
        seed = self.keys.shift_seed(f"{shift.label}|{patient}")
        sign = 1 if seed & 1 else -1
        seed >>= 1
        if shift.preserve == "WEEKDAY":
            return dt.timedelta(days=sign * 7 * (1 + seed % (shift.max_days // 7)))
        if shift.preserve == "DAYTIME":
            return dt.timedelta(days=sign * (1 + seed % shift.max_days))
        span = shift.max_days * 86400
        return dt.timedelta(seconds=sign * (86400 + seed % (span - 86400 + 1)))

    # --- Bundles -------------------------------------------------------------------------------

    def register_shared(self, bundle: dict[str, Any]) -> None:
        """Name the resources of a shared Bundle (core.ndjson) before any patient's Bundle refers to
        them."""
        for entry in bundle.get("entry", ()):
            resource = entry.get("resource") or {}
            self.shared_ids.add(f"{resource.get('resourceType')}/{resource.get('id')}")

    def bundle(self, bundle: dict[str, Any], *, shared: bool = False) -> dict[str, Any]:
        entries = bundle.get("entry") or []
        patient = None
        if not shared:
            patient = next(
                (
                    e["resource"]["id"]
                    for e in entries
                    if (e.get("resource") or {}).get("resourceType") == "Patient"
                ),
                None,
            )
        dropped: set[str] = set()
        compiled = []
        for entry in entries:
            resource = entry.get("resource") or {}
            kind = resource.get("resourceType", "?")
            self.resources_in[kind] += 1
            found = self.compiled(resource)
            compiled.append(found)
            if found is None:
                dropped.add(f"{kind}/{resource.get('id')}")
                self.dropped[kind] += 1
        if shared:
            self.shared_dropped |= dropped
        ctx = _Context(self, patient, dropped)
        out = []
        for entry, found in zip(entries, compiled, strict=True):
            if found is None:
                continue
            resource = self._resource(entry["resource"], found, ctx)
            new: dict[str, Any] = {}
            if "fullUrl" in entry:
                new["fullUrl"] = ctx.ref(entry["fullUrl"])
            new["resource"] = resource
            request = entry.get("request")
            if request is not None:
                new["request"] = {"method": request.get("method"), "url": ctx.ref(request.get("url", ""))}
            out.append(new)
        result = {"resourceType": "Bundle"}
        if "id" in bundle:
            result["id"] = self.keys.crypto_hash("Bundle/" + str(bundle["id"]), 32)
        result["type"] = bundle.get("type", "transaction")
        result["entry"] = out
        return result

    def _resource(self, resource: dict[str, Any], compiled: _Compiled, ctx: _Context) -> dict[str, Any]:
        kind = resource["resourceType"]
        if compiled.keep is not None:
            resource = _prune(resource, compiled.keep)
        if "id" in resource:
            resource["id"] = ctx.id(kind, resource["id"])
        meta = resource.get("meta")
        if meta is not None:
            kept = {k: meta[k] for k in META_KEEP if k in meta} if type(meta) is dict else {}
            if kept:
                resource["meta"] = kept
            else:
                del resource["meta"]
        if compiled.narrative and "text" in resource:
            del resource["text"]
        self._walk(resource, compiled.trie, compiled, ctx)
        self.resources_out[kind] += 1
        return resource

    # --- the walk ------------------------------------------------------------------------------

    def _walk(self, obj: dict[str, Any], node: _Node | None, compiled: _Compiled, ctx: _Context) -> bool:
        """Apply the rules to `obj` in place; False when `obj` is a reference to a dropped resource
        (the caller removes it)."""
        ref = obj.get("reference")
        if ref is not None and type(ref) is str:
            new = ctx.ref(ref)
            if new is None:
                self.stats["references removed (target dropped)"] += 1
                return False
            obj["reference"] = new
            obj.pop("display", None)
        remove = None
        classes = compiled.classes
        for key, value in obj.items():
            code = classes.get(key)
            if code is None:
                code = classes[key] = compiled.classify(key)
            child = node.kids.get(key) if node is not None else None
            if child is not None:
                if child.rule is not None:
                    if not self._apply(obj, key, value, child.rule, ctx):
                        remove = [*(remove or ()), key]
                        continue
                    value = obj[key]
            elif code & _SKIP:
                continue
            if code & _CATCH or (code & _AGE and type(value) is dict):
                keep = child.keep_kids if child is not None else ()
                if not keep:
                    remove = [*(remove or ()), key]
                    self.stats[f"redacted {key}"] += 1
                    continue
                for item in value if type(value) is list else (value,):
                    if type(item) is dict:
                        for k in [k for k in item if k not in keep]:
                            del item[k]
            if code & _IDENTIFIER:
                value = self._identifiers(value, obj, ctx)
                if value is None:
                    remove = [*(remove or ()), key]
                    continue
                obj[key] = value
            kind = type(value)
            if kind is dict:
                if self._walk(value, child, compiled, ctx) is False or not value:
                    remove = [*(remove or ()), key]
            elif kind is list:
                if value and type(value[0]) is dict:
                    kept = [i for i in value if type(i) is not dict or self._walk(i, child, compiled, ctx)]
                    if len(kept) != len(value):
                        if kept:
                            obj[key] = kept
                        else:
                            remove = [*(remove or ()), key]
            elif code & _DATEKEY and kind is str and ctx.shift is not None:
                moved = shift_date(value, ctx.shift)
                if moved is None:
                    remove = [*(remove or ()), key]
                else:
                    obj[key] = moved
                    self.stats["dates shifted"] += 1
        if remove:
            for key in remove:
                obj.pop(key, None)
                if key[0] != "_":
                    obj.pop("_" + key, None)
        return True

    def _apply(self, obj: dict[str, Any], key: str, value: Any, rule: Rule, ctx: _Context) -> bool:
        """Apply one path rule to obj[key]; False to remove the element."""
        method = rule.method
        self.stats[f"{method} {rule.path}"] += 1
        if method == "keep":
            return True
        if method == "redact":
            return False
        if method == "dateShift":
            if ctx.shift is None:
                return True
            fn = lambda v: shift_date(v, ctx.shift)  # noqa: E731
        elif method == "generalize":
            fn = _generalizer(rule)
        elif method == "replace":
            fn = lambda v: rule.params.get("value", "")  # noqa: E731
        elif method == "cryptoHash":
            fn = lambda v: self.keys.crypto_hash(v, int(rule.params.get("truncate", 32)))  # noqa: E731
        else:  # pseudonymize
            domain = rule.params.get("domain", self.keys.project)
            fn = lambda v: self.pseudonyms.pseudonymize(domain, v)  # noqa: E731
        new = _map(value, fn)
        if new is None:
            return False
        obj[key] = new
        return True

    def _identifiers(self, value: Any, owner: dict[str, Any], ctx: _Context) -> Any:
        single = type(value) is dict
        out = []
        for identifier in (value,) if single else value:
            if type(identifier) is not dict:
                continue
            system = identifier.get("system")
            if system in self.keep_systems:
                out.append(identifier)
                continue
            original = identifier.get("value")
            codes = {
                c.get("code") for c in ((identifier.get("type") or {}).get("coding") or ()) if type(c) is dict
            }
            if type(original) is str and (self.pseudonymize_all or codes & self.pseudonymize_types):
                new = {k: identifier[k] for k in ("use", "type", "system") if k in identifier}
                new["value"] = self._identifier_pseudonym(system or "", original, owner, ctx)
                self.stats["identifiers pseudonymized"] += 1
                out.append(new)
            else:
                self.stats["identifiers redacted"] += 1
        if not out:
            return None
        return out[0] if single else out

    def _identifier_pseudonym(self, system: str, value: str, owner: dict[str, Any], ctx: _Context) -> str:
        if not self.fts or owner.get("resourceType") == "Patient" or ctx.patient is None:
            return self.pseudonyms.pseudonymize(self.keys.project, f"{system}|{value}")
        key = f"{ctx.patient}.identifier.{system}:{value}"
        return hashlib.sha256((ctx.salt + key).encode()).hexdigest()


def _map(value: Any, fn: Any) -> Any:
    if type(value) is str:
        return fn(value)
    if type(value) is list:
        out = [fn(v) if type(v) is str else v for v in value]
        out = [v for v in out if v is not None]
        return out or None
    if type(value) is dict:  # a Period (dateShift)
        for k in ("start", "end"):
            if type(value.get(k)) is str:
                moved = fn(value[k])
                if moved is None:
                    del value[k]
                else:
                    value[k] = moved
        return value or None
    return value


def _generalizer(rule: Rule) -> Any:
    to = rule.params["to"]
    if to == "year-month":
        return lambda v: v[:7]
    if to == "day-15":
        return lambda v: v[:7] + "-15" if len(v) >= 7 else v
    if to == "postal-prefix":
        digits = int(rule.params.get("digits", 2))
        return lambda v: v[:digits]
    return lambda v: v[:3] if len(v) == 5 and v.isdigit() else None  # postal-fts
