"""Enrolment of a site patient into a study: pseudonym, consent, allocation, and the ResearchSubject.

In this order, and nothing is stored unless all succeed:

1. the person may enrol (data entry, site investigator), the study is recruiting, the patient is in the
   site store and not yet in the study, the stratification factors are the study's with valid levels,
   and the patient meets the study's eligibility query, if it has one (`eligibility.py`);
2. consent: the patient's consent in the site store is checked (`consent.py`, the one `is_consented`);
   a refusal says why (none, declined, withdrawn, expired...);
3. the study pseudonym of the patient in the study's domain at this site (`datenraum.studies.pseudonyms`):
   the same patient always gets the same one, so a retry after a failure asks the hub about the same
   participant again;
4. the arm: a randomised study asks the hub, which draws once per participant (asking again returns
   the same allocation); a study with one arm needs no draw;
5. the participant row and the ResearchSubject in the site store, in one transaction; then the site's
   enrolled count per arm is reported to the hub (a failed report is repeated with the next one: each
   report replaces the previous).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Protocol

import orjson

from datenraum.protocol.studies import AllocationRequest, EnrolmentReport, RecruitmentStatus, StudyDefinition
from datenraum.site.store import Store
from datenraum.site.studies.database import EdcDatabase
from datenraum.site.studies.eligibility import EligibilityUnanswerable, is_eligible
from datenraum.site.studies.hub import HubUnavailable, StudyHub
from datenraum.site.studies.permissions import Action, PermissionDenied, allowed
from datenraum.site.studies.records import Participant, Records
from datenraum.site.studies.staff import Staff
from datenraum.site.studies.writeback import StudySubject, patient_exists, research_subject, write_resources
from datenraum.studies.consent import ConsentDecision
from datenraum.studies.pseudonyms import PseudonymDomain, domain_key, generate

__all__ = [
    "ConsentGate",
    "EnrolmentRefused",
    "Enrolments",
    "pseudonym_domain",
    "pseudonym_system",
]

log = logging.getLogger("datenraum.site.studies")


class EnrolmentRefused(ValueError):
    """The patient cannot be enrolled; the text says why, for the person at the screen."""


class ConsentGate(Protocol):
    def decide(self, patient_id: str, day: dt.date) -> ConsentDecision:
        """Whether the patient may be enrolled on `day`, and why (not), with the deciding record."""
        ...


def pseudonym_domain(definition: StudyDefinition, site: str) -> PseudonymDomain:
    """The study's pseudonym domain at this site: prefix `<ACRONYM>-<site>-`, 8 digits and a Damm digit."""
    acronym = "".join(c for c in definition.acronym.upper() if c.isalnum())[:12] or definition.study_id
    return PseudonymDomain(definition.study_id, site, prefix=f"{acronym}-{site}-")


def pseudonym_system(definition: StudyDefinition, site: str) -> str:
    """The identifier system of the domain's pseudonyms (as gPAS names a domain)."""
    return f"urn:datenraum:study:{definition.study_id}:site:{site}:pseudonym"


