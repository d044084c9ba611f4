"""The simulated hospital history of one patient, emitted as FHIR resources.

A patient is drawn in three steps: demographics and diagnoses (age- and sex-dependent, with risk factors
between diagnoses), a timeline of contacts (routine visits and stays plus one stay per acute event),
and then, contact by contact, everything documented during it. All randomness comes from one
``random.Random`` seeded with (seed, site profile, patient index), so a patient's resources depend on
nothing else: not on other patients, shard boundaries or the number of worker processes.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from random import Random
from typing import NamedTuple

from . import biobank, codes, waves
from . import resources as fhir
from .codes import Diagnosis
from .labs import LabModel, egfr, hba1c_ifcc, lognormal
from .profiles import SiteProfile, site_profile
from .timeline import (
    COVID_SCREENING_END,
    COVID_START,
    DATA_CUTOFF,
    DAYS,
    WINDOW_END,
    WINDOW_START,
    add_years,
    timestamp,
    year_of,
)

Emit = Callable[[str, fhir.Resource], None]

_AGE_BANDS = ((0, 18), (18, 40), (40, 60), (60, 80), (80, 100))
_GENDERS = (("female", 0.505), ("male", 0.49), ("other", 0.003), ("unknown", 0.002))
_CANCERS = ("breast_cancer", "lung_cancer", "colorectal_cancer", "prostate_cancer")
#: Diagnoses that shorten life expectancy, for the risk of dying in the window.
_SEVERE = frozenset({*_CANCERS, "heart_failure", "copd", "ckd", "cirrhosis", "sepsis", "stroke"})
_DEATH_RISK = (0.002, 0.005, 0.03, 0.08, 0.2)
#: Shares of the consent states: permit, refusal, later withdrawal; the rest signed nothing.
_CONSENT_PERMIT, _CONSENT_DENY, _CONSENT_WITHDRAWN = 0.85, 0.92, 0.95
_CONSENT_PERMIT_OR_WITHDRAWN = _CONSENT_PERMIT + (_CONSENT_WITHDRAWN - _CONSENT_DENY)
_ACUTE_KEYS = frozenset(d.key for d in codes.ACUTE)
_DEPARTMENT_OF = {d.key: d.department for d in (*codes.CHRONIC, *codes.ACUTE)}
_HBA1C_IFCC = codes.LAB_TESTS["hba1c_ifcc"]

#: Resource types a patient can produce.
PATIENT_RESOURCE_TYPES = (
    "Patient",
    "Consent",
    "Encounter",
    "Condition",
    "Observation",
    "Procedure",
    "MedicationStatement",
    "MedicationAdministration",
    "Specimen",
)


class _Option(NamedTuple):
    """A diagnosis prepared for drawing: its prevalence for each (age band, sex), with the site profile's
    multiplier folded in, and its codes as a table."""

    diagnosis: Diagnosis
    #: Indexed by ``2 * age band + female``.
    prevalence: tuple[float, ...]
    risk_factors: tuple[tuple[str, float], ...]
    codes: tuple[tuple[str, str], ...]
    cumulative: tuple[float, ...]


def _table(weights: Sequence[float]) -> tuple[float, ...]:
    return tuple(itertools.accumulate(weights))


def _between(rng: Random, low: int, high: int) -> int:
    """Draw an integer from ``low`` to ``high`` inclusive.

    ``Random.randint`` is implemented in Python and costs ten times as much; the bias of scaling a
    53-bit float is far below anything the simulation could show.
    """
    return low + int(rng.random() * (high - low + 1))


def _below(rng: Random, n: int) -> int:
    """Draw an integer from 0 to ``n - 1``."""
    return int(rng.random() * n)


def _pick(rng: Random, cumulative: tuple[float, ...]) -> int:
    """Draw an index with the probabilities given by the cumulative weights."""
    return bisect.bisect_right(cumulative, rng.random() * cumulative[-1])


class _Contact(NamedTuple):
    """A contact with the hospital: an outpatient visit or an inpatient stay."""

    start: int
    start_minute: int
    end: int
    end_minute: int
    inpatient: bool
    event: Diagnosis | None
    event_code: tuple[str, str] | None


@dataclass(frozen=True, slots=True)
class _Consent:
    """The patient's broad consent: signed on ``signed``, permitted or refused, possibly withdrawn."""

    signed: int
    permit: bool
    withdrawn: int | None
    #: Withdrawal documented as a second, refusing Consent (else as the first one's period ending early).
    revocation: bool


