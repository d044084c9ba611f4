"""The EDC's web app over HTTP: sign-in, CSRF, the roles a page allows (data entry cannot sign, a monitor
cannot edit, another site's staff and data are not there), the server's refusal of a tampered response,
and malformed requests answered with a message naming what is wrong (never a 500)."""

from __future__ import annotations

import pytest

from datenraum.devtools.demo_study import BASELINE
from datenraum.protocol.studies import StudyRole
from datenraum.site.studies.records import FormStatus
from datenraum.site.studies.staff import Staff

from .conftest import (
    DATA_ENTRY,
    INVESTIGATOR,
    MONITOR,
    NOW,
    OTHER_SITE,
    OTHER_SITE_INVESTIGATOR,
    PASSWORD,
    baseline_items,
    qr,
)

STUDY = "herz-aktiv"
ENTRY = Staff(DATA_ENTRY, "Doku", STUDY, StudyRole.DATA_ENTRY)


@pytest.fixture
def participant(edc):
    return edc.enrolments.enrol(ENTRY, edc.definitions.get(STUDY), "p-consented", {"geschlecht": "male"}, NOW)


def form_path(participant, visit="baseline", number=0, instance=1) -> str:
    return f"/studies/{STUDY}/participants/{participant.pseudonym}/visits/{visit}/forms/{number}/{instance}"


def saved_baseline(edc, participant, status=FormStatus.COMPLETE):
    return edc.entry.save(
        ENTRY,
        edc.definitions.get(STUDY),
        participant,
        "baseline",
        BASELINE["url"],
        1,
        qr(baseline_items()),
        status,
        None,
        NOW,
    ).instance


def test_a_page_without_sign_in_sends_to_the_sign_in_page(edc_app) -> None:
    browser = edc_app(DATA_ENTRY)
    browser.post_form("/logout", {})
    answer = browser.get(f"/studies/{STUDY}")
    assert answer.status_code == 303 and answer.headers["location"] == "/login"


def test_a_wrong_password_signs_nobody_in(edc, edc_app) -> None:
    browser = edc_app(DATA_ENTRY)
    browser.post_form("/logout", {})
    answer = browser.post_form("/login", {"email": DATA_ENTRY, "password": PASSWORD + "x"})
    assert answer.status_code == 401
    assert browser.get("/").status_code == 303


def test_data_entry_saves_a_form_through_the_page_and_the_save_is_audited(edc, edc_app, participant) -> None:
    browser = edc_app(DATA_ENTRY)
    answer = browser.post_json(
        form_path(participant), {"response": qr(baseline_items()), "status": "complete", "reason": None}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "complete"
    page = browser.get(form_path(participant))
    assert page.status_code == 200 and 'data-kind="field"' in page.text


def test_a_save_without_the_csrf_token_is_refused_and_stores_nothing(edc, edc_app, participant) -> None:
    browser = edc_app(DATA_ENTRY)
    answer = browser.client.post(
        form_path(participant), json={"response": qr(baseline_items()), "status": "complete"}
    )
    assert answer.status_code == 403
    assert edc.records.instances(STUDY, participant.pseudonym) == []


def test_a_tampered_response_with_an_answer_in_a_hidden_item_is_refused_naming_the_item(
    edc, edc_app, participant
) -> None:
    browser = edc_app(DATA_ENTRY)
    tampered = baseline_items(geschlecht="male", schwanger={"valueBoolean": True})
    answer = browser.post_json(form_path(participant), {"response": qr(tampered), "status": "complete"})
    assert answer.status_code == 422
    problems = answer.json()["problems"]
    assert [p["link_id"] for p in problems] == ["schwanger"]
    assert problems[0]["path"].startswith("$.response.item[")
    assert edc.records.instances(STUDY, participant.pseudonym) == []


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"response": [], "status": "complete"}, "$.response"),
        ({"response": qr([]), "status": "finished"}, "$.status"),
        ({"response": qr([]), "status": "complete", "reason": 7}, "$.reason"),
    ],
)
def test_a_malformed_save_is_a_400_naming_the_field(edc, edc_app, participant, body, path) -> None:
    answer = edc_app(DATA_ENTRY).post_json(form_path(participant), body)
    assert answer.status_code == 400
    assert answer.json()["problems"][0]["path"] == path


def test_a_body_that_is_not_json_is_a_400_saying_so(edc_app, participant) -> None:
    browser = edc_app(DATA_ENTRY)
    answer = browser.client.post(
        form_path(participant),
        content=b'{"response": ',
        headers={"X-CSRF-Token": browser.csrf, "content-type": "application/json"},
    )
    assert answer.status_code == 400 and "not JSON" in answer.text


