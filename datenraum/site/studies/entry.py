"""Data entry on a form instance: save (with the server's re-check), status, lock, e-signature.

The server is the authority over what a form holds: every save is checked with
`datenraum.studies.responses.check_response` against the form version the instance answers (enableWhen
and calculations re-evaluated, types, ranges, options...). A refused save writes nothing. An accepted one,
in one transaction:

- replaces the instance's response, and writes one audit row per field whose answer changed (old, new,
  who, when, reason). The first save of an instance needs no reason; every later change does, as in
  REDCap and 21 CFR 11: the trail must say why a value was corrected;
- re-runs the data-quality rules on the instance (their findings replace the previous ones);
- for a form marked complete, writes its QuestionnaireResponse (and Observations) into the site store
  (`writeback.py`). If the store refuses, the transaction is rolled back too.

Required items are enforced when a form is marked complete: an incomplete or unverified form is stored as
an `in-progress` response, a draft.
A locked instance takes no change until the site investigator unlocks it (with a reason); unlocking drops
the signature, because what was signed may change.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from datenraum.protocol.studies import FormVersion, StudyDefinition, Visit
from datenraum.site.studies.answers import field_changes
from datenraum.site.studies.database import EdcDatabase
from datenraum.site.studies.permissions import Action, PermissionDenied, allowed
from datenraum.site.studies.records import FormInstance, FormStatus, Participant, Records
from datenraum.site.studies.staff import Staff
from datenraum.studies.collection import FormEntry as CollectedForm
from datenraum.studies.quality import Finding
from datenraum.studies.questionnaire import Questionnaire, parse_questionnaire
from datenraum.studies.responses import ResponseProblem, check_response

__all__ = ["DataEntry", "EntryError", "ResponseRefused", "SavedForm", "visit_of"]

_QR_STATUS = {
    FormStatus.INCOMPLETE: "in-progress",
    FormStatus.UNVERIFIED: "in-progress",
    FormStatus.COMPLETE: "completed",
}


class EntryError(ValueError):
    """The save or change cannot be done as asked (unknown visit, locked form, reason missing...)."""


class ResponseRefused(EntryError):
    """The server's check found problems; each names the item (linkId) and the JSON path."""

    def __init__(self, problems: list[ResponseProblem]) -> None:
        super().__init__("; ".join(f"{p.link_id}: {p.message}" for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class SavedForm:
    instance: FormInstance
    changed: int  # fields whose answer changed


def visit_of(definition: StudyDefinition, participant: Participant, visit_code: str) -> Visit:
    for arm in definition.arms:
        if arm.code == participant.arm:
            for visit in arm.visits:
                if visit.code == visit_code:
                    return visit
    raise EntryError(f"visit {visit_code!r} is not in the plan of arm {participant.arm!r}")


@functools.lru_cache(maxsize=256)
def _parsed(canonical: str, body: bytes) -> Questionnaire:
    return parse_questionnaire(orjson.loads(body))


def questionnaire_of(form: FormVersion) -> Questionnaire:
    """The parsed form (cached by its canonical and content: a published version never changes)."""
    return _parsed(form.canonical, orjson.dumps(form.questionnaire, option=orjson.OPT_SORT_KEYS))


def _require(staff: Staff, action: Action) -> None:
    if not allowed(staff.role, action):
        role = staff.role.value if staff.role else "no role"
        raise PermissionDenied(f"{staff.email} ({role}) may not {action.value} in study {staff.study_id}")


# What runs after the response is stored, in the same transaction: the data-quality rules (returning
# findings) and the store write for a completed form. Given by the EDC, so that this module needs neither.
Findings = Callable[[Questionnaire, CollectedForm], list[Finding]]
StoreWrite = Callable[[FormVersion, Participant, str, int, dict[str, Any]], None]  # visit, instance


class DataEntry:
    def __init__(self, database: EdcDatabase, findings: Findings, store_write: StoreWrite) -> None:
        self._db = database
        self._records = Records(database)
        self._findings = findings
        self._store_write = store_write

    def save(
        self,
        staff: Staff,
        definition: StudyDefinition,
        participant: Participant,
        visit_code: str,
        form_url: str,
        instance: int,
        response: Mapping[str, Any],
        status: FormStatus,
        reason: str | None,
        now: dt.datetime,
    ) -> SavedForm:
        _require(staff, Action.ENTER)
        visit = visit_of(definition, participant, visit_code)
        planned = next((f for f in visit.forms if f.url == form_url), None)
        if planned is None:
            raise EntryError(f"form {form_url!r} is not planned at visit {visit_code!r}")
        if instance < 1 or (instance > 1 and not planned.repeating):
            raise EntryError(f"instance {instance}: form {form_url!r} does not repeat at this visit")
        existing = self._records.find_instance(
            definition.study_id, participant.pseudonym, visit_code, form_url, instance
        )
        if existing is not None and existing.locked:
            raise EntryError("the form is locked; the site investigator must unlock it first")
        # An instance keeps the version it was started with; a new one takes the current version.
        form = definition.form(existing.form) if existing else definition.current_form(form_url)
        if response.get("resourceType") != "QuestionnaireResponse":
            raise EntryError("$.resourceType: expected 'QuestionnaireResponse'")
        if response.get("questionnaire") not in (None, form.canonical):
            raise EntryError(
                f"$.questionnaire: the response answers {response.get('questionnaire')!r}, "
                f"this form instance is {form.canonical!r}"
            )
        stored = self._normalised(form, response, status, now)
        # Checked as stored: an incomplete or unverified form is `in-progress`, a draft whose required
        # items may still be empty; a complete one is `completed` and must have them.
        problems = check_response(questionnaire_of(form), stored)
        if problems:
            raise ResponseRefused(problems)
        reason = (reason or "").strip() or None
        changes = field_changes(existing.response if existing else None, stored)
        if existing is not None and changes and reason is None:
            raise EntryError("an edit after the first save needs a reason (what was corrected and why)")
        with self._db.transaction() as db:
            if existing is None:
                cursor = db.execute(
                    "INSERT INTO form_instance (study_id, pseudonym, visit, form, instance, status, response, "
                    "saved_at, saved_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        definition.study_id,
                        participant.pseudonym,
                        visit_code,
                        form.canonical,
                        instance,
                        status.value,
                        orjson.dumps(stored).decode(),
                        now.isoformat(),
                        staff.email,
                    ),
                )
                instance_id = int(cursor.lastrowid or 0)
            else:
                instance_id = existing.id
                db.execute(
                    "UPDATE form_instance SET status = ?, response = ?, saved_at = ?, saved_by = ? WHERE id = ?",
                    (status.value, orjson.dumps(stored).decode(), now.isoformat(), staff.email, instance_id),
                )
            rows = [
                (instance_id, "field", name, old, new, staff.email, now.isoformat(), reason)
                for name, old, new in changes
            ]
            if existing is not None and existing.status is not status:
                rows.append(
                    (
                        instance_id,
                        "status",
                        None,
                        existing.status.value,
                        status.value,
                        staff.email,
                        now.isoformat(),
                        reason,
                    )
                )
            db.executemany(
                "INSERT INTO audit (form_instance, kind, link_id, old, new, who, at, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            db.execute("DELETE FROM dq_finding WHERE form_instance = ?", (instance_id,))
            db.executemany(
                "INSERT INTO dq_finding (form_instance, rule, link_id, message, found_at) VALUES (?, ?, ?, ?, ?)",
                [
                    (instance_id, finding.rule, finding.link_id, finding.message, now.isoformat())
                    for finding in self._findings(
                        questionnaire_of(form),
                        CollectedForm(
                            participant.pseudonym, visit_code, instance if planned.repeating else None, stored
                        ),
                    )
                ],
            )
            if status is FormStatus.COMPLETE:
                self._store_write(form, participant, visit_code, instance, stored)
        saved = self._records.instance(instance_id)
        assert saved is not None  # committed above
        return SavedForm(saved, len(changes))

    @staticmethod
    def _normalised(
        form: FormVersion, response: Mapping[str, Any], status: FormStatus, now: dt.datetime
    ) -> dict[str, Any]:
        """The response as the EDC keeps it: its items as checked, the rest set by the server (who cannot
        be told by the browser which form, participant or time it is)."""
        return {
            "resourceType": "QuestionnaireResponse",
            "questionnaire": form.canonical,
            "status": _QR_STATUS[status],
            "authored": now.isoformat(),
            "item": response.get("item", []),
        }

    def lock(self, staff: Staff, instance: FormInstance, now: dt.datetime) -> None:
        _require(staff, Action.LOCK)
        if instance.locked:
            raise EntryError("the form is locked already")
        self._change(instance, "locked = 1", "lock", staff, now, None)

    def unlock(self, staff: Staff, instance: FormInstance, reason: str, now: dt.datetime) -> None:
        _require(staff, Action.LOCK)
        if not instance.locked:
            raise EntryError("the form is not locked")
        if not reason.strip():
            raise EntryError("unlocking needs a reason")
        self._change(
            instance, "locked = 0, signed_by = NULL, signed_at = NULL", "unlock", staff, now, reason.strip()
        )

    def sign(self, staff: Staff, instance: FormInstance, password_ok: bool, now: dt.datetime) -> None:
        """E-signature: the investigator confirms with their password; a signed form is locked."""
        _require(staff, Action.SIGN)
        if not password_ok:
            raise EntryError("the password is wrong: the signature needs the signer's own password")
        if instance.status is not FormStatus.COMPLETE:
            raise EntryError("only a complete form can be signed")
        if instance.signed_by is not None:
            raise EntryError(f"the form is signed already (by {instance.signed_by})")
        self._change(
            instance,
            "locked = 1, signed_by = ?, signed_at = ?",
            "sign",
            staff,
            now,
            None,
            (staff.email, now.isoformat()),
        )

    def _change(
        self,
        instance: FormInstance,
        assignment: str,
        kind: str,
        staff: Staff,
        now: dt.datetime,
        reason: str | None,
        values: tuple = (),
    ) -> None:
        with self._db.transaction() as db:
            db.execute(f"UPDATE form_instance SET {assignment} WHERE id = ?", (*values, instance.id))
            db.execute(
                "INSERT INTO audit (form_instance, kind, who, at, reason) VALUES (?, ?, ?, ?, ?)",
                (instance.id, kind, staff.email, now.isoformat(), reason),
            )
