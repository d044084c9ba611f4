"""Consent records from FHIR Consents and study consent forms, and the one `is_consented` rule."""

from __future__ import annotations

import datetime as dt

from datenraum.studies.consent import (
    GECCO_BROAD_CONSENT,
    POLICY_SYSTEM,
    ConsentRecord,
    ConsentState,
    is_consented,
    records_from_consent,
    records_from_response,
)

MDAT_COLLECT = "2.16.840.1.113883.3.1937.777.24.5.3.6"
MDAT_USE = "2.16.840.1.113883.3.1937.777.24.5.3.8"
BIOMAT = "2.16.840.1.113883.3.1937.777.24.5.3.19"


def mii_consent(cid: str, date_time: str | None, *provisions: tuple[str, str, dict | None]) -> dict:
    resource = {
        "resourceType": "Consent",
        "id": cid,
        "status": "active",
        "patient": {"reference": "Patient/p1"},
        "provision": {
            "type": "deny",
            "provision": [
                {
                    "type": kind,
                    **({"period": period} if period is not None else {}),
                    "code": [{"coding": [{"system": POLICY_SYSTEM, "code": code}]}],
                }
                for kind, code, period in provisions
            ],
        },
    }
    if date_time is not None:
        resource["dateTime"] = date_time
    return resource


def consent_form(answers: dict[str, str], *, signed: str | None = "2024-03-01", withdrawn: str | None = None):
    items = [{"linkId": k, "answer": [{"valueCoding": {"code": v}}]} for k, v in answers.items()]
    if signed:
        items.append({"linkId": "miibc_dat_dok", "answer": [{"valueDate": signed}]})
    if withdrawn:
        items.append({"linkId": "miibc_w_dat_dok", "answer": [{"valueDate": withdrawn}]})
    return {"resourceType": "QuestionnaireResponse", "id": "qr1", "status": "completed", "item": items}


def test_a_consent_becomes_one_record_per_policy_code_with_its_period_and_time():
    records = records_from_consent(
        mii_consent(
            "c1",
            "2020-01-10T09:30:00+01:00",
            ("permit", MDAT_USE, {"start": "2020-01-10", "end": "2050-01-09"}),
            ("deny", BIOMAT, None),
        )
    )
    assert records == [
        ConsentRecord(
            "p1",
            MDAT_USE,
            ConsentState.ACCEPTED,
            dt.datetime(2020, 1, 10, 8, 30, tzinfo=dt.UTC),
            dt.date(2020, 1, 10),
            dt.date(2050, 1, 9),
            "Consent/c1",
        ),
        ConsentRecord(
            "p1",
            BIOMAT,
            ConsentState.DECLINED,
            dt.datetime(2020, 1, 10, 8, 30, tzinfo=dt.UTC),
            None,
            None,
            "Consent/c1",
        ),
    ]


def test_an_inactive_consent_or_a_period_without_day_precision_decides_nothing():
    draft = {**mii_consent("c1", "2020-01-10", ("permit", MDAT_USE, None)), "status": "draft"}
    coarse = mii_consent("c2", "2020-01-10", ("permit", MDAT_USE, {"start": "2020-01", "end": "2050"}))
    garbage = mii_consent("c3", "2020-01-10", ("permit", MDAT_USE, {"start": "yesterday"}))
    assert records_from_consent(draft) == []
    assert records_from_consent(coarse) == []
    assert records_from_consent(garbage) == []
    assert records_from_consent({"resourceType": "Patient", "id": "p1"}) == []
    assert (
        records_from_consent({**mii_consent("c4", None, ("permit", MDAT_USE, None)), "patient": None}) == []
    )


def test_the_reason_names_the_deciding_record():
    permit = mii_consent(
        "c1", "2020-01-10", ("permit", MDAT_USE, {"start": "2020-01-10", "end": "2024-01-09"})
    )
    withdrawal = mii_consent("c2", "2022-02-01", ("deny", BIOMAT, {"start": "2022-02-01"}))
    records = records_from_consent(permit) + records_from_consent(withdrawal)
    assert (
        is_consented(records, "p1", MDAT_USE, dt.date(2023, 1, 1)).reason
        == "accepted on 2020-01-10 (Consent/c1)"
    )
    assert (
        is_consented(records, "p1", MDAT_USE, dt.date(2024, 6, 1)).reason
        == "expired on 2024-01-09 (Consent/c1)"
    )
    assert (
        is_consented(records, "p1", BIOMAT, dt.date(2023, 1, 1)).reason
        == "declined on 2022-02-01 (Consent/c2)"
    )
    assert is_consented(records, "p2", MDAT_USE, dt.date(2023, 1, 1)).reason.startswith("no consent record")


def test_a_gecco_consent_form_accepts_mdat_collection_for_five_years_and_use_for_thirty():
    form = consent_form({"gee_erhebung_verarbeitung": "1", "gee_biomaterialien": "2"})
    records = records_from_response(form, GECCO_BROAD_CONSENT, "GEC-A-123")
    collect = [r for r in records if r.policy == MDAT_COLLECT]
    assert [(r.state, r.start, r.end) for r in collect] == [
        (ConsentState.ACCEPTED, dt.date(2024, 3, 1), dt.date(2029, 2, 28))
    ]
    assert is_consented(records, "GEC-A-123", MDAT_USE, dt.date(2050, 1, 1)).consented
    assert not is_consented(records, "GEC-A-123", MDAT_COLLECT, dt.date(2029, 3, 1)).consented
    decision = is_consented(records, "GEC-A-123", BIOMAT, dt.date(2024, 3, 2))
    assert not decision.consented and decision.record.state == ConsentState.DECLINED


def test_a_withdrawal_on_the_form_ends_the_consent_on_the_withdrawal_date():
    form = consent_form({"gee_erhebung_verarbeitung": "4"}, withdrawn="2024-09-01")
    records = records_from_response(form, GECCO_BROAD_CONSENT, "GEC-A-123")
    assert is_consented(records, "GEC-A-123", MDAT_USE, dt.date(2024, 8, 31)).consented
    after = is_consented(records, "GEC-A-123", MDAT_USE, dt.date(2024, 9, 1))
    assert not after.consented and after.reason.startswith("withdrawn on 2024-09-01")


def test_a_consent_form_without_a_date_or_with_an_unknown_answer_code_gives_no_records():
    assert (
        records_from_response(
            consent_form({"gee_erhebung_verarbeitung": "1"}, signed=None), GECCO_BROAD_CONSENT, "x"
        )
        == []
    )
    unknown = records_from_response(
        consent_form({"gee_erhebung_verarbeitung": "9"}), GECCO_BROAD_CONSENT, "x"
    )
    assert unknown == []


def test_only_accepted_states_permit():
    assert {s for s in ConsentState if s.permits} == {ConsentState.ACCEPTED, ConsentState.ACCEPTED_OPT_OUT}