class Site:
    """The fixed context of one generated site: seed, profile, id prefix and prepared tables."""

    def __init__(self, seed: int, profile_index: int, *, waves: bool = False, biobanks: bool = False) -> None:
        if seed < 0 or seed >= 2**63:
            raise ValueError(f"seed must be between 0 and 2**63 - 1, got {seed}")
        self.profile: SiteProfile = site_profile(profile_index)
        #: Ids of all resources start with this, so that outputs of different sites never collide.
        self.prefix = f"s{seed}.{profile_index}"
        # Patient indexes occupy the low 40 bits; MT19937 seeding mixes all bits of the integer.
        self._seed_base = (seed << 48) | (profile_index << 40)
        base = f"https://synth.datenraum.example/{self.prefix}/sid/"
        self.patient_system = base + "patient-id"
        self.encounter_system = base + "aufnahmenummer"
        self.specimen_system = base + "bioproben"
        self.age_table = _table(self.profile.age_bands)
        self.gender_table = _table([share for _, share in _GENDERS])
        self.options = tuple(self._option(d) for d in (*codes.CHRONIC, *codes.ACUTE))
        self.blood_table = _table([w for _, _, w in codes.BLOOD_SPECIMENS])
        self.egfr_test = codes.LAB_TESTS[self.profile.egfr_test]
        #: Epidemic waves (``waves.py``): off by default, so that the output of a seed stays the same.
        self.waves = waves
        #: Biobank processing of the specimens (``biobank.py``): off by default, for the same reason.
        self.biobanks = biobanks

    def _option(self, diagnosis: Diagnosis) -> _Option:
        factor = self.profile.prevalence.get(diagnosis.key, 1.0)
        return _Option(
            diagnosis,
            tuple(
                p * factor * sex for p in diagnosis.prevalence for sex in (diagnosis.male, diagnosis.female)
            ),
            diagnosis.risk_factors,
            tuple((code, display) for code, display, _ in diagnosis.codes),
            _table([weight for _, _, weight in diagnosis.codes]),
        )

    def simulate(self, index: int, emit: Emit) -> None:
        """Generate patient ``index`` and pass each of its resources to ``emit``."""
        if not 0 <= index < 2**40:
            raise ValueError(f"patient index out of range: {index}")
        _Patient(self, index, Random(self._seed_base | index), emit).run()


