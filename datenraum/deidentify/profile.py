"""A de-identification profile: a declarative rule set over FHIR paths, per project.

A profile (JSON, `profiles/fdpg.json`; or a DeidentiFHIR configuration folder of FTSnext) says

- `ids`: how resource ids (and with them every reference, `fullUrl`, `request.url`) become pseudonyms:
  `hmac-sha256` (FDPG: first `truncate` hex characters of HMAC-SHA256(project key, id)) or `fts-sha256`
  (FTSnext: SHA-256 of the patient's salt and `<patient>.<Type>:<id>`). Shared resources (core.ndjson,
  `sharedTypes`) are namespaced by the project, not the patient, so that every patient's references to
  one Medication or Organization still join;
- `mode`: `redact-listed` (everything is kept except what the rules remove: FDPG) or `keep-listed`
  (only the elements of a matching module's keep-list survive, everything else is removed: FTSnext);
- `rules`: `{path, method, ...}` with methods `keep`, `redact`, `cryptoHash` (`truncate`),
  `pseudonymize` (`domain`), `generalize` (`to`: `year-month`, `day-15`, `postal-prefix` with `digits`,
  `postal-fts`), `replace` (`value`), `dateShift`. A path is `Type.element.element` (`*` for any type;
  choice elements as `value[Quantity]`) or a type rule `nodesByType('Address'|'HumanName'|'ContactPoint'|
  'Annotation'|'Age'|'Narrative')`. A path rule beats a type rule: a type rule `redact` on a node keeps
  the children that path rules of the same node name (FDPG's "rules before the catch-all");
- `identifiers`: what happens to each Identifier (also inside references): `keepSystems`,
  `pseudonymizeTypes` (v2-0203 / ObservationValue codes), `otherwise` (`redact` or `pseudonymize`);
- `dateShift`: `{max: "P14D", preserve: NONE|WEEKDAY|DAYTIME, allDates: bool}`: one shift per patient
  derived from the project key, the same in every run; `dateShift` rules name the paths (or `allDates`).

Invariants of every profile (not configurable, the leak gate checks them): every id and reference is
rewritten and registered, `Reference.display` and `meta` other than profile/security/tag are removed, a
resource's `text` (narrative) is removed, an identifier value leaves only as a pseudonym.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from datenraum.deidentify import hocon

__all__ = ["PROFILES", "DateShift", "Module", "Profile", "ProfileError", "Rule", "load_profile"]

HERE = Path(__file__).parent / "profiles"
PROFILES = ("fdpg", "fts")
METHODS = {"keep", "redact", "cryptoHash", "pseudonymize", "generalize", "replace", "dateShift"}
TYPE_RULES = {"Address", "HumanName", "ContactPoint", "Annotation", "Age", "Narrative", "Attachment"}
GENERALIZE = {"year-month", "day-15", "postal-prefix", "postal-fts"}
PRESERVE = {"NONE", "WEEKDAY", "DAYTIME"}
_DURATION = re.compile(r"^P(?:(\d+)W)?(?:(\d+)D)?$")
_TYPE_RULE = re.compile(r"^nodesByType\('([A-Za-z]+)'\)$")
_CHOICE = re.compile(r"^([a-z][A-Za-z0-9]*)\[([A-Za-z]+)\]$")


class ProfileError(ValueError):
    pass


@dataclass(frozen=True)
class Rule:
    path: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def type_rule(self) -> str | None:
        match = _TYPE_RULE.match(self.path)
        return match.group(1) if match else None

    def steps(self) -> tuple[str, list[str]]:
        """(resource type or '*', element keys) of a path rule."""
        parts = self.path.split(".")
        return parts[0], [element_key(p) for p in parts[1:]]


@dataclass(frozen=True)
class DateShift:
    max_days: int
    preserve: str = "NONE"
    all_dates: bool = False

    @property
    def label(self) -> str:
        return f"P{self.max_days}D/{self.preserve}"


@dataclass(frozen=True)
class Module:
    """A keep-listed module (DeidentiFHIR): which resources (type, profile contained in meta.profile),
    which elements survive, and the handlers of its paths."""

    name: str
    resource_type: str
    profile: str | None
    keep: tuple[str, ...]
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Profile:
    name: str
    ids: str = "hmac-sha256"
    truncate: int = 32
    mode: str = "redact-listed"
    rules: tuple[Rule, ...] = ()
    modules: tuple[Module, ...] = ()
    keep_systems: frozenset[str] = frozenset()
    pseudonymize_types: frozenset[str] = frozenset()
    identifiers_otherwise: str = "redact"
    shared_types: frozenset[str] = frozenset()
    date_shift: DateShift | None = None
    description: str = ""

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ids": self.ids,
            "mode": self.mode,
            "rules": len(self.rules),
            "modules": [m.name for m in self.modules],
            "dateShift": self.date_shift.label if self.date_shift else None,
        }


def element_key(step: str) -> str:
    """`value[Quantity]` -> `valueQuantity`; `deceased[boolean]` -> `deceasedBoolean`."""
    match = _CHOICE.match(step)
    if match:
        return match.group(1) + match.group(2)[0].upper() + match.group(2)[1:]
    return step


def parse_duration(text: str) -> int:
    match = _DURATION.match(text or "")
    if not match or not any(match.groups()):
        raise ProfileError(f"maxDateShift {text!r}: expected days or weeks, e.g. P14D or P2W")
    return int(match.group(1) or 0) * 7 + int(match.group(2) or 0)


def _rule(data: Any, where: str) -> Rule:
    if not isinstance(data, dict) or not isinstance(data.get("path"), str):
        raise ProfileError(f"{where}: a rule needs a path")
    method = data.get("method")
    if method not in METHODS:
        raise ProfileError(f"{where}: unknown method {method!r} (known: {', '.join(sorted(METHODS))})")
    params = {k: v for k, v in data.items() if k not in ("path", "method")}
    rule = Rule(data["path"], method, params)
    kind = rule.type_rule
    if kind is not None:
        if kind not in TYPE_RULES:
            raise ProfileError(f"{where}: nodesByType({kind!r}) is not supported")
        if method != "redact":
            raise ProfileError(f"{where}: a type rule can only redact")
    elif len(rule.path.split(".")) < 2 or not re.match(r"^(\*|[A-Z][A-Za-z]+)$", rule.path.split(".")[0]):
        raise ProfileError(f"{where}: path {rule.path!r} must be Type.element[.element...]")
    if method == "generalize" and params.get("to") not in GENERALIZE:
        raise ProfileError(f"{where}: generalize needs `to` of {sorted(GENERALIZE)}")
    return rule


def _date_shift(data: Any, where: str) -> DateShift | None:
    if data is None:
        return None
    preserve = data.get("preserve", "NONE")
    if preserve not in PRESERVE:
        raise ProfileError(f"{where}: preserve must be one of {sorted(PRESERVE)}")
    days = parse_duration(data.get("max", ""))
    if days < 1:
        raise ProfileError(f"{where}: the maximum date shift must be at least one day")
    if preserve == "WEEKDAY" and days < 7:
        raise ProfileError(f"{where}: WEEKDAY needs a maximum shift of at least 7 days")
    return DateShift(days, preserve, bool(data.get("allDates", False)))


def profile_from_json(data: dict[str, Any], name: str, modules: tuple[Module, ...] = ()) -> Profile:
    rules = tuple(_rule(r, f"{name}: rules[{i}]") for i, r in enumerate(data.get("rules", [])))
    identifiers = data.get("identifiers", {})
    ids = data.get("ids", "hmac-sha256")
    if ids not in ("hmac-sha256", "fts-sha256"):
        raise ProfileError(f"{name}: ids must be hmac-sha256 or fts-sha256")
    mode = data.get("mode", "redact-listed")
    if mode not in ("redact-listed", "keep-listed"):
        raise ProfileError(f"{name}: mode must be redact-listed or keep-listed")
    otherwise = identifiers.get("otherwise", "redact")
    if otherwise not in ("redact", "pseudonymize"):
        raise ProfileError(f"{name}: identifiers.otherwise must be redact or pseudonymize")
    return Profile(
        name=name,
        ids=ids,
        truncate=int(data.get("truncate", 32)),
        mode=mode,
        rules=rules,
        modules=modules + tuple(_module_json(m, name) for m in data.get("modules", [])),
        keep_systems=frozenset(identifiers.get("keepSystems", [])),
        pseudonymize_types=frozenset(identifiers.get("pseudonymizeTypes", [])),
        identifiers_otherwise=otherwise,
        shared_types=frozenset(data.get("sharedTypes", [])),
        date_shift=_date_shift(data.get("dateShift"), name),
        description=data.get("description", ""),
    )


def _module_json(data: dict[str, Any], where: str) -> Module:
    rules = tuple(_rule(r, f"{where}: module {data.get('name')}") for r in data.get("rules", []))
    return Module(data["name"], data["resourceType"], data.get("profile"), tuple(data["keep"]), rules)


# --- FTSnext / DeidentiFHIR ----------------------------------------------------------------------

# DeidentiFHIR handler -> our rule (None: the engine's invariant does it for every id/reference/identifier)
FTS_HANDLERS: dict[str, dict[str, Any] | None] = {
    "idReplacementHandler": None,
    "referenceReplacementHandler": None,
    "identifierValueReplacementHandler": None,
    "postalCodeHandler": {"method": "generalize", "to": "postal-fts"},
    "generalizeDateHandler": {"method": "generalize", "to": "day-15"},
    "PSEUDONYMISIERTstringReplacementHandler": {"method": "replace", "value": "PSEUDONYMISIERT"},
    "shiftDateHandler": {"method": "dateShift"},
}
_PATTERN = re.compile(r"^([A-Z][A-Za-z]+)\.meta\.profile contains '([^']+)'$")


def read_deidentifhir(folder: Path, profile_file: str = "CDtoTransport.profile") -> tuple[Module, ...]:
    """The modules of a DeidentiFHIR profile (FTSnext's clinical-domain configuration)."""
    path = folder / profile_file
    if not path.is_file():
        raise ProfileError(f"{folder}: no {profile_file}")
    try:
        document = hocon.load(path)
    except hocon.HoconError as error:
        raise ProfileError(str(error)) from None
    modules = []
    for name, module in sorted(document.get("modules", {}).items()):
        match = _PATTERN.match(module.get("pattern", ""))
        if not match:
            raise ProfileError(f"{path}: module {name}: pattern {module.get('pattern')!r} not understood")
        rules = []
        for rule_path, spec in sorted(module.get("paths", {}).items()):
            handler = spec.get("handler") if isinstance(spec, dict) else None
            if handler not in FTS_HANDLERS:
                raise ProfileError(f"{path}: module {name}: unknown handler {handler!r} at {rule_path}")
            if FTS_HANDLERS[handler] is not None:
                rules.append(_rule({"path": rule_path, **FTS_HANDLERS[handler]}, f"{path}: {name}"))
        modules.append(
            Module(name, match.group(1), match.group(2), tuple(module.get("base", [])), tuple(rules))
        )
    return tuple(modules)


def load_profile(
    name: str,
    *,
    fts_config: Path | None = None,
    max_date_shift: str | None = None,
    date_shift_preserve: str | None = None,
) -> Profile:
    """A shipped profile (`fdpg`, `fts`) or a profile JSON file; the FTS profile reads a DeidentiFHIR
    folder (default: the shipped copy of FTSnext's test configuration) and takes the project's
    `maxDateShift` / `dateShiftPreserve` as FTSnext's project file does."""
    if name in PROFILES:
        data = orjson.loads((HERE / f"{name}.json").read_bytes())
    else:
        try:
            data = orjson.loads(Path(name).read_bytes())
        except (OSError, orjson.JSONDecodeError) as error:
            raise ProfileError(f"profile {name}: {error}") from None
        name = data.get("name", Path(name).stem)
    modules: tuple[Module, ...] = ()
    if data.get("deidentifhir") is not None or fts_config is not None:
        folder = fts_config or HERE / data["deidentifhir"]
        modules = read_deidentifhir(Path(folder))
    if max_date_shift is not None or date_shift_preserve is not None:
        shift = dict(data.get("dateShift") or {"max": "P14D"})
        if max_date_shift is not None:
            shift["max"] = max_date_shift
        if date_shift_preserve is not None:
            shift["preserve"] = date_shift_preserve
        data = {**data, "dateShift": shift}
    return profile_from_json(data, name, modules)