class Enrolments:
    def __init__(
        self,
        database: EdcDatabase,
        store: Store,
        hub: StudyHub,
        consent: ConsentGate,
        site: str,
        site_secret: bytes,
        study_url: str,
    ) -> None:
        self._db = database
        self._records = Records(database)
        self._store = store
        self._hub = hub
        self._consent = consent
        self._site = site
        self._secret = site_secret
        self._study_url = study_url.rstrip("/")

    def enrol(
        self,
        staff: Staff,
        definition: StudyDefinition,
        patient_id: str,
        factors: Mapping[str, str],
        now: dt.datetime,
    ) -> Participant:
        if not allowed(staff.role, Action.ENROL):
            role = staff.role.value if staff.role else "no role"
            raise PermissionDenied(f"{staff.email} ({role}) may not enrol in study {definition.study_id}")
        if definition.recruitment_status is not RecruitmentStatus.RECRUITING:
            raise EnrolmentRefused(f"the study is {definition.recruitment_status.value}, not recruiting")
        patient_id = patient_id.strip()
        if not patient_id:
            raise EnrolmentRefused("the site patient id is empty")
        if not patient_exists(self._store, patient_id):
            raise EnrolmentRefused(f"there is no patient {patient_id!r} in the site store")
        if self._records.participant_of_patient(definition.study_id, patient_id) is not None:
            raise EnrolmentRefused(f"patient {patient_id!r} is enrolled in this study already")
        strata = self._strata(definition, factors)
        if definition.eligibility is not None:
            try:
                eligible = is_eligible(self._store, definition.eligibility, patient_id, now.date())
            except EligibilityUnanswerable as error:
                raise EnrolmentRefused(str(error)) from None
            if not eligible:
                raise EnrolmentRefused(
                    f"patient {patient_id!r} does not meet the study's eligibility criteria (site store data)"
                )
        decision = self._consent.decide(patient_id, now.date())
        if not decision.consented:
            raise EnrolmentRefused(f"no valid consent: {decision.reason}")
        domain = pseudonym_domain(definition, self._site)
        taken = {p.pseudonym for p in self._records.participants(definition.study_id)}
        pseudonym = generate(domain, domain_key(self._secret, domain), patient_id, taken.__contains__)
        arm, allocation_id = self._arm(definition, pseudonym, strata)
        subject = StudySubject(
            definition.study_id, pseudonym_system(definition, self._site), pseudonym, patient_id
        )
        record = decision.record
        consent_id = (
            record.source.removeprefix("Consent/")
            if record and record.source.startswith("Consent/")
            else None
        )
        resource = research_subject(
            subject,
            arm,
            now.date().isoformat(),
            consent_id,
            f"{self._study_url}/{definition.study_id}",
        )
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO participant VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    definition.study_id,
                    pseudonym,
                    patient_id,
                    arm,
                    allocation_id,
                    orjson.dumps(strata).decode(),
                    now.isoformat(),
                    staff.email,
                ),
            )
            write_resources(self._store, [resource])
        self.report(definition, now)
        participant = self._records.participant(definition.study_id, pseudonym)
        assert participant is not None  # committed above
        return participant

    def report(self, definition: StudyDefinition, now: dt.datetime) -> bool:
        """Send the site's enrolled count per arm; False (and logged) when the hub is away."""
        counts = self._records.enrolled_per_arm(definition.study_id)
        enrolled = tuple(sorted((arm.code, counts.get(arm.code, 0)) for arm in definition.arms))
        try:
            self._hub.report_enrolment(EnrolmentReport(definition.study_id, self._site, enrolled, now))
        except HubUnavailable as error:
            log.warning(
                "enrolment report for %s not sent (sent again with the next one): %s",
                definition.study_id,
                error,
            )
            return False
        return True

    @staticmethod
    def _strata(definition: StudyDefinition, factors: Mapping[str, str]) -> dict[str, str]:
        known = {factor.name: factor for factor in definition.factors}
        unknown = sorted(set(factors) - set(known))
        if unknown:
            raise EnrolmentRefused(f"unknown stratification factor {unknown[0]!r}")
        strata = {}
        for name, factor in known.items():
            level = factors.get(name, "")
            if level not in factor.levels:
                raise EnrolmentRefused(f"{name}: choose one of {', '.join(factor.levels)}")
            strata[name] = level
        return strata

    def _arm(self, definition: StudyDefinition, pseudonym: str, strata: dict[str, str]) -> tuple[str, str]:
        if not definition.randomised:
            if len(definition.arms) != 1:
                raise EnrolmentRefused(
                    "the study has several arms but no randomisation; the hub must fix its design"
                )
            return definition.arms[0].code, "not-randomised"
        request = AllocationRequest(definition.study_id, self._site, pseudonym, tuple(sorted(strata.items())))
        try:
            allocation = self._hub.allocate(request)
        except HubUnavailable as error:
            raise EnrolmentRefused(
                f"the randomisation could not be asked at the hub ({error}); nothing was stored, try again"
            ) from None
        arms = {arm.code for arm in definition.arms}
        if (
            allocation.participant != pseudonym
            or allocation.study_id != definition.study_id
            or allocation.arm not in arms
        ):
            raise EnrolmentRefused(
                "the hub's allocation does not fit this participant and study; nothing was stored"
            )
        return allocation.arm, allocation.allocation_id
