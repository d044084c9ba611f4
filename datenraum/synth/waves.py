"""Epidemic waves: hospital stays for COVID-19, influenza and RSV following seasonal and pandemic waves.

Only with ``generate(..., waves=True)`` (``datenraum synth --waves``); without it nothing here runs and the
output is byte-identical to what it was before waves existed. With it, every patient additionally has
a chance of one or more respiratory stays, drawn from a separate random stream (seeded from the patient's
own seed), so that the rest of the patient's history stays what it is:

- admission days follow each disease's waves (sums of Gaussian bumps over the calendar: COVID-19 waves
  from spring 2020 on, winter influenza seasons except 2020/21 and 2021/22, RSV winters with the early
  2021 rebound), with age-dependent risk (RSV in infants and the old, COVID-19 and influenza rising with
  age);
- a stay is a facility contact (class IMP) with an ICU unit contact (``partOf`` the stay,
  Fachabteilung 3600) for some, ventilation and ECMO as procedures of the ICU contact (SNOMED CT, with
  a performed period), and in-hospital death (the Patient's ``deceasedDateTime`` at the end of the stay);
- diagnoses with ICD-10-GM diagnostic reliability (``G``; a few ``A``, excluded, and COVID-19 suspected
  ``U07.2``), pneumonia as SARI, and a positive PCR of the stay; some positive tests without any encounter
  (which no case-linked indicator counts);
- the patient's residence postal code (``address.postalCode``), mostly around the site.

The indicators' exactness tests compare the site's cube with an independent evaluation of the emitted
resources (``tests/indicators_truth.py``).
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import math
from dataclasses import dataclass
from random import Random
from typing import TYPE_CHECKING, Any, NamedTuple

from . import resources as fhir
from .timeline import DATA_CUTOFF, DAYS, WINDOW_END, WINDOW_START, day_number, timestamp, year_of

if TYPE_CHECKING:
    from .patient import _Consent, _Contact, _Patient

_LOINC = "http://loinc.org"
_SNOMED = "http://snomed.info/sct"
_CERTAINTY = "http://fhir.de/StructureDefinition/icd-10-gm-diagnosesicherheit"
_CERTAINTY_SYSTEM = "https://fhir.kbv.de/CodeSystem/KBV_CS_SFHIR_ICD_DIAGNOSESICHERHEIT"
_UNIT_TYPE = [{"coding": [{"system": "http://fhir.de/CodeSystem/Kontaktebene", "code": "abteilungskontakt"}]}]
_ICU = {
    "coding": [
        {
            "system": "http://fhir.de/CodeSystem/dkgev/Fachabteilungsschluessel",
            "code": "3600",
            "display": "Intensivmedizin",
        }
    ]
}
_VENTILATION = ("40617009", "Artificial respiration (procedure)")
_ECMO = ("233573008", "Extracorporeal membrane oxygenation (procedure)")

#: Two-digit postal regions around each site profile's city (Köln, Heidelberg, Dresden, München).
_HOME_REGIONS = (("50", "51", "53"), ("69", "68", "74"), ("01", "02", "09"), ("80", "81", "85"))
_ALL_REGIONS = tuple(f"{n:02d}" for n in range(1, 100) if n not in (5, 11, 43, 62))


def _day(text: str) -> int:
    return day_number(dt.date.fromisoformat(text))


@dataclass(frozen=True)
class WaveDisease:
    key: str
    #: (peak day, width in days, relative height)
    waves: tuple[tuple[str, int, float], ...]
    #: Chance per patient of a stay over the whole window, before the age factor.
    risk: float
    codes: tuple[tuple[str, str], ...]
    loinc: tuple[str, str]
    icu: float
    ventilation: float
    ecmo: float
    death: float
    median_days: float

    def age_factor(self, age: float) -> float:
        if self.key == "rsv":
            return 8.0 if age < 2 else 2.0 if age >= 75 else 0.25
        if self.key == "influenza":
            return 1.6 if age >= 65 else 0.8
        return 2.2 if age >= 60 else 0.7


_INFLUENZA_SEASONS = (
    "2015-02-20",
    "2016-02-25",
    "2017-01-30",
    "2018-02-25",
    "2019-02-10",
    "2020-02-05",
    "2022-12-10",
    "2023-12-28",
    "2024-02-20",
)
_RSV_SEASONS = (
    "2015-01-15",
    "2016-01-20",
    "2017-01-05",
    "2018-01-25",
    "2019-01-10",
    "2020-01-15",
    "2021-10-10",
    "2022-12-01",
    "2023-12-10",
    "2024-11-25",
)

DISEASES: tuple[WaveDisease, ...] = (
    WaveDisease(
        "covid",
        (
            ("2020-04-05", 16, 0.6),
            ("2020-12-22", 32, 1.5),
            ("2021-04-22", 22, 0.8),
            ("2021-11-28", 26, 1.2),
            ("2022-03-12", 28, 1.4),
            ("2022-07-15", 20, 0.7),
            ("2022-10-15", 20, 0.8),
            ("2023-12-20", 25, 0.4),
            ("2024-08-20", 25, 0.2),
        ),
        0.05,
        (("U07.1", "COVID-19, Virus nachgewiesen"),),
        (
            "94500-6",
            "SARS-CoV-2 (COVID-19) RNA [Presence] in Respiratory system specimen by NAA with probe detection",
        ),
        0.2,
        0.5,
        0.15,
        0.08,
        8.0,
    ),
    WaveDisease(
        "influenza",
        tuple((peak, 18, 1.0) for peak in _INFLUENZA_SEASONS),
        0.03,
        (
            ("J10.0", "Grippe mit Pneumonie, saisonale Influenzaviren nachgewiesen"),
            (
                "J10.1",
                "Grippe mit sonstigen Manifestationen an den Atemwegen, saisonale Influenzaviren nachgewiesen",
            ),
        ),
        (
            "92142-9",
            "Influenza virus A RNA [Presence] in Respiratory system specimen by NAA with probe detection",
        ),
        0.1,
        0.4,
        0.1,
        0.04,
        6.0,
    ),
    WaveDisease(
        "rsv",
        tuple((peak, 20, 1.0) for peak in _RSV_SEASONS),
        0.015,
        (
            ("J21.0", "Akute Bronchiolitis durch Respiratory-Syncytial-Viren [RS-Viren]"),
            ("J12.1", "Pneumonie durch Respiratory-Syncytial-Viren [RS-Viren]"),
        ),
        (
            "92131-2",
            "Respiratory syncytial virus RNA [Presence] in Respiratory system specimen by NAA with probe detection",
        ),
        0.08,
        0.3,
        0.05,
        0.02,
        5.0,
    ),
)


def _density(disease: WaveDisease) -> tuple[float, ...]:
    peaks = [(_day(peak), width, height) for peak, width, height in disease.waves]
    weights = []
    for day in range(WINDOW_START, WINDOW_END + 1):
        weights.append(
            sum(h * math.exp(-0.5 * ((day - p) / w) ** 2) for p, w, h in peaks if abs(day - p) < 5 * w)
        )
    return tuple(itertools.accumulate(weights))


_TABLES = {d.key: _density(d) for d in DISEASES}


class Episode(NamedTuple):
    disease: WaveDisease
    start: int
    start_minute: int
    end: int
    end_minute: int
    #: (start day, days) of the ICU contact, ventilation and ECMO, or None
    icu: tuple[int, int] | None
    ventilation: tuple[int, int] | None
    ecmo: tuple[int, int] | None
    dies: bool
    #: "marker" (diagnosis G and positive PCR), "excluded" (diagnosis A, negative PCR), "suspected"
    #: (COVID-19 U07.2, negative PCR), "test-only" (positive PCR without diagnosis)
    coding: str
    pneumonia: bool


def _between(rng: Random, low: int, high: int) -> int:
    return low + int(rng.random() * (high - low + 1))


def _overlaps(start: int, end: int, contacts: list[_Contact]) -> bool:
    return any(c.start <= end + 1 and start <= c.end + 1 for c in contacts)


def plan(
    patient: _Patient,
    contacts: list[_Contact],
    death: tuple[int, int] | None,
    consent: _Consent | None,
) -> tuple[list[Episode], tuple[int, int] | None, list[_Contact], _Consent | None, str | None]:
    """Draw the patient's epidemic stays; returns them with the death, base contacts and consent adjusted
    to a fatal stay, and the postal code."""
    site = patient.site
    rng = Random(((site._seed_base | patient.index) << 1) | 1)
    home = _HOME_REGIONS[int(site.prefix.rsplit(".", 1)[1]) % len(_HOME_REGIONS)]
    draw = rng.random()
    if draw < 0.03:
        postal = None
    else:
        regions = home if draw < 0.8 else _ALL_REGIONS
        postal = regions[int(rng.random() * len(regions))] + f"{_between(rng, 0, 999):03d}"
    episodes: list[Episode] = []
    for disease in DISEASES:
        table = _TABLES[disease.key]
        day = WINDOW_START + bisect.bisect_right(table, rng.random() * table[-1])
        age = (day - patient.birth) / 365.2425
        if rng.random() >= disease.risk * disease.age_factor(age) or day < patient.birth:
            continue
        episodes.append(_episode(rng, disease, day, age))
    episodes.sort(key=lambda e: e.start)
    kept: list[Episode] = []
    for episode in episodes:
        if episode.end > DATA_CUTOFF or _overlaps(episode.start, episode.end, contacts):
            continue
        if kept and episode.start <= kept[-1].end + 1:
            continue
        if death is not None and death[0] <= episode.end:
            continue
        if episode.dies:
            before = [c for c in contacts if c.end < episode.start]
            if not before:
                episode = episode._replace(dies=False)
            else:
                contacts = before
                death = (episode.end, episode.end_minute)
                if consent is not None and consent.signed > episode.end:
                    consent = None
                kept.append(episode)
                break
        kept.append(episode)
    return kept, death, contacts, consent, postal


def _episode(rng: Random, disease: WaveDisease, day: int, age: float) -> Episode:
    days = max(1, min(60, round(disease.median_days * math.exp(0.6 * rng.gauss(0, 1)))))
    end = day + days
    icu = ventilation = ecmo = None
    severe_factor = 1.3 if age >= 60 or (disease.key == "rsv" and age < 1) else 1.0
    if rng.random() < disease.icu * severe_factor and days >= 2:
        icu_start = day + _between(rng, 0, min(2, days - 1))
        icu_days = _between(rng, 1, end - icu_start)
        icu = (icu_start, icu_days)
        if rng.random() < disease.ventilation:
            vent_start = icu_start + _between(rng, 0, min(1, icu_days - 1))
            ventilation = (vent_start, _between(rng, 0, icu_start + icu_days - vent_start))
            if rng.random() < disease.ecmo:
                ecmo_start = vent_start + _between(rng, 0, ventilation[1])
                ecmo = (ecmo_start, _between(rng, 0, vent_start + ventilation[1] - ecmo_start))
    risk = disease.death * (2.5 if age >= 80 else 1.5 if age >= 60 else 0.3) + (0.25 if icu else 0.0)
    dies = rng.random() < risk
    draw = rng.random()
    coding = "marker"
    if draw < 0.04:
        coding = "excluded"
    elif draw < 0.08 and disease.key == "covid":
        coding = "suspected"
    elif draw < 0.12:
        coding = "test-only"
    return Episode(
        disease,
        day,
        _between(rng, 180, 1439),
        end,
        _between(rng, 540, 900),
        icu,
        ventilation,
        ecmo,
        dies,
        coding,
        rng.random() < 0.6,
    )


def _condition(
    identifier: str,
    subject: dict[str, str],
    encounter: dict[str, str],
    code: str,
    display: str,
    day: int,
    certainty: str,
) -> dict[str, Any]:
    resource = fhir.condition(
        identifier,
        subject,
        encounter,
        fhir.icd_code(code, display, year_of(day)),
        fhir.RESOLVED,
        DAYS[day],
        None,
    )
    # A copy of the coding: `icd_code` hands out one shared (cached) concept to every resource.
    coding = {
        **resource["code"]["coding"][0],
        "extension": [{"url": _CERTAINTY, "valueCoding": {"system": _CERTAINTY_SYSTEM, "code": certainty}}],
    }
    resource["code"] = {**resource["code"], "coding": [coding]}
    return resource


def _test(
    identifier: str,
    subject: dict[str, str],
    encounter: dict[str, str] | None,
    loinc: tuple[str, str],
    when: str,
    positive: bool,
) -> dict[str, Any]:
    resource = fhir.pcr_observation(identifier, subject, encounter or {}, when, positive)
    resource["code"] = {"coding": [{"system": _LOINC, "code": loinc[0], "display": loinc[1]}]}
    if encounter is None:
        del resource["encounter"]
    return resource


def _procedure(
    identifier: str,
    subject: dict[str, str],
    encounter: dict[str, str],
    code: tuple[str, str],
    start: str,
    end: str,
) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": identifier,
        "meta": {
            "profile": [
                "https://www.medizininformatik-initiative.de/fhir/ext/modul-icu/StructureDefinition/beatmung"
            ]
        },
        "status": "completed",
        "code": {"coding": [{"system": _SNOMED, "code": code[0], "display": code[1]}]},
        "subject": subject,
        "encounter": encounter,
        "performedPeriod": {"start": start, "end": end},
    }


def emit(patient: _Patient, episodes: list[Episode]) -> None:
    """Emit the resources of the patient's epidemic stays."""
    rng = Random(((patient.site._seed_base | patient.index) << 2) | 3)
    subject = patient.subject
    for number, episode in enumerate(episodes):
        prefix = f"{patient.id}-w{number}"
        disease = episode.disease
        stay = fhir.encounter(
            f"{prefix}e",
            patient.site.encounter_system,
            subject,
            True,
            timestamp(episode.start, episode.start_minute),
            timestamp(episode.end, episode.end_minute),
            "1000" if (episode.start - patient.birth) < 18 * 365.2425 else "0100",
        )
        patient.emit("Encounter", stay)
        stay_ref = fhir.reference("Encounter", f"{prefix}e")
        code, display = disease.codes[int(rng.random() * len(disease.codes))]
        diagnoses: list[tuple[str, str, str]] = []
        if episode.coding == "marker":
            diagnoses.append((code, display, "G"))
        elif episode.coding == "excluded":
            diagnoses.append((code, display, "A"))
        elif episode.coding == "suspected":
            diagnoses.append(("U07.2", "COVID-19, Virus nicht nachgewiesen", "V"))
        if episode.pneumonia and disease.key == "covid":
            diagnoses.append(("J12.8", "Pneumonie durch sonstige Viren", "G"))
        for index, (icd, text, certainty) in enumerate(diagnoses):
            condition = _condition(
                f"{prefix}c{index}", subject, stay_ref, icd, text, episode.start, certainty
            )
            patient.emit("Condition", condition)
        test_minute = min(1439, episode.start_minute + _between(rng, 10, 60))
        when = timestamp(episode.start, test_minute)
        positive = episode.coding in ("marker", "test-only")
        patient.emit("Observation", _test(f"{prefix}o0", subject, stay_ref, disease.loinc, when, positive))
        if rng.random() < 0.1:
            # A positive result from a test centre, without any encounter: no case-linked indicator counts it.
            day = max(patient.birth, episode.start - _between(rng, 1, 5))
            patient.emit(
                "Observation", _test(f"{prefix}o1", subject, None, disease.loinc, timestamp(day, 600), True)
            )
        if episode.icu is None:
            continue
        icu_start, icu_days = episode.icu
        icu_start_minute = (
            episode.start_minute + 60 if icu_start == episode.start else _between(rng, 180, 1200)
        )
        icu_start_minute = min(icu_start_minute, 1439)
        icu_end = icu_start + icu_days
        icu_end_minute = episode.end_minute if icu_end >= episode.end else _between(rng, 480, 900)
        if icu_end >= episode.end:
            icu_end = episode.end
        unit = {
            "resourceType": "Encounter",
            "id": f"{prefix}u",
            "meta": {
                "profile": [
                    "https://www.medizininformatik-initiative.de/fhir/core/modul-fall/StructureDefinition/KontaktGesundheitseinrichtung"
                ]
            },
            "status": "finished",
            "class": stay["class"],
            "type": _UNIT_TYPE,
            "serviceType": _ICU,
            "subject": subject,
            "period": {
                "start": timestamp(icu_start, icu_start_minute),
                "end": timestamp(icu_end, icu_end_minute),
            },
            "partOf": stay_ref,
        }
        patient.emit("Encounter", unit)
        unit_ref = fhir.reference("Encounter", f"{prefix}u")
        for index, (period, code_pair) in enumerate(
            ((episode.ventilation, _VENTILATION), (episode.ecmo, _ECMO))
        ):
            if period is None:
                continue
            first, length = period
            last = min(first + length, icu_end)
            start = timestamp(first, max(icu_start_minute, 600) if first == icu_start else 600)
            end = timestamp(last, min(icu_end_minute, 540) if last == icu_end else 540)
            if start >= end:
                end = start
            patient.emit(
                "Procedure", _procedure(f"{prefix}pr{index}", subject, unit_ref, code_pair, start, end)
            )
