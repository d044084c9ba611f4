"""The indicator registry: diseases and indicators as declarative files, checked and versioned.

A disease (`registry/diseases/<id>.json`) names its marker: ICD-10-GM codes (with the diagnostic
reliabilities that exclude a diagnosis, e.g. "A"), the LOINC codes of its tests (a positive result marks
the patient), the day its series start and the marker window before admission. An indicator
(`registry/indicators/*.json`) is one of a closed set of computation kinds (`KINDS`, computed at the
site by `datenraum.site.indicators`), with a time bucket (day or ISO week), its strata and parameters.
Every indicator applies to every disease: the registry is disease-agnostic, and a new disease is one
file (or one form in the portal's crisis mode, validated by the same `parse_disease`).

`Registry.version` is a hash of the canonical JSON of everything, so that a site's cube names exactly
the definitions it was computed with.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = [
    "BUCKETS",
    "KINDS",
    "STRATA",
    "Care",
    "DefinitionError",
    "Disease",
    "Indicator",
    "Registry",
    "default_registry",
    "parse_disease",
    "parse_indicator",
]

REGISTRY = Path(__file__).with_name("registry")

#: The computation kinds a site knows, with the parameters each takes (name -> type).
KINDS: Mapping[str, Mapping[str, type]] = MappingProxyType(
    {
        "new_cases": {},
        "occupancy": {},
        "occupancy_at_least": {"min_level": str},
        "icu_admissions": {},
        "deaths": {},
        "tests": {"positive": bool},
        "length_of_stay": {},
        "severity": {"within_days": int},
        "sari": {"with_marker": bool},
    }
)
BUCKETS = ("day", "iso_week")
#: Strata dimensions, in the order of a cube's columns.
STRATA = ("level", "sex", "age_rki", "state", "los_bin")
#: Which kinds a stratum dimension makes sense for (level only for occupancy, los_bin only for LOS).
_ONLY_FOR = {"level": {"occupancy"}, "los_bin": {"length_of_stay"}}
_REQUIRED = {"occupancy": "level", "length_of_stay": "los_bin"}

_ID = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
_ICD = re.compile(r"^[A-Z][0-9]{2}(\.[0-9]{1,2})?$")
_LOINC = re.compile(r"^[0-9]{1,7}-[0-9]$")
_CERTAINTY = frozenset({"A", "G", "V", "Z"})


class DefinitionError(ValueError):
    """A disease or indicator definition that cannot be used; the text names the field."""


@dataclass(frozen=True)
class Disease:
    id: str
    title: str
    start: dt.date
    icd10gm: tuple[str, ...]
    excluded_certainty: tuple[str, ...]
    positive_loinc: tuple[str, ...]
    before_days: int = 7
    suspected_icd10gm: tuple[str, ...] = ()
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": {"en": self.title},
            "start": self.start.isoformat(),
            "marker": {
                "icd10gm": list(self.icd10gm),
                "excluded_certainty": list(self.excluded_certainty),
                "positive_loinc": list(self.positive_loinc),
                "suspected_icd10gm": list(self.suspected_icd10gm),
            },
            "window": {"before_days": self.before_days},
            "source": self.source,
        }


@dataclass(frozen=True)
class Indicator:
    id: str
    code: str
    title: str
    kind: str
    bucket: str
    #: Each a tuple of dimensions the indicator is broken down by (besides the total, always computed,
    #: except for kinds with a required dimension).
    strata: tuple[tuple[str, ...], ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    public: bool = True

    @property
    def dimensions(self) -> tuple[str, ...]:
        """Every dimension of any stratum, in cube column order."""
        used = {d for stratum in self.strata for d in stratum}
        return tuple(d for d in STRATA if d in used)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "code": self.code,
            "title": {"en": self.title},
            "description": self.description,
            "kind": self.kind,
            "bucket": self.bucket,
            "strata": [list(s) for s in self.strata],
            "params": dict(self.params),
            "public": self.public,
        }


@dataclass(frozen=True)
class Care:
    """Disease-independent definitions: ICU departments, ventilation and ECMO codes, bins."""

    icu_departments: tuple[str, ...]
    ventilation_snomed: tuple[str, ...]
    ventilation_ops_prefixes: tuple[str, ...]
    ecmo_snomed: tuple[str, ...]
    ecmo_ops_prefixes: tuple[str, ...]
    sari_prefixes: tuple[str, ...]
    levels: tuple[str, ...]
    los_bins: tuple[tuple[int, int | None, str], ...]
    age_rki: tuple[tuple[int, int | None, str], ...]
    sex: Mapping[str, str]
    leitregion: Mapping[str, str]
    states: Mapping[str, Mapping[str, str]]

    def to_json(self) -> dict[str, Any]:
        return {
            "icu_departments": list(self.icu_departments),
            "ventilation": {
                "snomed": list(self.ventilation_snomed),
                "ops": list(self.ventilation_ops_prefixes),
            },
            "ecmo": {"snomed": list(self.ecmo_snomed), "ops": list(self.ecmo_ops_prefixes)},
            "sari": list(self.sari_prefixes),
            "levels": list(self.levels),
            "los_bins": [list(b) for b in self.los_bins],
            "age_rki": [list(b) for b in self.age_rki],
            "sex": dict(self.sex),
            "leitregion": dict(self.leitregion),
        }


@dataclass(frozen=True)
class Registry:
    diseases: Mapping[str, Disease]
    indicators: Mapping[str, Indicator]
    care: Care

    @functools.cached_property
    def version(self) -> str:
        """A short hash of every definition: equal versions compute equal cubes from equal data."""
        document = self.to_json(with_version=False)
        digest = hashlib.sha256(json.dumps(document, sort_keys=True, ensure_ascii=False).encode())
        return digest.hexdigest()[:16]

    def to_json(self, *, with_version: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "diseases": [d.to_json() for d in self.diseases.values()],
            "indicators": [i.to_json() for i in self.indicators.values()],
            "care": self.care.to_json(),
        }
        if with_version:
            body["version"] = self.version
        return body

    def with_definitions(
        self, diseases: Iterable[Disease] = (), indicators: Iterable[Indicator] = ()
    ) -> Registry:
        """This registry with further (or replaced) diseases and indicators."""
        return Registry(
            MappingProxyType({**self.diseases, **{d.id: d for d in diseases}}),
            MappingProxyType({**self.indicators, **{i.id: i for i in indicators}}),
            self.care,
        )

    def select(
        self, diseases: Iterable[str] | None = None, indicators: Iterable[str] | None = None
    ) -> Registry:
        """The registry restricted to some diseases and indicators; raises DefinitionError for unknown ids."""
        chosen_d = self.diseases
        chosen_i = self.indicators
        if diseases is not None:
            wanted = list(diseases)
            unknown = [d for d in wanted if d not in self.diseases]
            if unknown:
                raise DefinitionError(f"unknown disease {unknown[0]!r} (known: {', '.join(self.diseases)})")
            chosen_d = MappingProxyType({d: self.diseases[d] for d in wanted})
        if indicators is not None:
            wanted = list(indicators)
            unknown = [i for i in wanted if i not in self.indicators]
            if unknown:
                raise DefinitionError(f"unknown indicator {unknown[0]!r}")
            chosen_i = MappingProxyType({i: self.indicators[i] for i in wanted})
        return Registry(chosen_d, chosen_i, self.care)

    @classmethod
    def from_json(cls, body: Any) -> Registry:
        """A registry as a task carries it (`to_json`); raises DefinitionError."""
        if not isinstance(body, dict):
            raise DefinitionError("definitions: expected an object")
        diseases = [parse_disease(d) for d in _list(body, "diseases")]
        indicators = [parse_indicator(i) for i in _list(body, "indicators")]
        care = _parse_care(body.get("care"))
        registry = cls(
            MappingProxyType({d.id: d for d in diseases}),
            MappingProxyType({i.id: i for i in indicators}),
            care,
        )
        if "version" in body and body["version"] != registry.version:
            raise DefinitionError("definitions.version: does not match the definitions")
        return registry


def _list(body: Mapping[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    if not isinstance(value, list):
        raise DefinitionError(f"{key}: expected a list")
    return value


def _text(body: Mapping[str, Any], key: str, where: str, *, default: str | None = None) -> str:
    value = body.get(key, default)
    if isinstance(value, dict):
        value = value.get("en") or value.get("de")
    if not isinstance(value, str) or not value.strip() or len(value) > 500:
        raise DefinitionError(f"{where}.{key}: expected a text of 1 to 500 characters")
    return value.strip()


def _codes(values: Any, pattern: re.Pattern[str], where: str) -> tuple[str, ...]:
    if values is None:
        return ()
    if not isinstance(values, list) or len(values) > 500:
        raise DefinitionError(f"{where}: expected a list of at most 500 codes")
    for value in values:
        if not isinstance(value, str) or not pattern.match(value):
            raise DefinitionError(f"{where}: {value!r} is not a valid code")
    return tuple(dict.fromkeys(values))


def parse_disease(body: Any) -> Disease:
    """A disease definition from its JSON (a registry file or the crisis-mode form); raises DefinitionError."""
    if not isinstance(body, dict):
        raise DefinitionError("disease: expected an object")
    ident = body.get("id")
    if not isinstance(ident, str) or not _ID.match(ident):
        raise DefinitionError("disease.id: expected 2 to 40 lower-case letters, digits or _")
    where = f"disease {ident}"
    marker = body.get("marker")
    if not isinstance(marker, dict):
        raise DefinitionError(f"{where}.marker: expected an object")
    icd = _codes(marker.get("icd10gm"), _ICD, f"{where}.marker.icd10gm")
    loinc = _codes(marker.get("positive_loinc"), _LOINC, f"{where}.marker.positive_loinc")
    if not icd and not loinc:
        raise DefinitionError(f"{where}.marker: needs at least one ICD-10-GM or LOINC code")
    excluded = marker.get("excluded_certainty", ["A"])
    if not isinstance(excluded, list) or any(c not in _CERTAINTY for c in excluded):
        raise DefinitionError(f"{where}.marker.excluded_certainty: expected some of A, G, V, Z")
    try:
        start = dt.date.fromisoformat(str(body.get("start")))
    except ValueError:
        raise DefinitionError(f"{where}.start: expected a date YYYY-MM-DD") from None
    if not dt.date(2000, 1, 1) <= start <= dt.date(2100, 1, 1):
        raise DefinitionError(f"{where}.start: must lie between 2000 and 2100")
    window = body.get("window", {})
    before = window.get("before_days", 7) if isinstance(window, dict) else None
    if isinstance(before, bool) or not isinstance(before, int) or not 0 <= before <= 60:
        raise DefinitionError(f"{where}.window.before_days: expected a whole number of days from 0 to 60")
    source = body.get("source", "")
    if not isinstance(source, str) or len(source) > 1000:
        raise DefinitionError(f"{where}.source: expected a text of at most 1000 characters")
    return Disease(
        id=ident,
        title=_text(body, "title", where, default=ident),
        start=start,
        icd10gm=icd,
        excluded_certainty=tuple(sorted(set(excluded))),
        positive_loinc=loinc,
        before_days=before,
        suspected_icd10gm=_codes(marker.get("suspected_icd10gm"), _ICD, f"{where}.marker.suspected_icd10gm"),
        source=source,
    )


def parse_indicator(body: Any) -> Indicator:
    """An indicator definition from its JSON; raises DefinitionError."""
    if not isinstance(body, dict):
        raise DefinitionError("indicator: expected an object")
    ident = body.get("id")
    if not isinstance(ident, str) or not _ID.match(ident):
        raise DefinitionError("indicator.id: expected 2 to 40 lower-case letters, digits or _")
    where = f"indicator {ident}"
    kind = body.get("kind")
    if kind not in KINDS:
        raise DefinitionError(f"{where}.kind: expected one of {', '.join(KINDS)}")
    bucket = body.get("bucket")
    if bucket not in BUCKETS:
        raise DefinitionError(f"{where}.bucket: expected one of {', '.join(BUCKETS)}")
    strata_json = body.get("strata", [])
    if not isinstance(strata_json, list) or len(strata_json) > 8:
        raise DefinitionError(f"{where}.strata: expected a list of at most 8 strata")
    strata: list[tuple[str, ...]] = []
    for stratum in strata_json:
        if not isinstance(stratum, list) or not stratum or len(stratum) > 2:
            raise DefinitionError(f"{where}.strata: each stratum is a list of 1 or 2 dimensions")
        for dimension in stratum:
            if dimension not in STRATA:
                raise DefinitionError(f"{where}.strata: unknown dimension {dimension!r}")
            if dimension in _ONLY_FOR and kind not in _ONLY_FOR[dimension]:
                raise DefinitionError(
                    f"{where}.strata: {dimension} is only for {', '.join(_ONLY_FOR[dimension])}"
                )
        if len(set(stratum)) != len(stratum):
            raise DefinitionError(f"{where}.strata: a dimension twice in one stratum")
        strata.append(tuple(d for d in STRATA if d in stratum))
    required = _REQUIRED.get(kind)
    if required and any(required not in s for s in strata):
        raise DefinitionError(f"{where}.strata: every stratum of a {kind} indicator includes {required}")
    params_json = body.get("params", {})
    if not isinstance(params_json, dict):
        raise DefinitionError(f"{where}.params: expected an object")
    allowed = KINDS[kind]
    params: dict[str, Any] = {}
    for name, value in params_json.items():
        if name not in allowed:
            raise DefinitionError(f"{where}.params.{name}: not a parameter of {kind}")
        if type(value) is not allowed[name]:
            raise DefinitionError(f"{where}.params.{name}: expected {allowed[name].__name__}")
        params[name] = value
    if kind == "occupancy_at_least" and params.get("min_level") not in ("icu", "ventilation", "ecmo"):
        raise DefinitionError(f"{where}.params.min_level: expected icu, ventilation or ecmo")
    if kind == "severity" and not 0 <= params.get("within_days", 30) <= 365:
        raise DefinitionError(f"{where}.params.within_days: expected 0 to 365")
    code = body.get("code", ident)
    if not isinstance(code, str) or not 1 <= len(code) <= 20:
        raise DefinitionError(f"{where}.code: expected a short text")
    return Indicator(
        id=ident,
        code=code,
        title=_text(body, "title", where, default=ident),
        kind=kind,
        bucket=bucket,
        strata=tuple(dict.fromkeys(strata)),
        params=MappingProxyType(params),
        description=str(body.get("description", ""))[:2000],
        public=bool(body.get("public", True)),
    )


def _bins(values: Any, where: str) -> tuple[tuple[int, int | None, str], ...]:
    if not isinstance(values, list) or not values:
        raise DefinitionError(f"care.{where}: expected a list of [low, high, label]")
    return tuple((int(low), None if high is None else int(high), str(label)) for low, high, label in values)


def _parse_care(body: Any) -> Care:
    if not isinstance(body, dict):
        raise DefinitionError("care: expected an object")
    try:
        return Care(
            icu_departments=tuple(body["icu_departments"]),
            ventilation_snomed=tuple(body["ventilation"]["snomed"]),
            ventilation_ops_prefixes=tuple(body["ventilation"]["ops"]),
            ecmo_snomed=tuple(body["ecmo"]["snomed"]),
            ecmo_ops_prefixes=tuple(body["ecmo"]["ops"]),
            sari_prefixes=tuple(body["sari"]),
            levels=tuple(body["levels"]),
            los_bins=_bins(body["los_bins"], "los_bins"),
            age_rki=_bins(body["age_rki"], "age_rki"),
            sex=MappingProxyType(dict(body["sex"])),
            leitregion=MappingProxyType(dict(body["leitregion"])),
            states=_states(),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise DefinitionError(f"care: {error}") from None


@functools.cache
def _plz() -> dict[str, Any]:
    return json.loads((REGISTRY / "plz_bundesland.json").read_text(encoding="utf-8"))


def _states() -> Mapping[str, Mapping[str, str]]:
    return MappingProxyType({k: MappingProxyType(v) for k, v in _plz()["states"].items()})


@functools.cache
def default_registry() -> Registry:
    """The shipped registry: COVID-19, influenza, RSV and the indicators I1 to I10."""
    diseases = [
        parse_disease(json.loads(path.read_text(encoding="utf-8")))
        for path in sorted((REGISTRY / "diseases").glob("*.json"))
    ]
    indicators = [
        parse_indicator(json.loads(path.read_text(encoding="utf-8")))
        for path in sorted((REGISTRY / "indicators").glob("*.json"), key=_code_order)
    ]
    care_json = json.loads((REGISTRY / "care.json").read_text(encoding="utf-8"))
    care = _parse_care(
        {
            **care_json,
            "ventilation": {
                "snomed": care_json["ventilation"]["snomed"],
                "ops": care_json["ventilation"]["ops_prefixes"],
            },
            "ecmo": {"snomed": care_json["ecmo"]["snomed"], "ops": care_json["ecmo"]["ops_prefixes"]},
            "sari": care_json["sari_icd10gm_prefixes"],
            "leitregion": _plz()["leitregion"],
        }
    )
    return Registry(
        MappingProxyType({d.id: d for d in diseases}),
        MappingProxyType({i.id: i for i in indicators}),
        care,
    )


def _code_order(path: Path) -> tuple[int, str]:
    match = re.match(r"i(\d+)(\w*)_", path.name)
    return (int(match.group(1)), match.group(2)) if match else (999, path.name)
