"""Consent records and the one check `is_consented(records, person, policy, date)`.

A `ConsentRecord` is one decision of one person about one policy (an MII broad-consent policy code,
system urn:oid:2.16.840.1.113883.3.1937.777.24.5.3) with a state in the manner of gICS and the period it
covers. Records come from FHIR Consent resources (the MII Einwilligung shape: a deny root with nested
permit/deny provisions, one per policy code and period) and from study consent forms (a
QuestionnaireResponse mapped by a `ConsentForm`).

The rule, shared by study enrolment, extraction's gate and (as SQL) feasibility:
1. Only the person's records of the policy whose period covers the date count (a missing bound is open).
2. Of those, the latest decision decides; an undated decision is older than any dated one, and of two
   decisions at the same time the one that does not permit wins (a deny inside a permit of the same
   Consent, or a withdrawal entered on the day of the consent, takes effect).
3. The person is consented iff that decision's state permits (accepted, accepted opt-out).
So a later withdrawal overrides an earlier permit from its start on, a renewed consent overrides an
earlier withdrawal, and an expired permit covers nothing after its end.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "GECCO_BROAD_CONSENT",
    "POLICY_SYSTEM",
    "ConsentDecision",
    "ConsentForm",
    "ConsentFormItem",
    "ConsentRecord",
    "ConsentState",
    "decision_time",
    "is_consented",
    "records_from_consent",
    "records_from_response",
]

POLICY_SYSTEM = "urn:oid:2.16.840.1.113883.3.1937.777.24.5.3"
_POLICY = POLICY_SYSTEM.removeprefix("urn:oid:") + "."


class ConsentState(StrEnum):
    """gICS' consent states (ttp-fhir-ig CodeSystem ConsentStatusCS), lower-case with hyphens."""

    ACCEPTED = "accepted"
    ACCEPTED_OPT_OUT = "accepted-opt-out"
    DECLINED = "declined"
    UNKNOWN = "unknown"
    NOT_ASKED = "not-asked"
    NOT_CHOSEN = "not-chosen"
    WITHDRAWN = "withdrawn"
    INVALIDATED = "invalidated"
    REFUSED = "refused"
    EXPIRED = "expired"
    OBJECTED = "objected"

    @property
    def permits(self) -> bool:
        return self in (ConsentState.ACCEPTED, ConsentState.ACCEPTED_OPT_OUT)


@dataclass(frozen=True)
class ConsentRecord:
    """One decision: `decided` is when it was given (None: undated), `start`/`end` the days it covers
    (None: open)."""

    person: str
    policy: str
    state: ConsentState
    decided: dt.datetime | None
    start: dt.date | None
    end: dt.date | None
    source: str

    def covers(self, day: dt.date) -> bool:
        return (self.start is None or self.start <= day) and (self.end is None or day <= self.end)


@dataclass(frozen=True)
class ConsentDecision:
    consented: bool
    reason: str
    record: ConsentRecord | None = None


_UNDATED = dt.datetime.min.replace(tzinfo=dt.UTC)


def _order(record: ConsentRecord) -> tuple[dt.datetime, bool]:
    decided = record.decided or _UNDATED
    if decided.tzinfo is None:
        decided = decided.replace(tzinfo=dt.UTC)
    # A non-permitting decision sorts after a permitting one at the same time: it wins the tie.
    return decided, not record.state.permits


def is_consented(
    records: Iterable[ConsentRecord], person: str, policy: str, date: dt.date
) -> ConsentDecision:
    """Whether `person` is consented to `policy` on `date`, and why (the deciding record)."""
    own = [r for r in records if r.person == person and r.policy == policy]
    if not own:
        return ConsentDecision(False, f"no consent record for policy {policy}")
    covering = [r for r in own if r.covers(date)]
    if not covering:
        ended = [r for r in own if r.state.permits and r.end is not None and r.end < date]
        if ended:
            last = max(ended, key=lambda r: r.end or date)
            return ConsentDecision(False, f"expired on {last.end} ({last.source})", last)
        return ConsentDecision(False, f"no consent decision covers {date} ({own[0].source})")
    deciding = max(covering, key=_order)
    when = f" on {deciding.decided.date()}" if deciding.decided else " (undated)"
    if deciding.state.permits:
        return ConsentDecision(True, f"{deciding.state.value}{when} ({deciding.source})", deciding)
    return ConsentDecision(False, f"{deciding.state.value}{when} ({deciding.source})", deciding)


# -- FHIR Consent ------------------------------------------------------------------------------------


def _day(value: Any) -> dt.date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        return None


