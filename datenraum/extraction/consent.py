"""The MII broad-consent rules as TORCH applies them (brief R-CONSENT, §4.3), with an explanation.

Consent is requested in the cohort: the provision codes of every criterion with context `Einwilligung`
(combined portal keys translated to policy codes). No such criterion: no consent enforcement. With them:

1. Every requested code must be known to the configuration (`consent-code-config.json`: a code, its
   `required` partner codes, `validityGate`, `lookbackDate`, `retroModifiers`), as a code or a retro
   modifier; unknown codes are an error (TORCH silently ignores them). A requested code whose partners
   are not requested (.8 without .6) is an error (TORCH: HTTP 400).
2. Only active Consents with `dateTime` claiming the MII Einwilligung profile count. A Consent contributes
   permits only if it permits *all* requested configured codes; denies of any Consent subtract.
3. Retro modifiers (.45/.46) requested and permitted in the same Consent, overlapping its data-window
   permit, move that permit's start to `lookbackDate`.
4. Encounter stretch (data-window codes only, never the gate; our fix of torch#1251: denies are never
   moved): a permit's start moves back to the start of the earliest overlapping Encounter that has
   both start and end.
5. Gate: the patient must be consented to each gate code `today` (fixed per job), else excluded. This is
   the study library's one check (`datenraum.studies.consent.is_consented`) over the permits of rule 2
   and every admitted Consent's denies of the code: the latest decision covering today decides.
6. Window = the merged permits minus denies of each data-window code, intersected across codes.
7. A resource is kept iff one value of its consent field (`type_to_consent.json`) at day precision lies
   entirely within one window period; no field ("" = always consented) keeps it; open periods, dates
   coarser than a day, missing fields and unmapped types drop it.

`ConsentRules.evaluate(...)` returns a `PatientConsent` with the decision and its explanation record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import orjson

from datenraum.extraction.plan import values_at
from datenraum.studies.consent import ConsentRecord, ConsentState, decision_time, is_consented

__all__ = [
    "EINWILLIGUNG_PROFILE",
    "POLICY_SYSTEM",
    "ConsentConfigError",
    "ConsentRules",
    "PatientConsent",
    "requested_consent_codes",
]

POLICY_SYSTEM = "urn:oid:2.16.840.1.113883.3.1937.777.24.5.3"
EINWILLIGUNG_PROFILE = "https://www.medizininformatik-initiative.de/fhir/modul-consent/StructureDefinition/mii-pr-consent-einwilligung"
Interval = tuple[dt.date, dt.date]


class ConsentConfigError(ValueError):
    """A consent request the rules cannot serve (unknown code, .8 without .6); `path` in the CRTDL."""

    def __init__(self, message: str, path: str = "$.cohortDefinition") -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


def requested_consent_codes(cohort: dict[str, Any]) -> list[tuple[str, str]]:
    """(JSON path, policy code) of every consent code the cohort's inclusion criteria request (AND/OR
    ignored, as TORCH does). Combined portal keys (`fdpg.consent.combined`) become their policy codes."""
    from datenraum.query.mapping import load_mapping
    from datenraum.query.model import TermCode

    found = []
    mapping = None
    for g_index, group in enumerate(cohort.get("inclusionCriteria") or []):
        for c_index, criterion in enumerate(group if isinstance(group, list) else []):
            if not isinstance(criterion, dict):
                continue
            context = criterion.get("context") or {}
            for t_index, term in enumerate(criterion.get("termCodes") or []):
                if not isinstance(term, dict):
                    continue
                path = f"$.cohortDefinition.inclusionCriteria[{g_index}][{c_index}].termCodes[{t_index}]"
                system = term.get("system")
                if context.get("code") != "Einwilligung" and system not in (
                    POLICY_SYSTEM,
                    "fdpg.consent.combined",
                ):
                    continue
                if system == "fdpg.consent.combined":
                    mapping = mapping or load_mapping()
                    codes = mapping.required_provisions(TermCode(system, term.get("code", "")))
                    found.extend((path, c) for c in codes)
                else:
                    found.append((path, str(term.get("code", ""))))
    return found


def _day(value: Any) -> dt.date | None:
    """The day of a FHIR date/dateTime with at least day precision; None for coarser or malformed."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        return None


def _period(value: Any) -> Interval | None:
    if not isinstance(value, dict):
        return None
    start, end = _day(value.get("start")), _day(value.get("end"))
    if start is None or end is None:
        return None
    return start, end


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1] + dt.timedelta(days=1):
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _subtract(intervals: list[Interval], cuts: Iterable[Interval]) -> list[Interval]:
    result = list(intervals)
    for c_start, c_end in cuts:
        following = []
        for start, end in result:
            if c_end < start or c_start > end:
                following.append((start, end))
                continue
            if start < c_start:
                following.append((start, c_start - dt.timedelta(days=1)))
            if end > c_end:
                following.append((c_end + dt.timedelta(days=1), end))
        result = following
    return result


