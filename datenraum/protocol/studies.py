"""What hub and site say about prospective studies (electronic data capture), as frozen values with a JSON form.

The hub holds a study's design; the site collects its data. As everywhere, the site connects out:

- `GET  {API_PREFIX}/studies`                       -> `{"studies": [StudyDefinition...]}`, the studies this
  site takes part in, each with only this site's staff roster;
- `POST {API_PREFIX}/studies/{study_id}/allocations` `AllocationRequest` -> `Allocation`: the hub draws the
  arm (the sequence is concealed: only the hub holds the statistician's seed); asking again for the same
  participant returns the same allocation, never a second draw, so a lost response is harmless;
- `POST {API_PREFIX}/studies/{study_id}/enrolment`   `EnrolmentReport` -> 204: the site's enrolled count per
  arm, replacing its previous report.

Nothing patient-identifying travels: a participant is named by the study pseudonym the site generated
(`datenraum.studies.pseudonyms`); the link pseudonym -> site patient stays in the site store. Enrolment counts
are the study's own participants, who consented to take part and to the study's monitoring of recruitment;
they are not a query over routine data, so no feasibility obfuscation applies to them.

Forms are FHIR R4 Questionnaires carried as JSON; a response references its form as `url|version` (a form in
use changes only by a new version, so an old response keeps its form). The hub checked every form with
`datenraum.studies.questionnaire.parse_questionnaire` when it was published.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from datenraum.protocol.messages import API_PREFIX, ProtocolError

__all__ = [
    "MAX_FACTORS",
    "SITE_ROLES",
    "STUDIES_PATH",
    "Allocation",
    "AllocationRequest",
    "Arm",
    "EnrolmentReport",
    "FormVersion",
    "RecruitmentStatus",
    "StaffMember",
    "StratificationFactor",
    "StudyDefinition",
    "StudyRole",
    "Visit",
    "VisitForm",
    "allocations_path",
    "enrolment_path",
]

STUDIES_PATH = f"{API_PREFIX}/studies"
MAX_FACTORS = 3  # stratification: the site plus up to three factors
_MAX_ENTRIES = 500  # arms, visits, forms, versions, roster entries: far above any real study
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def allocations_path(study_id: str) -> str:
    return f"{STUDIES_PATH}/{study_id}/allocations"


def enrolment_path(study_id: str) -> str:
    return f"{STUDIES_PATH}/{study_id}/enrolment"


class RecruitmentStatus(StrEnum):
    PLANNED = "planned"
    RECRUITING = "recruiting"
    CLOSED = "closed"  # no new participants; visits of enrolled ones continue
    COMPLETED = "completed"


class StudyRole(StrEnum):
    STUDY_LEAD = "study-lead"  # study-wide
    STATISTICIAN = "statistician"  # study-wide
    SITE_INVESTIGATOR = "site-investigator"  # per site
    DATA_ENTRY = "data-entry"  # per site
    MONITOR = "monitor"  # per site (a monitor may be given several sites)


SITE_ROLES = frozenset({StudyRole.SITE_INVESTIGATOR, StudyRole.DATA_ENTRY, StudyRole.MONITOR})


def _text(value: Any, path: str, limit: int = 500, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= limit or "\x00" in value:
        raise ProtocolError(f"{path}: expected a string of 1 to {limit} characters")
    return value


def _required(value: Any, path: str, limit: int = 500) -> str:
    text = _text(value, path, limit)
    assert text is not None  # not optional
    return text


def _code(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _CODE.match(value):
        raise ProtocolError(f"{path}: expected a code of letters, digits, '_', '.', '-' (at most 64)")
    return value


def _int(value: Any, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProtocolError(f"{path}: expected an integer from {low} to {high}")
    return value


def _list(body: dict, name: str, path: str) -> list[Any]:
    value = body.get(name)
    if not isinstance(value, list) or len(value) > _MAX_ENTRIES:
        raise ProtocolError(f"{path}.{name}: expected a list of at most {_MAX_ENTRIES} entries")
    return value


def _object(body: Any, path: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ProtocolError(f"{path}: expected an object")
    return body


def _time(value: Any, path: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ProtocolError(f"{path}: expected an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        raise ProtocolError(f"{path}: expected a date-time with a time zone")
    return moment


def _unique(values: list[str], path: str, what: str) -> None:
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            raise ProtocolError(f"{path}[{index}]: duplicate {what} {value!r}")
        seen.add(value)


@dataclass(frozen=True)
class VisitForm:
    """A form filled in at a visit; `repeating` forms may be filled in several times (repeat instances)."""

    url: str  # the Questionnaire's canonical url; the version in use is the study's latest of that url
    repeating: bool

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "repeating": self.repeating}

    @classmethod
    def from_json(cls, body: Any, path: str) -> VisitForm:
        body = _object(body, path)
        if not isinstance(body.get("repeating"), bool):
            raise ProtocolError(f"{path}.repeating: expected true or false")
        return cls(_required(body.get("url"), f"{path}.url", 1000), body["repeating"])


@dataclass(frozen=True)
class Visit:
    """A planned visit of an arm: due `day_offset` days after enrolment, within -window_before/+window_after."""

    code: str
    name: str
    day_offset: int
    window_before: int
    window_after: int
    forms: tuple[VisitForm, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "day_offset": self.day_offset,
            "window_before": self.window_before,
            "window_after": self.window_after,
            "forms": [form.to_json() for form in self.forms],
        }

    @classmethod
    def from_json(cls, body: Any, path: str) -> Visit:
        body = _object(body, path)
        forms = tuple(
            VisitForm.from_json(f, f"{path}.forms[{i}]") for i, f in enumerate(_list(body, "forms", path))
        )
        _unique([form.url for form in forms], f"{path}.forms", "form")
        return cls(
            _code(body.get("code"), f"{path}.code"),
            _required(body.get("name"), f"{path}.name"),
            _int(body.get("day_offset"), f"{path}.day_offset", -3650, 36500),
            _int(body.get("window_before"), f"{path}.window_before", 0, 3650),
            _int(body.get("window_after"), f"{path}.window_after", 0, 3650),
            forms,
        )


@dataclass(frozen=True)
class Arm:
    code: str
    name: str
    visits: tuple[Visit, ...]

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "visits": [visit.to_json() for visit in self.visits]}

    @classmethod
    def from_json(cls, body: Any, path: str) -> Arm:
        body = _object(body, path)
        visits = tuple(
            Visit.from_json(v, f"{path}.visits[{i}]") for i, v in enumerate(_list(body, "visits", path))
        )
        _unique([visit.code for visit in visits], f"{path}.visits", "visit code")
        return cls(
            _code(body.get("code"), f"{path}.code"), _required(body.get("name"), f"{path}.name"), visits
        )


@dataclass(frozen=True)
class FormVersion:
    """One published version of a form; never changed once published."""

    url: str
    version: str
    questionnaire: dict[str, Any]  # the FHIR R4 Questionnaire JSON, its url and version equal to the above

    @property
    def canonical(self) -> str:
        """What a QuestionnaireResponse.questionnaire says: `url|version`."""
        return f"{self.url}|{self.version}"

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "version": self.version, "questionnaire": self.questionnaire}

    @classmethod
    def from_json(cls, body: Any, path: str) -> FormVersion:
        body = _object(body, path)
        url = _required(body.get("url"), f"{path}.url", 1000)
        version = _required(body.get("version"), f"{path}.version", 64)
        questionnaire = _object(body.get("questionnaire"), f"{path}.questionnaire")
        if questionnaire.get("resourceType") != "Questionnaire":
            raise ProtocolError(f"{path}.questionnaire.resourceType: expected 'Questionnaire'")
        if questionnaire.get("url") != url or questionnaire.get("version") != version:
            raise ProtocolError(f"{path}.questionnaire: its url and version differ from the form version's")
        return cls(url, version, questionnaire)


@dataclass(frozen=True)
class StaffMember:
    """A person of the site's study team (or a study-wide role) as the hub's roster names them."""

    email: str  # the site EDC matches its local accounts to the roster by e-mail (lower case)
    role: StudyRole

    def to_json(self) -> dict[str, Any]:
        return {"email": self.email, "role": self.role.value}

    @classmethod
    def from_json(cls, body: Any, path: str) -> StaffMember:
        body = _object(body, path)
        email = _required(body.get("email"), f"{path}.email", 320)
        if "@" not in email or email != email.strip().lower():
            raise ProtocolError(f"{path}.email: expected a lower-case e-mail address")
        try:
            role = StudyRole(body.get("role"))
        except ValueError:
            raise ProtocolError(
                f"{path}.role: expected one of {', '.join(r.value for r in StudyRole)}"
            ) from None
        return cls(email, role)


@dataclass(frozen=True)
class StratificationFactor:
    """A factor the site reports when it asks for an allocation (the site itself is always a stratum)."""

    name: str
    levels: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "levels": list(self.levels)}

    @classmethod
    def from_json(cls, body: Any, path: str) -> StratificationFactor:
        body = _object(body, path)
        levels = [_code(level, f"{path}.levels[{i}]") for i, level in enumerate(_list(body, "levels", path))]
        if len(levels) < 2:
            raise ProtocolError(f"{path}.levels: expected at least two levels")
        _unique(levels, f"{path}.levels", "level")
        return cls(_code(body.get("name"), f"{path}.name"), tuple(levels))


@dataclass(frozen=True)
class StudyDefinition:
    """A study as one site sees it: the design, every published form version, and this site's roster."""

    study_id: str
    definition_version: int  # raised by the hub on every change, so a site knows its copy is stale
    site: str  # the directory name of the site this definition was made for
    title: str
    acronym: str
    registry_id: str | None  # e.g. DRKS00012345, NCT01234567
    ethics_vote: str | None  # the ethics committee's reference
    recruitment_status: RecruitmentStatus
    eligibility: dict[str, Any] | None  # a CCDL structured query, or None
    arms: tuple[Arm, ...]
    forms: tuple[FormVersion, ...]  # every published version of every form the visits use
    randomised: bool  # True: ask the hub for an allocation at enrolment; False: one arm, no allocation
    factors: tuple[StratificationFactor, ...]  # only when randomised
    roster: tuple[StaffMember, ...]

    def current_form(self, url: str) -> FormVersion:
        """The latest published version of a form: the one new entries use."""
        versions = [form for form in self.forms if form.url == url]
        if not versions:
            raise KeyError(url)
        return versions[-1]  # `forms` lists each url's versions in publication order

    def form(self, canonical: str) -> FormVersion:
        """The version a response references by `url|version`."""
        for form in self.forms:
            if form.canonical == canonical:
                return form
        raise KeyError(canonical)

    def to_json(self) -> dict[str, Any]:
        return {
            "study_id": self.study_id,
            "definition_version": self.definition_version,
            "site": self.site,
            "title": self.title,
            "acronym": self.acronym,
            "registry_id": self.registry_id,
            "ethics_vote": self.ethics_vote,
            "recruitment_status": self.recruitment_status.value,
            "eligibility": self.eligibility,
            "arms": [arm.to_json() for arm in self.arms],
            "forms": [form.to_json() for form in self.forms],
            "randomised": self.randomised,
            "factors": [factor.to_json() for factor in self.factors],
            "roster": [member.to_json() for member in self.roster],
        }

    @classmethod
    def from_json(cls, body: Any, path: str = "study") -> StudyDefinition:
        body = _object(body, path)
        try:
            status = RecruitmentStatus(body.get("recruitment_status"))
        except ValueError:
            raise ProtocolError(
                f"{path}.recruitment_status: expected one of {', '.join(s.value for s in RecruitmentStatus)}"
            ) from None
        eligibility = body.get("eligibility")
        if eligibility is not None:
            _object(eligibility, f"{path}.eligibility")
        arms = tuple(Arm.from_json(a, f"{path}.arms[{i}]") for i, a in enumerate(_list(body, "arms", path)))
        if not arms:
            raise ProtocolError(f"{path}.arms: a study has at least one arm")
        _unique([arm.code for arm in arms], f"{path}.arms", "arm code")
        forms = tuple(
            FormVersion.from_json(f, f"{path}.forms[{i}]") for i, f in enumerate(_list(body, "forms", path))
        )
        _unique([form.canonical for form in forms], f"{path}.forms", "form version")
        published = {form.url for form in forms}
        for a, arm in enumerate(arms):
            for v, visit in enumerate(arm.visits):
                for f, form in enumerate(visit.forms):
                    if form.url not in published:
                        raise ProtocolError(
                            f"{path}.arms[{a}].visits[{v}].forms[{f}].url: no published version"
                        )
        if not isinstance(body.get("randomised"), bool):
            raise ProtocolError(f"{path}.randomised: expected true or false")
        factors = tuple(
            StratificationFactor.from_json(x, f"{path}.factors[{i}]")
            for i, x in enumerate(_list(body, "factors", path))
        )
        if len(factors) > MAX_FACTORS:
            raise ProtocolError(f"{path}.factors: at most {MAX_FACTORS} stratification factors")
        _unique([factor.name for factor in factors], f"{path}.factors", "factor")
        roster = tuple(
            StaffMember.from_json(m, f"{path}.roster[{i}]") for i, m in enumerate(_list(body, "roster", path))
        )
        return cls(
            study_id=_code(body.get("study_id"), f"{path}.study_id"),
            definition_version=_int(
                body.get("definition_version"), f"{path}.definition_version", 1, 2**31 - 1
            ),
            site=_required(body.get("site"), f"{path}.site", 200),
            title=_required(body.get("title"), f"{path}.title"),
            acronym=_required(body.get("acronym"), f"{path}.acronym", 64),
            registry_id=_text(body.get("registry_id"), f"{path}.registry_id", 64, optional=True),
            ethics_vote=_text(body.get("ethics_vote"), f"{path}.ethics_vote", 200, optional=True),
            recruitment_status=status,
            eligibility=eligibility,
            arms=arms,
            forms=forms,
            randomised=body["randomised"],
            factors=factors,
            roster=roster,
        )


