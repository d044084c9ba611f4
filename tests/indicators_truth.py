"""The indicators' truth, evaluated independently of the site store: straight from the FHIR resources.

The site computes its cube in SQL over the flattened store (`datenraum.site.indicators`); this module reads
the NDJSON the generator wrote (or any FHIR resources) and evaluates the same definitions in plain Python,
resource by resource, with `zoneinfo` for Berlin days. The exactness tests require both to give the same
cube, cell by cell.
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from datenraum.indicators.registry import Disease, Indicator, Registry

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
CERTAINTY = "http://fhir.de/StructureDefinition/icd-10-gm-diagnosesicherheit"
LEVELS = {1: "ward", 2: "icu", 3: "ventilation", 4: "ecmo"}


def read_resources(folders: Iterable[Path]) -> list[dict[str, Any]]:
    out = []
    for folder in folders:
        for path in sorted(Path(folder).glob("*.ndjson")):
            out.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return out


def _instant(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    if len(text) == 10:
        return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)  # as the store keeps a date
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _day(value: dt.datetime) -> dt.date:
    return value.astimezone(BERLIN).date()


def _ref(resource: dict[str, Any], key: str) -> str | None:
    reference = (resource.get(key) or {}).get("reference")
    return reference.split("/", 1)[1] if reference else None


class Truth:
    def __init__(self, resources: list[dict[str, Any]], registry: Registry, as_of: dt.date) -> None:
        self.registry = registry
        self.care = registry.care
        self.as_of = as_of
        self.end = dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time(), BERLIN)
        by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for resource in resources:
            by_type[resource["resourceType"]].append(resource)
        self.patients = {p["id"]: p for p in by_type["Patient"]}
        self.encounters = {e["id"]: e for e in by_type["Encounter"]}
        self.conditions = by_type["Condition"]
        self.observations = by_type["Observation"]
        self.procedures = by_type["Procedure"]
        self.case_of = {}
        for ident, encounter in self.encounters.items():
            self.case_of[ident] = _ref(encounter, "partOf") or ident

    # -- building blocks
    def _end_day(self, value: dt.datetime | None) -> dt.date:
        return self.as_of if value is None or value >= self.end else _day(value)

    def _conditions(self, codes: set[str], prefixes: tuple[str, ...], excluded: set[str]):
        for c in self.conditions:
            for coding in c["code"]["coding"]:
                if "icd-10-gm" not in coding.get("system", ""):
                    continue
                code = coding.get("code", "")
                if code not in codes and not code.startswith(prefixes or ("\0",)):
                    continue
                certainty = next(
                    (e["valueCoding"]["code"] for e in coding.get("extension", []) if e["url"] == CERTAINTY),
                    "",
                )
                if certainty in excluded:
                    continue
                yield c
                break

    def _cases(self) -> dict[str, dict[str, Any]]:
        cases = {}
        for ident, e in self.encounters.items():
            if e.get("class", {}).get("code") != "IMP" or "partOf" in e:
                continue
            levels = {c.get("code") for t in e.get("type", []) for c in t.get("coding", [])}
            if levels & {"abteilungskontakt", "versorgungsstellenkontakt"}:
                continue
            start, end = _instant(e["period"]["start"]), _instant(e["period"].get("end"))
            if start >= self.end:
                continue
            cases[ident] = {
                "id": ident,
                "patient": _ref(e, "subject"),
                "s": start,
                "e": end,
                "d0": _day(start),
                "d1": self._end_day(end),
                "finished": end is not None and end < self.end,
            }
        return cases

    def _marker_cases(self, disease: Disease, cases: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        times = defaultdict(list)
        for c in self._conditions(set(disease.icd10gm), (), set(disease.excluded_certainty)):
            t = _instant(c.get("recordedDate") or c.get("onsetDateTime"))
            if t is not None:
                times[_ref(c, "subject")].append(t)
        for o in self.observations:
            if "encounter" not in o or not o.get("effectiveDateTime"):
                continue
            if not any(
                x.get("system") == "http://loinc.org" and x.get("code") in disease.positive_loinc
                for x in o["code"]["coding"]
            ):
                continue
            value = [x.get("code") for x in o.get("valueCodeableConcept", {}).get("coding", [])]
            if value[:1] in (["260373001"], ["10828004"]):
                times[_ref(o, "subject")].append(_instant(o["effectiveDateTime"]))
        before = dt.timedelta(days=disease.before_days)
        result = {}
        for ident, case in cases.items():
            for t in times.get(case["patient"], ()):
                if case["s"] - before <= t <= (case["e"] or self.end) and t < self.end:
                    result[ident] = case
                    break
        return result

    def _care(self, mcases: dict[str, dict[str, Any]]) -> dict[str, list[tuple[dt.date, dt.date, int]]]:
        care = self.care
        intervals = defaultdict(list)
        for e in self.encounters.values():
            parent = _ref(e, "partOf")
            if parent not in mcases:
                continue
            dept = (e.get("serviceType") or {}).get("coding", [{}])[0].get("code")
            start = _instant(e["period"]["start"])
            if dept in care.icu_departments and start < self.end:
                intervals[parent].append((_day(start), self._end_day(_instant(e["period"].get("end"))), 2))
        for p in self.procedures:
            encounter = _ref(p, "encounter")
            case = self.case_of.get(encounter)
            if case not in mcases:
                continue
            level = 0
            for coding in p["code"]["coding"]:
                system, code = coding.get("system", ""), coding.get("code", "")
                if (system == "http://snomed.info/sct" and code in care.ecmo_snomed) or (
                    "ops" in system and code.startswith(care.ecmo_ops_prefixes)
                ):
                    level = max(level, 4)
                elif (system == "http://snomed.info/sct" and code in care.ventilation_snomed) or (
                    "ops" in system and code.startswith(care.ventilation_ops_prefixes)
                ):
                    level = max(level, 3)
            if not level:
                continue
            period = p.get("performedPeriod") or {}
            start = _instant(period.get("start") or p.get("performedDateTime"))
            if start is None or start >= self.end:
                continue
            end = _instant(period.get("end")) or start
            intervals[case].append((_day(start), self._end_day(end), level))
        return intervals

    def _strata(self, patient_id: str, day: dt.date) -> dict[str, str]:
        p = self.patients.get(patient_id, {})
        sex = self.care.sex.get(p.get("gender", "unknown"), "unknown")
        age_group = "unknown"
        if p.get("birthDate"):
            birth = dt.date.fromisoformat(p["birthDate"][:10])
            age = day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))
            for low, high, label in self.care.age_rki:
                if age >= low and (high is None or age <= high):
                    age_group = label
        postal = ((p.get("address") or [{}])[0]).get("postalCode", "")
        state = "unknown"
        if len(postal) == 5 and postal.isdigit():
            state = self.care.leitregion.get(postal[:2], "unknown")
        return {"sex": sex, "age_rki": age_group, "state": state}

    # -- the cube
    def events(
        self, disease: Disease, indicator: Indicator
    ) -> list[tuple[str, str, dt.date, dict[str, str]]]:
        """(unit, patient, day, extra dimensions) of the indicator's events."""
        cases = self._cases()
        mcases = self._marker_cases(disease, cases)
        kind, params = indicator.kind, indicator.params
        out = []
        if kind == "new_cases":
            out = [(c["patient"], c["patient"], c["d0"], {}) for c in mcases.values()]
        elif kind in ("occupancy", "occupancy_at_least", "severity", "icu_admissions"):
            care = self._care(mcases)
            if kind == "icu_admissions":
                for ident, c in mcases.items():
                    icu = [a for a, _b, lvl in care.get(ident, ()) if lvl == 2]
                    if icu:
                        out.append((c["patient"], c["patient"], min(icu), {}))
            elif kind == "severity":
                within = params.get("within_days", 30)
                for ident, c in mcases.items():
                    limit = c["d0"] + dt.timedelta(days=within)
                    if any(a <= limit and b >= c["d0"] for a, b, _ in care.get(ident, ())):
                        out.append((c["patient"], c["patient"], c["d0"], {}))
            else:
                levels: dict[tuple[str, dt.date], int] = {}
                for ident, c in mcases.items():
                    day = c["d0"]
                    while day <= c["d1"]:
                        level = max([1, *(lvl for a, b, lvl in care.get(ident, ()) if a <= day <= b)])
                        key = (c["patient"], day)
                        levels[key] = max(levels.get(key, 0), level)
                        day += dt.timedelta(days=1)
                minimum = {"icu": 2, "ventilation": 3, "ecmo": 4}.get(params.get("min_level"), 0)
                for (patient, day), level in levels.items():
                    if kind == "occupancy":
                        out.append((patient, patient, day, {"level": LEVELS[level]}))
                    elif level >= minimum:
                        out.append((patient, patient, day, {}))
        elif kind == "deaths":
            for c in mcases.values():
                died = _instant(self.patients.get(c["patient"], {}).get("deceasedDateTime"))
                if died is not None and c["s"] <= died <= (c["e"] or self.end) and died < self.end:
                    out.append((c["patient"], c["patient"], _day(died), {}))
        elif kind == "tests":
            for o in self.observations:
                if "encounter" not in o or not o.get("effectiveDateTime"):
                    continue
                if not any(
                    x.get("system") == "http://loinc.org" and x.get("code") in disease.positive_loinc
                    for x in o["code"]["coding"]
                ):
                    continue
                t = _instant(o["effectiveDateTime"])
                if t >= self.end:
                    continue
                value = [x.get("code") for x in o.get("valueCodeableConcept", {}).get("coding", [])]
                if params.get("positive") and value[:1] not in (["260373001"], ["10828004"]):
                    continue
                out.append((o["id"], _ref(o, "subject"), _day(t), {}))
        elif kind == "length_of_stay":
            for c in mcases.values():
                if not c["finished"]:
                    continue
                n = max(1, (c["d1"] - c["d0"]).days)
                label = next(lb for lo, hi, lb in self.care.los_bins if n >= lo and (hi is None or n <= hi))
                out.append((c["id"], c["patient"], c["d1"], {"los_bin": label}))
        elif kind == "sari":
            sari = set()
            for c in self._conditions(set(), self.care.sari_prefixes, set(disease.excluded_certainty)):
                encounter = _ref(c, "encounter")
                if encounter in self.case_of:
                    sari.add(self.case_of[encounter])
            for ident, c in cases.items():
                if ident in sari and (not params.get("with_marker") or ident in mcases):
                    out.append((c["patient"], c["patient"], c["d0"], {}))
        return [e for e in out if disease.start <= e[2] <= self.as_of]

    def series(self, disease: Disease, indicator: Indicator) -> list[list[Any]]:
        """The cube rows of one indicator, as the site lists them."""
        groups: dict[tuple[Any, ...], set[str]] = defaultdict(set)
        dims = ("level", "sex", "age_rki", "state", "los_bin")
        sets: list[tuple[str, ...]] = [] if indicator.kind == "length_of_stay" else [()]
        sets.extend(indicator.strata)
        for unit, patient, day, extra in self.events(disease, indicator):
            if indicator.bucket == "iso_week":
                year, week, _ = day.isocalendar()
                period = f"{year}-W{week:02d}"
            else:
                period = day.isoformat()
            values = {**self._strata(patient, day), **extra}
            for stratum in sets:
                key = (period, *(values[d] if d in stratum else None for d in dims))
                groups[key].add(unit)
        rows = [[*key, len(units)] for key, units in groups.items()]
        rows.sort(key=lambda r: tuple("" if v is None else str(v) for v in r[:-1]))
        return rows