def _intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
    out = []
    for a_start, a_end in a:
        for b_start, b_end in b:
            start, end = max(a_start, b_start), min(a_end, b_end)
            if start <= end:
                out.append((start, end))
    return _merge(out)


def _iso(intervals: list[Interval]) -> list[list[str]]:
    return [[s.isoformat(), e.isoformat()] for s, e in intervals]


@dataclass
class PatientConsent:
    """The consent decision for one patient and why."""

    patient_id: str
    enforced: bool
    excluded: bool = False
    window: list[Interval] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)

    def check(self, resource: dict[str, Any], field_path: str | None) -> tuple[bool, str, Any]:
        """(kept, reason, value) for one resource: `field_path` from type_to_consent ("" = always, None =
        type not mapped)."""
        if not self.enforced:
            return True, "", None
        if field_path is None:
            return False, "type not mapped in type_to_consent", None
        if field_path == "":
            return True, "", None
        values = _field_values(resource, field_path)
        if not values:
            return False, f"no {field_path}", None
        reasons = []
        for value in values:
            if isinstance(value, dict):
                interval = _period(value)
                if interval is None:
                    reasons.append("open period or no day precision")
                    continue
            else:
                day = _day(value)
                if day is None:
                    reasons.append("no day precision")
                    continue
                interval = (day, day)
            if any(w_start <= interval[0] and interval[1] <= w_end for w_start, w_end in self.window):
                return True, "", value
            reasons.append("outside the consent window")
        return False, reasons[0], values[0]

    def drop(self, resource: dict[str, Any], field_path: str | None, reason: str, value: Any) -> None:
        self.record.setdefault("dropped", []).append(
            {
                "resource": f"{resource.get('resourceType')}/{resource.get('id')}",
                "field": field_path,
                "value": value,
                "reason": reason,
            }
        )


def _field_values(resource: dict[str, Any], field_path: str) -> list[Any]:
    """The texts and objects at a consent field path (`Consent.provision.provision.code`: the resource
    type first)."""
    return [v for v in values_at(resource, field_path.split(".", 1)[1]) if isinstance(v, str | dict)]


