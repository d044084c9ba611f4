"""Feasibility's consent criterion (contract 4, on every engine) and the study library's one
`is_consented` give the same answer on the same Consents: each case below is run through both.

The cases are the ones where a rule could go wrong: a withdrawal after a permit, a renewed consent after
a withdrawal, expiry (the day after the end, and the last day), a deny inside a permit of the same
Consent, undated decisions, an inactive Consent.
"""

from __future__ import annotations

import pytest

from datenraum.studies.consent import is_consented, records_from_consent

from .builders import MDAT_STORE, PROVISION, coding, concept, consent, consented, patient, query
from .conftest import TODAY, flatten


def _deny_inside_permit(patient_id: str) -> dict:
    resource = consent(patient_id, MDAT_STORE, date="2020-01-01")
    resource["provision"]["provision"].append(
        {
            "type": "deny",
            "period": {"start": "2024-01-01", "end": "2024-12-31"},
            "code": [concept(coding(PROVISION, MDAT_STORE))],
        }
    )
    return resource


CASES = {
    "withdrawal-after-permit": (
        [
            patient("p1"),
            consent("p1", MDAT_STORE, date="2020-01-01"),
            consent(
                "p1", MDAT_STORE, decision="deny", date="2022-05-01", period=("2022-05-01", "2050-01-01")
            ),
        ],
        set(),
    ),
    "renewed-after-withdrawal": (
        [
            patient("p1"),
            consent("p1", MDAT_STORE, decision="deny", date="2020-01-01"),
            consent("p1", MDAT_STORE, date="2022-05-01", period=("2022-05-01", "2050-01-01")),
        ],
        {"p1"},
    ),
    "expiry": (
        [
            [patient("expired"), consent("expired", MDAT_STORE, period=("2020-01-01", "2024-06-14"))],
            [patient("last-day"), consent("last-day", MDAT_STORE, period=("2020-01-01", "2024-06-15"))],
            [patient("open"), consent("open", MDAT_STORE, period=("2020-01-01", None))],
            [patient("later"), consent("later", MDAT_STORE, period=("2024-06-16", "2050-01-01"))],
        ],
        {"last-day", "open"},
    ),
    "deny-inside-permit": ([patient("p1"), _deny_inside_permit("p1")], set()),
    "undated": (
        [
            [
                patient("undated-deny"),
                consent("undated-deny", MDAT_STORE, decision="deny", date=None),
                consent("undated-deny", MDAT_STORE, date="2021-01-01"),
            ],
            [patient("undated-permit"), consent("undated-permit", MDAT_STORE, date=None)],
            [
                patient("both-undated"),
                consent("both-undated", MDAT_STORE, date=None),
                consent("both-undated", MDAT_STORE, decision="deny", date=None),
            ],
        ],
        {"undated-deny", "undated-permit"},
    ),
    "inactive-or-none": (
        [
            [patient("inactive"), consent("inactive", MDAT_STORE, status="entered-in-error")],
            [patient("none")],
        ],
        set(),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_feasibility_consent_criterion_selects_the_consented_patients_of_each_case(spec_test, case):
    resources, expected = CASES[case]
    spec_test(resources, query(consented(MDAT_STORE)), expected)


@pytest.mark.parametrize("case", sorted(CASES))
def test_is_consented_selects_the_same_patients_on_the_same_consents(case):
    resources, expected = CASES[case]
    flat = flatten(resources)
    records = [r for resource in flat for r in records_from_consent(resource)]
    patients = [r["id"] for r in flat if r["resourceType"] == "Patient"]
    decisions = {p: is_consented(records, p, MDAT_STORE, TODAY) for p in patients}
    assert {p for p, d in decisions.items() if d.consented} == expected, {
        p: d.reason for p, d in decisions.items()
    }
