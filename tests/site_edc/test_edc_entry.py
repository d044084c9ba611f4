"""Data entry at the site EDC: the server's re-check on every save, the per-field audit trail, form
status, lock and e-signature, data-quality findings on save, and completed forms in the site store."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from datenraum.devtools.demo_study import BASELINE, VITALS
from datenraum.protocol.studies import StudyRole
from datenraum.site.studies.entry import EntryError, ResponseRefused
from datenraum.site.studies.permissions import PermissionDenied
from datenraum.site.studies.records import FormStatus
from datenraum.site.studies.staff import Staff

from .conftest import DATA_ENTRY, INVESTIGATOR, MONITOR, NOW, baseline_items, qr

STUDY = "herz-aktiv"
ENTRY = Staff(DATA_ENTRY, "Doku", STUDY, StudyRole.DATA_ENTRY)
PI = Staff(INVESTIGATOR, "PI", STUDY, StudyRole.SITE_INVESTIGATOR)
MON = Staff(MONITOR, "Monitor", STUDY, StudyRole.MONITOR)


@pytest.fixture
def participant(edc):
    return edc.enrolments.enrol(ENTRY, edc.definitions.get(STUDY), "p-consented", {"geschlecht": "male"}, NOW)


def save(
    edc,
    participant,
    items,
    status=FormStatus.INCOMPLETE,
    reason=None,
    staff=ENTRY,
    form=BASELINE,
    instance=1,
    visit="baseline",
):
    return edc.entry.save(
        staff,
        edc.definitions.get(STUDY),
        participant,
        visit,
        form["url"],
        instance,
        qr(items),
        status,
        reason,
        NOW,
    )


def store_rows(edc, sql: str) -> list[tuple]:
    with edc.store.snapshot() as snapshot:
        return snapshot.connection.execute(sql).fetchall()


def test_two_edits_of_a_field_give_two_audit_rows_with_old_new_who_and_reason(edc, participant) -> None:
    first = save(edc, participant, baseline_items(gewicht=81, bmi=25.0))
    save(edc, participant, baseline_items(gewicht=90, bmi=27.8), reason="Wiegefehler")
    save(edc, participant, baseline_items(gewicht=92, bmi=28.4), reason="Waage neu geeicht", staff=PI)

    audit = [a for a in edc.records.audit(first.instance.id) if a.link_id == "gewicht"]
    assert [(a.old, a.new, a.who, a.reason) for a in audit] == [
        (None, "81", DATA_ENTRY, None),
        ("81", "90", DATA_ENTRY, "Wiegefehler"),
        ("90", "92", INVESTIGATOR, "Waage neu geeicht"),
    ]


def test_an_edit_after_the_first_save_needs_a_reason_and_without_one_changes_nothing(
    edc, participant
) -> None:
    first = save(edc, participant, baseline_items())
    with pytest.raises(EntryError, match="needs a reason"):
        save(edc, participant, baseline_items(gewicht=90, bmi=27.8))
    stored = edc.records.instance(first.instance.id)
    assert stored.response == first.instance.response
    assert len(edc.records.audit(first.instance.id)) == len(edc.records.audit(first.instance.id))


def test_an_answer_in_a_hidden_item_is_refused_naming_the_item_and_nothing_is_written(
    edc, participant
) -> None:
    # "schwanger" is shown only for women; the response says male.
    with pytest.raises(ResponseRefused) as refused:
        save(edc, participant, baseline_items(schwanger={"valueBoolean": False}))
    assert [p.link_id for p in refused.value.problems] == ["schwanger"]
    assert edc.records.instances(STUDY, participant.pseudonym) == []


def test_a_calculated_value_that_differs_from_the_servers_is_refused(edc, participant) -> None:
    with pytest.raises(ResponseRefused) as refused:
        save(edc, participant, baseline_items(bmi=31.0))
    assert [p.link_id for p in refused.value.problems] == ["bmi"]


def test_a_draft_may_lack_required_answers_but_a_complete_form_may_not(edc, participant) -> None:
    saved = save(edc, participant, baseline_items(bmi=None)[:1])  # only geschlecht; BMI not calculable
    assert saved.instance.status is FormStatus.INCOMPLETE
    assert {f.rule for f in edc.records.findings(saved.instance.id)} == {"B"}  # blank required, found on save
    with pytest.raises(ResponseRefused) as refused:
        save(edc, participant, baseline_items(bmi=None)[:1], FormStatus.COMPLETE, reason="fertig")
    assert {p.link_id for p in refused.value.problems} == {"groesse", "gewicht"}


def test_a_complete_form_goes_into_the_site_store_with_its_observations_joined_by_pseudonym(
    edc, participant
) -> None:
    save(edc, participant, baseline_items(), FormStatus.COMPLETE)
    (row,) = store_rows(edc, "SELECT patient_id, pseudonym, questionnaire, status FROM site_study_response")
    assert row == ("p-consented", participant.pseudonym, f"{BASELINE['url']}|1", "completed")
    observations = store_rows(
        edc,
        "SELECT o.code, o.value_quantity FROM observation o JOIN site_study_subject s USING (patient_id) "
        f"WHERE s.pseudonym = '{participant.pseudonym}' ORDER BY o.code",
    )
    assert observations == [("29463-7", 81.0), ("39156-5", 25.0), ("8302-2", 180.0)]


def test_saving_a_complete_form_again_replaces_its_resources_in_the_store(edc, participant) -> None:
    save(edc, participant, baseline_items(), FormStatus.COMPLETE)
    save(edc, participant, baseline_items(gewicht=90, bmi=27.8), FormStatus.COMPLETE, reason="Korrektur")
    assert store_rows(edc, "SELECT count(*) FROM site_study_response") == [(1,)]
    assert store_rows(edc, "SELECT value_quantity FROM observation WHERE code = '29463-7'") == [(90.0,)]


def test_a_repeating_form_takes_several_instances_and_a_single_form_only_one(edc, participant) -> None:
    for number, rate in ((1, 72), (2, 80)):
        save(
            edc,
            participant,
            [{"linkId": "herzfrequenz", "answer": [{"valueInteger": rate}]}],
            form=VITALS,
            instance=number,
        )
    assert [i.instance for i in edc.records.instances(STUDY, participant.pseudonym)] == [1, 2]
    with pytest.raises(EntryError, match="does not repeat"):
        save(edc, participant, baseline_items(), instance=2)


def test_a_locked_form_takes_no_change_until_unlocked_with_a_reason(edc, participant) -> None:
    saved = save(edc, participant, baseline_items(), FormStatus.COMPLETE)
    edc.entry.lock(PI, saved.instance, NOW)
    with pytest.raises(EntryError, match="locked"):
        save(edc, participant, baseline_items(gewicht=90, bmi=27.8), FormStatus.COMPLETE, reason="x")
    locked = edc.records.instance(saved.instance.id)
    with pytest.raises(EntryError, match="needs a reason"):
        edc.entry.unlock(PI, locked, " ", NOW)
    edc.entry.unlock(PI, locked, "Nachtrag", NOW)
    save(edc, participant, baseline_items(gewicht=90, bmi=27.8), FormStatus.COMPLETE, reason="Nachtrag")


def test_signing_needs_a_complete_form_and_the_signers_password_and_locks_it(edc, participant) -> None:
    draft = save(edc, participant, baseline_items())
    with pytest.raises(EntryError, match="only a complete form"):
        edc.entry.sign(PI, draft.instance, True, NOW)
    complete = save(edc, participant, baseline_items(), FormStatus.COMPLETE, reason="vollständig").instance
    with pytest.raises(EntryError, match="password is wrong"):
        edc.entry.sign(PI, complete, False, NOW)
    edc.entry.sign(PI, complete, True, NOW)
    signed = edc.records.instance(complete.id)
    assert (signed.locked, signed.signed_by, signed.signed_at) == (True, INVESTIGATOR, NOW)
    edc.entry.unlock(PI, signed, "Korrektur", NOW)
    assert edc.records.instance(complete.id).signed_by is None  # what was signed may change now
    assert [a.kind for a in edc.records.audit(complete.id) if a.kind != "field"] == [
        "status",
        "sign",
        "unlock",
    ]


def test_data_entry_cannot_sign_or_lock_and_a_monitor_cannot_edit(edc, participant) -> None:
    saved = save(edc, participant, baseline_items(), FormStatus.COMPLETE)
    with pytest.raises(PermissionDenied, match="data-entry"):
        edc.entry.sign(ENTRY, saved.instance, True, NOW)
    with pytest.raises(PermissionDenied, match="data-entry"):
        edc.entry.lock(ENTRY, saved.instance, NOW)
    with pytest.raises(PermissionDenied, match="monitor"):
        save(edc, participant, baseline_items(gewicht=90, bmi=27.8), reason="x", staff=MON)


def test_an_instance_keeps_its_form_version_when_a_new_one_is_published(edc, participant, study_hub) -> None:
    first = save(edc, participant, baseline_items())
    definition = edc.definitions.get(STUDY)
    v2 = dict(BASELINE, version="2", title="Aufnahme (v2)")
    newer = dataclasses.replace(
        definition,
        definition_version=2,
        forms=(*definition.forms, dataclasses.replace(definition.forms[0], version="2", questionnaire=v2)),
    )
    study_hub.definitions_by_site["uk-nord"] = [newer]
    edc.pull()
    again = save(edc, participant, baseline_items(gewicht=90, bmi=27.8), reason="Korrektur")
    assert again.instance.form == first.instance.form == f"{BASELINE['url']}|1"
    other = save(
        edc, participant, [{"linkId": "herzfrequenz", "answer": [{"valueInteger": 70}]}], form=VITALS
    )
    assert other.instance.form == f"{VITALS['url']}|1"


def test_a_response_that_claims_another_form_is_refused(edc, participant) -> None:
    response = qr(baseline_items()) | {"questionnaire": f"{VITALS['url']}|1"}
    with pytest.raises(EntryError, match="this form instance is"):
        edc.entry.save(
            ENTRY,
            edc.definitions.get(STUDY),
            participant,
            "baseline",
            BASELINE["url"],
            1,
            response,
            FormStatus.INCOMPLETE,
            None,
            NOW,
        )


def test_the_stored_response_is_what_was_checked_not_what_the_browser_sent_besides(edc, participant) -> None:
    response = qr(baseline_items()) | {"subject": {"reference": "Patient/someone-else"}, "id": "evil"}
    saved = edc.entry.save(
        ENTRY,
        edc.definitions.get(STUDY),
        participant,
        "baseline",
        BASELINE["url"],
        1,
        response,
        FormStatus.COMPLETE,
        None,
        NOW,
    )
    assert "subject" not in saved.instance.response and "id" not in saved.instance.response
    (text,) = store_rows(edc, "SELECT json FROM resource WHERE resource_type = 'QuestionnaireResponse'")[0]
    assert orjson.loads(text)["subject"]["reference"] == "Patient/p-consented"