class ConsentRules:
    """The configuration (`consent-code-config.json`, `type_to_consent.json`) and the switch for the
    encounter stretch."""

    def __init__(
        self,
        config: list[dict[str, Any]] | None = None,
        type_to_consent: dict[str, str] | None = None,
        *,
        encounter_shift: bool = True,
    ) -> None:
        data = resources.files(__package__).joinpath("data")
        self.config = (
            config
            if config is not None
            else orjson.loads(data.joinpath("consent-code-config.json").read_bytes())
        )
        self.type_to_consent = (
            type_to_consent
            if type_to_consent is not None
            else orjson.loads(data.joinpath("type_to_consent.json").read_bytes())
        )
        self.encounter_shift = encounter_shift
        self.by_code = {entry["code"]: entry for entry in self.config}
        self.retro = {
            m["code"]: entry["code"] for entry in self.config for m in entry.get("retroModifiers", [])
        }

    def field_for(self, resource_type: str) -> str | None:
        return self.type_to_consent.get(resource_type)

    def check_request(self, requested: list[tuple[str, str]]) -> list[str]:
        """The requested policy codes, validated: raises ConsentConfigError naming the criterion."""
        codes = []
        for path, code in requested:
            if code not in self.by_code and code not in self.retro:
                raise ConsentConfigError(
                    f"consent code {code!r} is not in the consent configuration (known: "
                    f"{', '.join(sorted([*self.by_code, *self.retro]))}); it would be ignored, so the CRTDL is refused",
                    path,
                )
            codes.append(code)
        present = set(codes)
        for code in sorted(present & set(self.by_code)):
            missing = [r for r in self.by_code[code].get("required", []) if r not in present]
            if missing:
                raise ConsentConfigError(
                    f"consent code {code} requires {', '.join(missing)} in the same CRTDL"
                )
        return sorted(present)

    def evaluate(
        self,
        patient_id: str,
        requested: list[str],
        consents: list[dict[str, Any]],
        encounters: list[dict[str, Any]],
        today: dt.date,
    ) -> PatientConsent:
        if not requested:
            return PatientConsent(
                patient_id, enforced=False, record={"patient": patient_id, "enforced": False}
            )
        main = [c for c in requested if c in self.by_code]
        retro_requested = [c for c in requested if c in self.retro]
        record: dict[str, Any] = {
            "patient": patient_id,
            "enforced": True,
            "today": today.isoformat(),
            "requested": requested,
            "provisions": [],
            "ignoredConsents": [],
        }
        permits: dict[str, list[Interval]] = {c: [] for c in main}
        denies: dict[str, list[Interval]] = {c: [] for c in main}
        gates = [c for c in main if self.by_code[c].get("validityGate")]
        gate_records: list[ConsentRecord] = []
        for consent in consents:
            ref = f"Consent/{consent.get('id')}"
            profiles = [p.split("|")[0] for p in (consent.get("meta") or {}).get("profile", [])]
            if EINWILLIGUNG_PROFILE not in profiles:
                record["ignoredConsents"].append(
                    {"consent": ref, "reason": "does not claim the MII Einwilligung profile"}
                )
                continue
            if consent.get("status") != "active" or not consent.get("dateTime"):
                record["ignoredConsents"].append({"consent": ref, "reason": "not active or without dateTime"})
                continue
            found: dict[str, dict[str, list[Interval]]] = {"permit": {}, "deny": {}}
            for provision in _provisions(consent.get("provision")):
                kind = provision.get("type")
                interval = _period(provision.get("period"))
                for concept in provision.get("code") or []:
                    for coding in concept.get("coding") or []:
                        code = coding.get("code")
                        if coding.get("system") != POLICY_SYSTEM or kind not in ("permit", "deny"):
                            continue
                        record["provisions"].append(
                            {
                                "consent": ref,
                                "code": code,
                                "type": kind,
                                "period": _iso([interval])[0] if interval else None,
                            }
                        )
                        if interval is not None:
                            found[kind].setdefault(code, []).append(interval)
            decided = decision_time(consent["dateTime"])
            for code in main:
                denies[code].extend(found["deny"].get(code, []))
            gate_records.extend(
                ConsentRecord(patient_id, code, ConsentState.DECLINED, decided, start, end, ref)
                for code in gates
                for start, end in found["deny"].get(code, [])
            )
            if not all(found["permit"].get(code) for code in main):
                continue  # only a Consent permitting every requested code contributes permits
            for code in main:
                periods = list(found["permit"][code])
                entry = self.by_code[code]
                modifiers = [
                    m["code"] for m in entry.get("retroModifiers", []) if m["code"] in retro_requested
                ]
                retro = [i for m in modifiers for i in found["permit"].get(m, [])]
                if retro and entry.get("lookbackDate"):
                    lookback = dt.date.fromisoformat(entry["lookbackDate"])
                    periods = [
                        (lookback, end) if any(r[0] <= end and start <= r[1] for r in retro) else (start, end)
                        for start, end in periods
                    ]
                    record.setdefault("retro", []).append(
                        {"consent": ref, "code": code, "modifiers": modifiers}
                    )
                    denies[code].extend(i for m in modifiers for i in found["deny"].get(m, []))
                permits[code].extend(periods)
                if code in gates:
                    gate_records.extend(
                        ConsentRecord(patient_id, code, ConsentState.ACCEPTED, decided, start, end, ref)
                        for start, end in periods
                    )
        windows = [c for c in main if not self.by_code[c].get("validityGate")]
        decision = PatientConsent(patient_id, enforced=True, record=record)
        for code in gates:
            gate = is_consented(gate_records, patient_id, code, today)
            passed = gate.consented
            record.setdefault("gate", []).append({"code": code, "passed": passed, "reason": gate.reason})
            if not passed:
                decision.excluded = True
                record["excluded"] = f"today ({today}) is not within a permit of the gate code {code}"
        encounter_periods = sorted(p for p in (_period(e.get("period")) for e in encounters) if p)
        window: list[Interval] | None = None
        for code in windows:
            periods = permits[code]
            if self.encounter_shift:
                shifted = []
                for start, end in periods:
                    earliest = min(
                        (s for s, e in encounter_periods if s < start and e >= start and s <= end),
                        default=None,
                    )
                    if earliest is not None:
                        record.setdefault("encounterStretch", []).append(
                            {"code": code, "from": start.isoformat(), "to": earliest.isoformat()}
                        )
                        start = earliest
                    shifted.append((start, end))
                periods = shifted
            merged = _subtract(_merge(periods), denies[code])
            window = merged if window is None else _intersect(window, merged)
        decision.window = window or []
        record["window"] = _iso(decision.window)
        if not decision.window and not decision.excluded:
            decision.excluded = True
            record["excluded"] = "no consent window (no Consent permits every requested code)"
        return decision


def _provisions(provision: Any) -> list[dict[str, Any]]:
    """The provisions nested below the top one (the MII shape: a deny with nested permits); the top one
    counts too when it names codes."""
    if not isinstance(provision, dict):
        return []
    out = []
    stack = [provision]
    while stack:
        node = stack.pop()
        if node.get("code"):
            out.append(node)
        stack.extend(p for p in reversed(node.get("provision") or []) if isinstance(p, dict))
    return out
