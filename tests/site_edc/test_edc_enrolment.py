"""Enrolment at the site EDC: consent checked with the one `is_consented`, the study pseudonym, the hub's
allocation, and the ResearchSubject that joins study and routine data in the site store. A refused
enrolment says why and stores nothing."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from datenraum.protocol.studies import RecruitmentStatus, StudyRole
from datenraum.site.store import Store
from datenraum.site.studies.enrolment import EnrolmentRefused, Enrolments, pseudonym_domain
from datenraum.site.studies.permissions import PermissionDenied
from datenraum.site.studies.records import Records
from datenraum.site.studies.staff import Staff
from datenraum.site.studies.study_views import register_study_views
from datenraum.studies.pseudonyms import pseudonym_problem

from .conftest import DATA_ENTRY, MONITOR, NOW, SITE, demo_definition

SECRET = bytes(range(32))
DEFINITION = demo_definition()
ENTRY = Staff(DATA_ENTRY, "Doku", DEFINITION.study_id, StudyRole.DATA_ENTRY)


@pytest.fixture
def enrolments(edc_database, site_store, study_hub, consent_gate) -> Enrolments:
    return Enrolments(edc_database, site_store, study_hub, consent_gate, SITE, SECRET, "urn:datenraum:study")


def research_subjects(store: Store) -> list[dict]:
    with store.snapshot() as snapshot:
        rows = snapshot.connection.execute(
            "SELECT json FROM resource WHERE resource_type = 'ResearchSubject' ORDER BY id"
        ).fetchall()
    return [orjson.loads(text) for (text,) in rows]


def test_a_consented_patient_gets_a_valid_pseudonym_the_hubs_arm_and_a_research_subject(
    enrolments, edc_database, site_store, study_hub
) -> None:
    participant = enrolments.enrol(ENTRY, DEFINITION, "p-consented", {"geschlecht": "female"}, NOW)

    assert pseudonym_problem(pseudonym_domain(DEFINITION, SITE), participant.pseudonym) is None
    assert participant.arm == study_hub.allocations[(DEFINITION.study_id, participant.pseudonym)].arm
    assert participant.strata == {"geschlecht": "female"}
    (subject,) = research_subjects(site_store)
    assert subject["individual"] == {"reference": "Patient/p-consented"}
    assert subject["identifier"][0]["value"] == participant.pseudonym
    assert subject["identifier"][0]["type"]["coding"][0]["code"] == "ANON"
    assert subject["consent"] == {"reference": "Consent/c-1"}
    assert subject["assignedArm"] == participant.arm
    # The site's enrolled count per arm went to the hub.
    assert dict(study_hub.reports[-1].enrolled)[participant.arm] == 1


def test_study_data_join_routine_data_at_the_site_through_the_study_subject_table(
    enrolments, site_store
) -> None:
    register_study_views(site_store)
    participant = enrolments.enrol(ENTRY, DEFINITION, "p-consented", {"geschlecht": "female"}, NOW)
    with site_store.snapshot() as snapshot:
        rows = snapshot.connection.execute(
            "SELECT s.pseudonym, s.arm, c.code FROM site_study_subject s JOIN condition c USING (patient_id)"
        ).fetchall()
    assert rows == [(participant.pseudonym, participant.arm, "I21.0")]


@pytest.mark.parametrize(
    ("patient", "reason"),
    [
        ("p-declined", "declined on 2025-02-01"),
        ("p-expired", "expired on 2024-01-01"),
        ("p-withdrawn", "declined on 2025-09-01"),
        ("p-no-consent", "no consent record for policy"),
        ("p-unknown", "there is no patient 'p-unknown' in the site store"),
    ],
)
def test_an_enrolment_without_valid_consent_is_refused_with_the_reason_and_stores_nothing(
    enrolments, edc_database, site_store, study_hub, patient, reason
) -> None:
    with pytest.raises(EnrolmentRefused, match=reason):
        enrolments.enrol(ENTRY, DEFINITION, patient, {"geschlecht": "male"}, NOW)
    assert Records(edc_database).participants(DEFINITION.study_id) == []
    assert research_subjects(site_store) == []
    assert study_hub.allocations == {}


def test_a_patient_is_enrolled_once(enrolments) -> None:
    enrolments.enrol(ENTRY, DEFINITION, "p-consented", {"geschlecht": "female"}, NOW)
    with pytest.raises(EnrolmentRefused, match="enrolled in this study already"):
        enrolments.enrol(ENTRY, DEFINITION, "p-consented", {"geschlecht": "female"}, NOW)


@pytest.mark.parametrize(
    ("factors", "reason"),
    [
        ({}, "geschlecht: choose one of female, male"),
        ({"geschlecht": "x"}, "choose one"),
        ({"alter": "1"}, "unknown stratification factor 'alter'"),
    ],
)
def test_stratification_factors_must_be_the_studys_with_valid_levels(enrolments, factors, reason) -> None:
    with pytest.raises(EnrolmentRefused, match=reason):
        enrolments.enrol(ENTRY, DEFINITION, "p-consented", factors, NOW)


def test_a_study_that_is_not_recruiting_enrols_nobody(enrolments) -> None:
    closed = dataclasses.replace(DEFINITION, recruitment_status=RecruitmentStatus.CLOSED)
    with pytest.raises(EnrolmentRefused, match="the study is closed, not recruiting"):
        enrolments.enrol(ENTRY, closed, "p-consented", {"geschlecht": "female"}, NOW)


def test_a_monitor_cannot_enrol(enrolments) -> None:
    monitor = Staff(MONITOR, "Monitor", DEFINITION.study_id, StudyRole.MONITOR)
    with pytest.raises(PermissionDenied, match="monitor"):
        enrolments.enrol(monitor, DEFINITION, "p-consented", {"geschlecht": "female"}, NOW)


def test_with_the_hub_away_nothing_is_stored_and_a_retry_asks_about_the_same_participant(
    enrolments, edc_database, site_store, study_hub
) -> None:
    study_hub.away = True
    with pytest.raises(EnrolmentRefused, match="could not be asked at the hub"):
        enrolments.enrol(ENTRY, DEFINITION, "p-consented", {"geschlecht": "female"}, NOW)
    assert Records(edc_database).participants(DEFINITION.study_id) == []
    assert research_subjects(site_store) == []

    study_hub.away = False
    participant = enrolments.enrol(ENTRY, DEFINITION, "p-consented", {"geschlecht": "female"}, NOW)
    assert list(study_hub.allocations) == [(DEFINITION.study_id, participant.pseudonym)]


def test_an_allocation_for_another_participant_is_not_taken(enrolments, edc_database, study_hub) -> None:
    real_allocate = study_hub.allocate

    def confused(request):
        return dataclasses.replace(real_allocate(request), participant="HERZAKTIV-uk-nord-000000000")

    study_hub.allocate = confused
    with pytest.raises(EnrolmentRefused, match="does not fit this participant"):
        enrolments.enrol(ENTRY, DEFINITION, "p-consented", {"geschlecht": "female"}, NOW)
    assert Records(edc_database).participants(DEFINITION.study_id) == []


def _criterion(code: str, system: str, display: str, **rest) -> dict:
    context = {"Diagnose": "Diagnose", "Patient": "Patient"}[rest.pop("context", "Diagnose")]
    return {
        "context": {"system": "fdpg.mii.cds", "code": context, "display": context},
        "termCodes": [{"system": system, "code": code, "display": display}],
        **rest,
    }


MYOCARDIAL_INFARCTION = _criterion(
    "I21", "http://fhir.de/CodeSystem/bfarm/icd-10-gm", "Akuter Myokardinfarkt"
)
OVER_70 = _criterion(
    "424144002",
    "http://snomed.info/sct",
    "Alter",
    context="Patient",
    valueFilter={"type": "quantity-comparator", "comparator": "gt", "value": 70, "unit": {"code": "a"}},
)


def eligibility(*criteria: dict) -> dict:
    return {
        "version": "https://medizininformatik-initiative.de/fdpg/StructuredQuery/v3/schema",
        "inclusionCriteria": [[criterion] for criterion in criteria],
    }


def test_a_patient_who_meets_the_eligibility_query_is_enrolled(enrolments, edc_database) -> None:
    definition = dataclasses.replace(DEFINITION, eligibility=eligibility(MYOCARDIAL_INFARCTION))
    participant = enrolments.enrol(ENTRY, definition, "p-consented", {"geschlecht": "female"}, NOW)
    assert Records(edc_database).participant(DEFINITION.study_id, participant.pseudonym) is not None


def test_a_patient_outside_the_eligibility_query_is_refused_and_nothing_is_stored(
    enrolments, edc_database, site_store, study_hub
) -> None:
    """The patients were born in 1961: 64 years old on the day of enrolment, not over 70."""
    definition = dataclasses.replace(DEFINITION, eligibility=eligibility(MYOCARDIAL_INFARCTION, OVER_70))
    with pytest.raises(EnrolmentRefused, match="does not meet the study's eligibility criteria"):
        enrolments.enrol(ENTRY, definition, "p-consented", {"geschlecht": "female"}, NOW)
    assert Records(edc_database).participants(DEFINITION.study_id) == []
    assert research_subjects(site_store) == [] and study_hub.allocations == {}


def test_an_eligibility_the_site_cannot_run_refuses_enrolment_saying_why(enrolments) -> None:
    definition = dataclasses.replace(DEFINITION, eligibility={"inclusionCriteria": "alle"})
    with pytest.raises(EnrolmentRefused, match="not a valid structured query"):
        enrolments.enrol(ENTRY, definition, "p-consented", {"geschlecht": "female"}, NOW)