def _factor_values(body: Any, path: str) -> tuple[tuple[str, str], ...]:
    body = _object(body, path)
    if len(body) > MAX_FACTORS:
        raise ProtocolError(f"{path}: at most {MAX_FACTORS} stratification factors")
    return tuple(
        sorted((_code(name, f"{path} key"), _code(value, f"{path}.{name}")) for name, value in body.items())
    )


@dataclass(frozen=True)
class AllocationRequest:
    """A site asks which arm a newly enrolled participant is in; `factors` are (name, level), sorted."""

    study_id: str
    site: str
    participant: str  # the study pseudonym
    factors: tuple[tuple[str, str], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "study_id": self.study_id,
            "site": self.site,
            "participant": self.participant,
            "factors": dict(self.factors),
        }

    @classmethod
    def from_json(cls, body: Any, path: str = "allocation_request") -> AllocationRequest:
        body = _object(body, path)
        return cls(
            _code(body.get("study_id"), f"{path}.study_id"),
            _required(body.get("site"), f"{path}.site", 200),
            _code(body.get("participant"), f"{path}.participant"),
            _factor_values(body.get("factors", {}), f"{path}.factors"),
        )


@dataclass(frozen=True)
class Allocation:
    """The hub's answer: the participant's arm, drawn once and audited."""

    study_id: str
    participant: str
    arm: str  # the arm's code
    allocation_id: str
    allocated_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "study_id": self.study_id,
            "participant": self.participant,
            "arm": self.arm,
            "allocation_id": self.allocation_id,
            "allocated_at": self.allocated_at.isoformat(),
        }

    @classmethod
    def from_json(cls, body: Any, path: str = "allocation") -> Allocation:
        body = _object(body, path)
        return cls(
            _code(body.get("study_id"), f"{path}.study_id"),
            _code(body.get("participant"), f"{path}.participant"),
            _code(body.get("arm"), f"{path}.arm"),
            _required(body.get("allocation_id"), f"{path}.allocation_id", 64),
            _time(body.get("allocated_at"), f"{path}.allocated_at"),
        )


@dataclass(frozen=True)
class EnrolmentReport:
    """A site's enrolled participants per arm (arm code, count), as of `reported_at`; the latest one counts."""

    study_id: str
    site: str
    enrolled: tuple[tuple[str, int], ...]
    reported_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "study_id": self.study_id,
            "site": self.site,
            "enrolled": dict(self.enrolled),
            "reported_at": self.reported_at.isoformat(),
        }

    @classmethod
    def from_json(cls, body: Any, path: str = "enrolment") -> EnrolmentReport:
        body = _object(body, path)
        enrolled = _object(body.get("enrolled"), f"{path}.enrolled")
        if len(enrolled) > _MAX_ENTRIES:
            raise ProtocolError(f"{path}.enrolled: at most {_MAX_ENTRIES} arms")
        counts = tuple(
            sorted(
                (_code(arm, f"{path}.enrolled key"), _int(count, f"{path}.enrolled.{arm}", 0, 10**7))
                for arm, count in enrolled.items()
            )
        )
        return cls(
            _code(body.get("study_id"), f"{path}.study_id"),
            _required(body.get("site"), f"{path}.site", 200),
            counts,
            _time(body.get("reported_at"), f"{path}.reported_at"),
        )