class _Patient:
    """One patient's simulation; lives only while its resources are emitted."""

    def __init__(self, site: Site, index: int, rng: Random, emit: Emit) -> None:
        self.site = site
        self.rng = rng
        self.emit = emit
        self.index = index
        self.id = f"{site.prefix}-p{index}"
        self.subject = fhir.reference("Patient", self.id)
        self.counters = dict.fromkeys(("e", "c", "o", "pr", "ma", "ms", "cs", "sp", "sd"), 0)
        #: Diagnosis key -> (ICD code, display) of every diagnosis the patient has in the window.
        self.diagnoses: dict[str, tuple[str, str]] = {}
        #: Diagnosis key -> reference to the Condition that first recorded it.
        self.first_records: dict[str, dict[str, str]] = {}
        self.statements: set[str] = set()
        self.once: set[str] = set()
        # Drawn at the start of run():
        self.female = False
        self.birth = 0
        self.labs: LabModel

    def _next_id(self, kind: str) -> str:
        number = self.counters[kind]
        self.counters[kind] = number + 1
        return f"{self.id}-{kind}{number}"

    # --- drawing the patient -------------------------------------------------------------------------

    def run(self) -> None:
        site, rng = self.site, self.rng
        gender = _GENDERS[_pick(rng, site.gender_table)][0]
        # Risk models need a sex; for "other" and "unknown" it is drawn at random.
        self.female = gender == "female" or (gender not in ("male", "female") and rng.random() < 0.5)
        band = _pick(rng, site.age_table)
        low, high = _AGE_BANDS[band]
        age = _between(rng, low, high - 1) if band < 4 else 80 + min(24, int(rng.expovariate(1 / 6)))
        first = _between(rng, WINDOW_START, WINDOW_END)
        self.birth = first - int((age + rng.random()) * 365.2425)
        events = self._draw_diagnoses(band)
        contacts = self._draw_contacts(first, events)
        self.labs = LabModel(rng, self.female, age, {k: code for k, (code, _) in self.diagnoses.items()})
        death = self._draw_death(contacts)
        if death is not None and contacts[-1].inpatient and death[0] == contacts[-1].end:
            last = contacts[-1]
            contacts[-1] = last._replace(end_minute=death[1])
        consent = self._draw_consent(contacts)
        episodes: list[waves.Episode] = []
        postal_code = None
        if site.waves:
            episodes, death, contacts, consent, postal_code = waves.plan(self, contacts, death, consent)

        self._emit_patient(gender, death, postal_code)
        if consent is not None:
            self._emit_consent(consent)
        chronic_at = self._schedule_chronic(len(contacts))
        known: list[str] = []
        for number, contact in enumerate(contacts):
            self._emit_contact(contact, chronic_at.get(number, ()), known)
        if consent is not None and consent.permit:
            self._emit_specimens(contacts, consent)
        if episodes:
            waves.emit(self, episodes)

    def _draw_diagnoses(self, band: int) -> list[tuple[Diagnosis, tuple[str, str]]]:
        """Draw chronic diagnoses into ``self.diagnoses`` and return the acute events."""
        rng, diagnoses = self.rng, self.diagnoses
        events: list[tuple[Diagnosis, tuple[str, str]]] = []
        column = 2 * band + self.female
        for option in self.site.options:
            p = option.prevalence[column]
            for key, factor in option.risk_factors:
                if key in diagnoses:
                    p *= factor
            if rng.random() < p:
                diagnosis = option.diagnosis
                code = option.codes[_pick(rng, option.cumulative)]
                diagnoses[diagnosis.key] = code
                if diagnosis.acute:
                    events.append((diagnosis, code))
        return events

    def _draw_contacts(self, first: int, events: list[tuple[Diagnosis, tuple[str, str]]]) -> list[_Contact]:
        rng, site = self.rng, self.site
        chronic = len(self.diagnoses) - len(events)
        # Sicker patients come more often; the frailty factor gives the long tail of frequent visitors.
        expected = (0.7 + 0.7 * chronic) * lognormal(rng, 1.0, 0.6)
        routine = int(rng.expovariate(1.0) * expected)
        if routine == 0 and not events:
            routine = 1
        follow_up_end = min(WINDOW_END, first + int(rng.expovariate(1 / 1000)))
        contacts: list[_Contact] = []
        for n in range(routine):
            day = first if n == 0 else _between(rng, first, follow_up_end)
            if rng.random() < site.profile.inpatient_share:
                contacts.append(self._stay(day, _between(rng, 420, 720), 3.5, None, None))
            else:
                contacts.append(self._visit(day, None, None))
        for diagnosis, code in events:
            if diagnosis.key == "covid":
                low, high = max(first, COVID_START), WINDOW_END
                if low > high:
                    # Contact history ends before the pandemic: the patient cannot have had COVID-19 here.
                    del self.diagnoses[diagnosis.key]
                    continue
            else:
                low, high = first, max(follow_up_end, min(WINDOW_END, first + 365))
            day = _between(rng, low, high)
            if rng.random() < diagnosis.inpatient:
                # Emergencies arrive around the clock, except in the hour the clocks may skip.
                contacts.append(self._stay(day, _between(rng, 180, 1439), diagnosis.stay, diagnosis, code))
            else:
                contacts.append(self._visit(day, diagnosis, code))
        contacts.sort(key=lambda c: (c.start, c.start_minute))
        return self._separate(contacts)

    def _stay(
        self, day: int, minute: int, median_days: float, event: Diagnosis | None, code: tuple[str, str] | None
    ) -> _Contact:
        rng = self.rng
        days = max(1, min(60, round(lognormal(rng, median_days, 0.55))))
        # Stays still running at the extraction date are cut there; admissions end before it (WINDOW_END).
        return _Contact(day, minute, min(day + days, DATA_CUTOFF), _between(rng, 540, 900), True, event, code)

    def _visit(self, day: int, event: Diagnosis | None, code: tuple[str, str] | None) -> _Contact:
        minute = _between(self.rng, 480, 960)
        return _Contact(day, minute, day, minute + _between(self.rng, 15, 120), False, event, code)

    def _separate(self, contacts: list[_Contact]) -> list[_Contact]:
        """Move contacts that would overlap an earlier one to after it; drop those pushed past the cutoff."""
        result: list[_Contact] = []
        busy_until = -1
        for contact in contacts:
            if contact.start <= busy_until:
                shift = busy_until + _between(self.rng, 1, 30) - contact.start
                contact = contact._replace(start=contact.start + shift, end=contact.end + shift)
            if contact.end > DATA_CUTOFF:
                if contact.event is not None:
                    del self.diagnoses[contact.event.key]
                continue
            result.append(contact)
            busy_until = contact.end
        return result

    def _draw_death(self, contacts: list[_Contact]) -> tuple[int, int] | None:
        """Return (day, minute) of death if the patient dies in the window; never before the last contact."""
        rng = self.rng
        last = contacts[-1]
        age = (last.end - self.birth) / 365.2425
        band = bisect.bisect_right(codes.AGE_BAND_LIMITS, age)
        severe = sum(1 for key in self.diagnoses if key in _SEVERE)
        if rng.random() >= min(0.9, _DEATH_RISK[band] * (1.0 + 0.8 * severe)):
            return None
        if last.inpatient and rng.random() < 0.4:
            return last.end, _between(rng, 180, 1439)
        day = min(DATA_CUTOFF, last.end + _between(rng, 1, 1000))
        minute = _between(rng, 180, 1439)
        if day == last.end:
            minute = max(minute, last.end_minute + 1)
        return day, minute

    def _draw_consent(self, contacts: list[_Contact]) -> _Consent | None:
        rng = self.rng
        state = rng.random()
        if state >= _CONSENT_WITHDRAWN:
            return None
        # The broad consent is usually obtained at admission, so at the first stay if there is one.
        signed = next((c.start for c in contacts if c.inpatient), contacts[0].start)
        if state < _CONSENT_PERMIT:
            return _Consent(signed, True, None, False)
        if state < _CONSENT_DENY:
            return _Consent(signed, False, None, False)
        withdrawn = min(DATA_CUTOFF, signed + _between(rng, 30, 1500))
        return _Consent(signed, True, withdrawn if withdrawn > signed else None, rng.random() < 0.5)

    def _schedule_chronic(self, contact_count: int) -> dict[int, list[str]]:
        """Assign each chronic diagnosis to the contact at which it is first recorded."""
        rng = self.rng
        schedule: dict[int, list[str]] = {}
        for key in self.diagnoses:
            if key in _ACUTE_KEYS:
                continue
            number = 0 if rng.random() < 0.7 else _below(rng, contact_count)
            schedule.setdefault(number, []).append(key)
        return schedule

    # --- emitting resources --------------------------------------------------------------------------

    def _emit_patient(
        self, gender: str, death: tuple[int, int] | None, postal_code: str | None = None
    ) -> None:
        rng = self.rng
        deceased: tuple[str, bool | str] | None = None
        if death is not None:
            # Some sources only know that the patient died, not when.
            if rng.random() < 0.1:
                deceased = ("deceasedBoolean", True)
            else:
                deceased = ("deceasedDateTime", timestamp(*death))
        elif rng.random() < 0.25:
            deceased = ("deceasedBoolean", False)
        identifier = [{"system": self.site.patient_system, "value": f"{self.index:08d}"}]
        resource = fhir.patient(self.id, identifier, gender, DAYS[self.birth], deceased)
        if postal_code is not None:
            resource["address"] = [{"type": "both", "postalCode": postal_code, "country": "DE"}]
        self.emit("Patient", resource)

    def _emit_consent(self, consent: _Consent) -> None:
        rng = self.rng
        start = DAYS[consent.signed]
        end = DAYS[add_years(consent.signed, 30)]
        signed = timestamp(consent.signed, _between(rng, 540, 1020))
        if consent.withdrawn is None or consent.revocation:
            self.emit(
                "Consent", fhir.consent(self._next_id("cs"), self.subject, signed, start, end, consent.permit)
            )
        if consent.withdrawn is not None:
            withdrawn = DAYS[consent.withdrawn]
            if consent.revocation:
                revoked = timestamp(consent.withdrawn, _between(rng, 540, 1020))
                self.emit(
                    "Consent", fhir.consent(self._next_id("cs"), self.subject, revoked, withdrawn, end, False)
                )
            else:
                self.emit(
                    "Consent", fhir.consent(self._next_id("cs"), self.subject, signed, start, withdrawn, True)
                )

    def _emit_contact(self, contact: _Contact, new_diagnoses: Sequence[str], known: list[str]) -> None:
        rng = self.rng
        encounter_id = self._next_id("e")
        encounter_ref = fhir.reference("Encounter", encounter_id)
        age = int((contact.start - self.birth) / 365.2425)
        year = year_of(contact.start)
        start = timestamp(contact.start, contact.start_minute)
        end = timestamp(contact.end, contact.end_minute)
        self.emit(
            "Encounter",
            fhir.encounter(
                encounter_id,
                self.site.encounter_system,
                self.subject,
                contact.inpatient,
                start,
                end,
                self._department(contact, age, new_diagnoses, known),
            ),
        )
        recorded = DAYS[contact.start]
        if contact.event is not None and contact.event_code is not None:
            self._emit_condition(
                contact.event.key, contact.event_code, encounter_ref, year, recorded, recorded
            )
        for key in new_diagnoses:
            onset = (
                DAYS[max(self.birth, contact.start - _between(rng, 30, 3650))] if rng.random() < 0.5 else None
            )
            self._emit_condition(key, self.diagnoses[key], encounter_ref, year, recorded, onset)
        if contact.inpatient:
            # Stays re-code known chronic diseases as secondary diagnoses, as German billing data does.
            for key in known:
                if rng.random() < 0.5:
                    self._emit_condition(key, self.diagnoses[key], encounter_ref, year, recorded, None)
        known.extend(new_diagnoses)
        for key in new_diagnoses:
            self._emit_statements(key, contact, encounter_ref)

        event = contact.event.key if contact.event is not None else None
        keys = ["any", *known] if event is None else ["any", event, *known]
        self._emit_labs(contact, event, keys, encounter_ref, age)
        if contact.inpatient:
            keys[0] = "inpatient"
            if age >= 75:
                keys.append("elderly")
            keys.extend(self.diagnoses[key][0] for key in known)
        self._emit_procedures(contact, keys, encounter_ref, year)
        if contact.inpatient:
            self._emit_administrations(contact, keys, encounter_ref)

    def _department(self, contact: _Contact, age: int, new: Sequence[str], known: list[str]) -> str:
        if contact.event is not None:
            return contact.event.department if age >= 18 or contact.event.key == "birth" else "1000"
        if age < 18:
            return "1000"
        if contact.inpatient and age >= 80 and self.rng.random() < 0.3:
            return "0200"
        candidates = [*new, *known]
        if not candidates:
            return "0100"
        return _DEPARTMENT_OF[candidates[_below(self.rng, len(candidates))]]

    def _emit_condition(
        self,
        key: str,
        code: tuple[str, str],
        encounter_ref: dict[str, str],
        year: str,
        recorded: str,
        onset: str | None,
    ) -> None:
        condition_id = self._next_id("c")
        self.first_records.setdefault(key, fhir.reference("Condition", condition_id))
        self.emit(
            "Condition",
            fhir.condition(
                condition_id,
                self.subject,
                encounter_ref,
                fhir.icd_code(code[0], code[1], year),
                fhir.RESOLVED if key in _ACUTE_KEYS else fhir.ACTIVE,
                recorded,
                onset,
            ),
        )

    def _emit_statements(self, key: str, contact: _Contact, encounter_ref: dict[str, str]) -> None:
        rng = self.rng
        for atc, p in codes.HOME_MEDICATION.get(key, ()):
            if atc in self.statements or rng.random() >= p:
                continue
            self.statements.add(atc)
            started = DAYS[max(self.birth, contact.start - _between(rng, 0, 1500))]
            # A sixth of the long-term medication turns out to have been stopped before this contact.
            stopped = DAYS[contact.start] if rng.random() < 0.16 else None
            self.emit(
                "MedicationStatement",
                fhir.medication_statement(
                    self._next_id("ms"),
                    self.subject,
                    encounter_ref,
                    atc,
                    started,
                    stopped,
                    DAYS[contact.start],
                ),
            )

    def _emit_labs(
        self, contact: _Contact, event: str | None, keys: list[str], encounter_ref: dict[str, str], age: int
    ) -> None:
        rng = self.rng
        inpatient = contact.inpatient
        if not inpatient and event is None and rng.random() < 0.45:
            return
        day, minute = self._moment(contact, 10, 90)
        extras: list[str] = []
        for key in keys:
            for test, p_inpatient, p_outpatient in codes.LAB_RULES.get(key, ()):
                if test not in extras and rng.random() < (p_inpatient if inpatient else p_outpatient):
                    extras.append(test)
        panel = codes.ADMISSION_PANEL if inpatient else codes.OUTPATIENT_PANEL
        self._emit_draw((*panel, *extras), event, 0, day, minute, encounter_ref, age)
        if (
            event == "myocardial_infarction"
            and minute < 1260
            and (day, minute + 180) < (contact.end, contact.end_minute)
        ):
            # Serial troponin: a second sample three hours later confirms the rise.
            self._emit_draw(("troponin",), event, 0, day, minute + 180, encounter_ref, age)
        if event == "covid" or (
            inpatient and COVID_START <= day <= COVID_SCREENING_END and rng.random() < 0.9
        ):
            effective = timestamp(day, minute)
            observation = fhir.pcr_observation(
                self._next_id("o"), self.subject, encounter_ref, effective, event == "covid"
            )
            self.emit("Observation", observation)
        if inpatient:
            stay_day = _between(rng, 1, 3)
            while stay_day < contact.end - contact.start and stay_day <= 12:
                draw_minute = _between(rng, 360, 450)
                draw_day = contact.start + stay_day
                self._emit_draw(
                    codes.FOLLOW_UP_PANEL, event, stay_day, draw_day, draw_minute, encounter_ref, age
                )
                stay_day += _between(rng, 2, 4)

    def _emit_draw(
        self,
        tests: Sequence[str],
        event: str | None,
        stay_day: int,
        day: int,
        minute: int,
        encounter_ref: dict[str, str],
        age: int,
    ) -> None:
        """Emit the results of one blood draw."""
        rng, site, labs = self.rng, self.site, self.labs
        effective = timestamp(day, minute)
        creatinine = None
        for key in tests:
            if key == "egfr":
                if creatinine is None or age < 18:
                    continue  # eGFR formulas are validated for adults only
                test = site.egfr_test
                value = egfr(test.key, creatinine, age, self.female)
            else:
                value = labs.measure(key, event, stay_day)
                test = codes.LAB_TESTS[key]
                if key == "creatinine":
                    # Later eGFR is computed from the creatinine as reported, like the laboratory does.
                    creatinine = round(value, test.decimals)
                elif key == "hba1c" and rng.random() < site.profile.hba1c_ifcc_share:
                    test = _HBA1C_IFCC
                    value = hba1c_ifcc(value)
            observation = fhir.lab_observation(
                self._next_id("o"), self.subject, encounter_ref, effective, test, value, self.female
            )
            self.emit("Observation", observation)

    def _emit_procedures(
        self, contact: _Contact, keys: list[str], encounter_ref: dict[str, str], year: str
    ) -> None:
        rng = self.rng
        rules = codes.PROCEDURE_RULES if contact.inpatient else codes.AMBULATORY_PROCEDURE_RULES
        done: set[str] = set()
        for key in keys:
            for ops, p in rules.get(key, ()):
                if ops in done or ops in self.once or rng.random() >= p:
                    continue
                done.add(ops)
                if ops in codes.OPS_ONCE:
                    self.once.add(ops)
                procedure_id = self._next_id("pr")
                start, end = self._procedure_time(contact, ops)
                self.emit(
                    "Procedure",
                    fhir.procedure(procedure_id, self.subject, encounter_ref, ops, year, start, end),
                )
                chemotherapy = codes.CHEMOTHERAPY.get(key) if ops == "8-542.11" else None
                if chemotherapy is not None:
                    administration = fhir.medication_administration(
                        self._next_id("ma"),
                        self.subject,
                        encounter_ref,
                        chemotherapy,
                        contact.inpatient,
                        start,
                        end,
                        fhir.reference("Procedure", procedure_id),
                    )
                    self.emit("MedicationAdministration", administration)

    def _moment(self, contact: _Contact, after: int, within: int, length: int = 0) -> tuple[int, int]:
        """Draw (day, minute) between ``after`` and ``within`` minutes into the contact, leaving ``length``
        minutes before it ends."""
        begin = contact.start_minute + after
        end = (contact.end - contact.start) * 1440 + contact.end_minute - length
        moment = _between(self.rng, begin, max(begin, min(end, contact.start_minute + within)))
        return contact.start + moment // 1440, moment % 1440

    def _procedure_time(self, contact: _Contact, ops: str) -> tuple[str, str | None]:
        if ops == "8-550.1":  # geriatric early rehabilitation spans the stay
            return timestamp(contact.start, contact.start_minute), timestamp(contact.end, contact.end_minute)
        if not contact.inpatient:
            # Outpatient procedures (day-clinic chemotherapy, endoscopy) fill the visit.
            start = timestamp(contact.start, contact.start_minute + 5)
            end = timestamp(contact.end, contact.end_minute) if ops in codes.OPS_WITH_DURATION else None
            return start, end
        length = _between(self.rng, 45, 240) if ops in codes.OPS_WITH_DURATION else 0
        if length:
            # A late admission followed by death in the night leaves only a few hours.
            span = (contact.end - contact.start) * 1440 + contact.end_minute - contact.start_minute
            length = min(length, span - 31)
        # Interventions happen within a day and a half of admission.
        day, minute = self._moment(contact, 30, 2160, length)
        if not length:
            return timestamp(day, minute), None
        finish = minute + length
        return timestamp(day, minute), timestamp(day + finish // 1440, finish % 1440)

    def _emit_administrations(
        self, contact: _Contact, keys: list[str], encounter_ref: dict[str, str]
    ) -> None:
        rng = self.rng
        given: set[str] = set()
        for key in keys:
            for atc, p in codes.INPATIENT_MEDICATION.get(key, ()):
                if atc in given or rng.random() >= p:
                    continue
                given.add(atc)
                start_day, start_minute = self._moment(contact, 30, 240)
                start = timestamp(start_day, start_minute)
                end = None
                if not codes.DRUGS[atc].single_dose and contact.end > start_day:
                    end_day = min(contact.end, start_day + _between(rng, 1, 10))
                    # On the last day the course ends before discharge (or death, which can be at night).
                    if end_day == contact.end:
                        end_minute = min(_between(rng, 360, 480), contact.end_minute)
                    else:
                        end_minute = _between(rng, 480, 1200)
                    end = timestamp(end_day, end_minute)
                administration = fhir.medication_administration(
                    self._next_id("ma"), self.subject, encounter_ref, atc, True, start, end, None
                )
                self.emit("MedicationAdministration", administration)

    def _emit_specimens(self, contacts: list[_Contact], consent: _Consent) -> None:
        rng, site = self.rng, self.site
        if rng.random() >= site.profile.biobank_share / _CONSENT_PERMIT_OR_WITHDRAWN:
            return
        until = consent.withdrawn if consent.withdrawn is not None else DATA_CUTOFF + 1
        eligible = [c for c in contacts if consent.signed <= c.start < until]
        if not eligible:
            return
        stays = [c for c in eligible if c.inpatient] or eligible
        cancers = [key for key in _CANCERS if key in self.diagnoses]
        for _ in range(1 + (rng.random() < 0.4) + (rng.random() < 0.15)):
            contact = stays[_below(rng, len(stays))]
            moment = self._moment(contact, 5, 90)
            collected = timestamp(*moment)
            if cancers and rng.random() < 0.35:
                cancer = cancers[_below(rng, len(cancers))]
                kind, body_site = fhir.TISSUE_TYPE, fhir.TUMOUR_SITES[cancer]
                diagnosis = self.first_records.get(cancer)
            else:
                kind = fhir.BLOOD_TYPES[codes.BLOOD_SPECIMENS[_pick(rng, site.blood_table)][0]]
                body_site = fhir.VENIPUNCTURE_SITES[_below(rng, 2)] if rng.random() < 0.6 else None
                diagnosis = None
            # Samples of a withdrawn consent are destroyed; some others are used up.
            available = consent.withdrawn is None and rng.random() < 0.92
            specimen = fhir.specimen(
                self._next_id("sp"),
                site.specimen_system,
                self.subject,
                collected,
                available,
                kind,
                body_site,
                diagnosis,
            )
            derivatives = (
                biobank.process(
                    specimen, moment, site.prefix, Random(specimen["id"]), lambda: self._next_id("sd")
                )
                if site.biobanks
                else []
            )
            self.emit("Specimen", specimen)
            for derivative in derivatives:
                self.emit("Specimen", derivative)