def decision_time(value: Any) -> dt.datetime | None:
    """A FHIR dateTime as a point in time; a date alone is its midnight in UTC."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value) if len(value) > 10 else None
    except ValueError:
        moment = None
    if moment is None:
        day = _day(value)
        if day is None:
            return None
        moment = dt.datetime(day.year, day.month, day.day)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _reference_key(reference: Any) -> str | None:
    if not isinstance(reference, dict) or not isinstance(reference.get("reference"), str):
        return None
    return reference["reference"].rstrip("/").rsplit("/", 1)[-1] or None


def records_from_consent(resource: Mapping[str, Any], person: str | None = None) -> list[ConsentRecord]:
    """The records of one FHIR Consent: one per policy code of each permit or deny provision.

    Only an active Consent decides (a draft, a rejected or an entered-in-error one does not, as in the
    feasibility SQL). `person` defaults to the id of Consent.patient. A provision whose period is given
    but not at day precision covers nothing (it cannot be placed); a missing period is open.
    """
    if resource.get("resourceType") != "Consent" or resource.get("status") != "active":
        return []
    person = person or _reference_key(resource.get("patient"))
    if not person:
        return []
    decided = decision_time(resource.get("dateTime"))
    source = f"Consent/{resource.get('id')}"
    out = []
    for provision in _provisions(resource.get("provision")):
        kind = provision.get("type")
        if kind not in ("permit", "deny"):
            continue
        period = provision.get("period")
        start = end = None
        if isinstance(period, dict):
            start, end = _day(period.get("start")), _day(period.get("end"))
            if (period.get("start") and start is None) or (period.get("end") and end is None):
                continue
        state = ConsentState.ACCEPTED if kind == "permit" else ConsentState.DECLINED
        for concept in provision.get("code") or []:
            for coding in (concept or {}).get("coding") or []:
                if coding.get("system") == POLICY_SYSTEM and isinstance(coding.get("code"), str):
                    out.append(ConsentRecord(person, coding["code"], state, decided, start, end, source))
    return out


def _provisions(provision: Any) -> list[dict[str, Any]]:
    """The nested provisions (the MII shape) and the root when it names codes itself."""
    if not isinstance(provision, dict):
        return []
    out, stack = [], [provision]
    while stack:
        node = stack.pop()
        if node.get("code"):
            out.append(node)
        stack.extend(p for p in reversed(node.get("provision") or []) if isinstance(p, dict))
    return out


# -- study consent forms -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentFormItem:
    """One question of a consent form: the policies its answer decides and how long an acceptance lasts."""

    link_id: str
    policies: tuple[str, ...]
    valid_years: int


@dataclass(frozen=True)
class ConsentForm:
    """How a study consent form's answers become consent records."""

    date_item: str
    withdrawal_date_item: str | None
    items: tuple[ConsentFormItem, ...]
    states: Mapping[str, ConsentState]


def _p(*numbers: int) -> tuple[str, ...]:
    return tuple(f"{_POLICY}{n}" for n in numbers)


# The GECCO dictionary's form `einwilligungserklaerung_mii_broad_consent` (answers 1 Ja, 2 Nein,
# 3 Unbekannt, 4 Widerruf). MDAT collection is consented for 5 years, storage and use for 30 (the MII
# broad consent's terms, as the MII test Consents carry them).
GECCO_BROAD_CONSENT = ConsentForm(
    date_item="miibc_dat_dok",
    withdrawal_date_item="miibc_w_dat_dok",
    items=(
        ConsentFormItem("gee_erhebung_verarbeitung", _p(6), 5),
        ConsentFormItem("gee_erhebung_verarbeitung", _p(7, 8, 9), 30),
        ConsentFormItem("gee_biomaterialien", _p(19), 5),
        ConsentFormItem("gee_biomaterialien", _p(20, 22, 23), 30),
    ),
    states={
        "1": ConsentState.ACCEPTED,
        "2": ConsentState.DECLINED,
        "3": ConsentState.UNKNOWN,
        "4": ConsentState.WITHDRAWN,
    },
)


def _answers(items: Any, out: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Answer values by linkId: `%resource.repeat(item).where(linkId='X').answer.value`."""
    for item in items or []:
        if not isinstance(item, dict):
            continue
        for answer in item.get("answer") or []:
            if not isinstance(answer, dict):
                continue
            for key, value in answer.items():
                if key.startswith("value"):
                    out.setdefault(str(item.get("linkId")), []).append(value)
            _answers(answer.get("item"), out)
        _answers(item.get("item"), out)
    return out


def _code(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("code") if isinstance(value.get("code"), str) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, str | int):
        return str(value)
    return None


def _add_years(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def records_from_response(response: Mapping[str, Any], form: ConsentForm, person: str) -> list[ConsentRecord]:
    """The records of a completed study consent form (a QuestionnaireResponse).

    An acceptance covers `valid_years` from the consent date (the day before the anniversary is the
    last); a withdrawal covers everything from the withdrawal date on, and is decided then; any other
    answer (declined, unknown) covers from the consent date on. A form without a consent date gives no
    records: an acceptance that cannot be placed in time cannot be checked.
    """
    answers = _answers(response.get("item"), {})
    signed = _day(next(iter(answers.get(form.date_item, [])), None))
    if signed is None:
        return []
    withdrawn = None
    if form.withdrawal_date_item:
        withdrawn = _day(next(iter(answers.get(form.withdrawal_date_item, [])), None))
    source = f"QuestionnaireResponse/{response.get('id')}"
    signed_at = dt.datetime(signed.year, signed.month, signed.day, tzinfo=dt.UTC)
    out = []
    for item in form.items:
        code = _code(next(iter(answers.get(item.link_id, [])), None))
        state = form.states.get(code or "")
        if state is None:
            continue
        for policy in item.policies:
            if state.permits:
                end = _add_years(signed, item.valid_years) - dt.timedelta(days=1)
                out.append(ConsentRecord(person, policy, state, signed_at, signed, end, source))
                continue
            if state == ConsentState.WITHDRAWN:
                # The acceptance it withdraws stood until the day before; the form shows only the result.
                start = withdrawn or signed
                at = dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC)
                end = _add_years(signed, item.valid_years) - dt.timedelta(days=1)
                accepted = ConsentState.ACCEPTED
                out.append(ConsentRecord(person, policy, accepted, signed_at, signed, end, source))
                out.append(ConsentRecord(person, policy, state, at, start, None, source))
                continue
            out.append(ConsentRecord(person, policy, state, signed_at, signed, None, source))
    return out