def test_data_entry_cannot_sign_a_form(edc, edc_app, participant) -> None:
    instance = saved_baseline(edc, participant)
    answer = edc_app(DATA_ENTRY).post_form(form_path(participant) + "/sign", {"password": PASSWORD})
    assert answer.status_code == 403
    assert edc.records.instance(instance.id).signed_by is None


def test_the_site_investigator_signs_with_their_password_and_the_form_is_locked(
    edc, edc_app, participant
) -> None:
    instance = saved_baseline(edc, participant)
    browser = edc_app(INVESTIGATOR)
    refused = browser.post_form(form_path(participant) + "/sign", {"password": "not-my-password"})
    assert refused.status_code == 422 and edc.records.instance(instance.id).signed_by is None
    assert browser.post_form(form_path(participant) + "/sign", {"password": PASSWORD}).status_code == 303
    signed = edc.records.instance(instance.id)
    assert (signed.signed_by, signed.locked) == (INVESTIGATOR, True)


def test_a_monitor_cannot_edit_a_form(edc, edc_app, participant) -> None:
    instance = saved_baseline(edc, participant, FormStatus.INCOMPLETE)
    browser = edc_app(MONITOR)
    changed = baseline_items(gewicht=90, bmi=27.8)
    answer = browser.post_json(
        form_path(participant), {"response": qr(changed), "status": "complete", "reason": "Korrektur"}
    )
    assert answer.status_code == 403
    assert edc.records.instance(instance.id).response == instance.response
    page = browser.get(form_path(participant))
    assert 'data-read-only="true"' in page.text and 'id="save-button"' not in page.text


def test_a_monitor_opens_a_query_and_data_entry_answers_it(edc, edc_app, participant) -> None:
    instance = saved_baseline(edc, participant)
    opened = edc_app(MONITOR).post_form(
        form_path(participant) + "/query", {"link_id": "gewicht", "text": "Bitte Quelldokument prüfen"}
    )
    assert opened.status_code == 303
    (query,) = edc.records.queries(instance.id)
    answered = edc_app(DATA_ENTRY).post_form(
        f"/studies/{STUDY}/queries/{query.id}/answer", {"text": "geprüft, korrekt", "back": "/elsewhere"}
    )
    assert answered.status_code == 303 and answered.headers["location"] == f"/studies/{STUDY}/queries"
    assert edc.records.query(query.id).state.value == "answered"


def test_another_sites_investigator_sees_no_study_here(edc_app, participant) -> None:
    browser = edc_app(OTHER_SITE_INVESTIGATOR)
    assert browser.get(f"/studies/{STUDY}").status_code == 404
    assert browser.get(form_path(participant)).status_code == 404
    assert STUDY not in browser.get("/").text


def test_participants_of_another_site_are_invisible_here(
    edc, edc_app, edc_database, site_store, study_hub, consent_gate
) -> None:
    """Each site's EDC holds only its own participants: one enrolled at the other site is not found."""
    from datenraum.site.studies.database import EdcDatabase
    from datenraum.site.studies.service import Edc

    from .conftest import SECRET

    study_hub.site = OTHER_SITE
    other = Edc.build(
        OTHER_SITE, EdcDatabase(None), site_store, study_hub, consent_gate, SECRET, clock=lambda: NOW
    )
    try:
        other.pull()
        theirs = other.enrolments.enrol(
            Staff(OTHER_SITE_INVESTIGATOR, "Süd", STUDY, StudyRole.SITE_INVESTIGATOR),
            other.definitions.get(STUDY),
            "p-consented-2",
            {"geschlecht": "female"},
            NOW,
        )
    finally:
        other.close()
    browser = edc_app(MONITOR)
    listing = browser.get(f"/studies/{STUDY}")
    assert listing.status_code == 200 and theirs.pseudonym not in listing.text
    assert browser.get(f"/studies/{STUDY}/participants/{theirs.pseudonym}").status_code == 404


def test_a_refused_enrolment_says_why_on_the_page(edc, edc_app) -> None:
    answer = edc_app(DATA_ENTRY).post_form(
        f"/studies/{STUDY}/enrol", {"patient_id": "p-withdrawn", "factor_geschlecht": "female"}
    )
    assert answer.status_code == 422
    assert "withdrawn" in answer.text
    assert edc.records.participants(STUDY) == []
