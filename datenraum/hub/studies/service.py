"""Prospective studies on the hub: set-up, sites, design, form versions, study roles and recruitment status.

Every public method is one transaction. Who may do what is decided here, from the study's own roles
(`study_roles`, by e-mail, given by the study lead), not from the hub's roles: the person who creates a
study (an approved researcher) becomes its study lead. Only a study lead changes a study; a statistician
and a monitor read it; site staff read it with only their own site's people. Whoever has no role in a study
is told there is no such study (404), as elsewhere in the hub.

Published form versions are never changed: saving a form publishes its next version (1, 2, ...), and a
response names the version it was entered with (`url|version`). So a form that is in use at a site changes
only by a new version, and an old response keeps its form.

The design (arms, visits, their forms) is fixed once recruitment started: a change then is a protocol
amendment, which this version does not model. Sites may still join; new form versions may still be
published. Every change a site would see raises `definition_version`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from datenraum.hub.accounts.audit import AuditSource, record
from datenraum.hub.accounts.service import Site, User
from datenraum.hub.db import Clock, SiteRow, utcnow
from datenraum.hub.errors import Conflict, Forbidden, Invalid, NotFound
from datenraum.hub.feasibility.service import answerable_query
from datenraum.hub.roles import Role
from datenraum.hub.studies.access import lead_study, site_study, study_for
from datenraum.hub.studies.forms import checked_form
from datenraum.hub.studies.tables import (
    ArmRow,
    EnrolmentRow,
    FormVersionRow,
    RandomisationRow,
    StatusEventRow,
    StudyRoleRow,
    StudyRow,
    StudySiteRow,
    VisitFormRow,
    VisitRow,
)
from datenraum.protocol.messages import ProtocolError
from datenraum.protocol.studies import (
    SITE_ROLES,
    Arm,
    EnrolmentReport,
    FormVersion,
    RecruitmentStatus,
    StaffMember,
    StratificationFactor,
    StudyDefinition,
    StudyRole,
    Visit,
    VisitForm,
)
from datenraum.query.mapping import load_mapping
from datenraum.query.model import canonical_json
from datenraum.studies.redcap import DictionaryConversion, RedcapError, dictionary_to_questionnaires

__all__ = [
    "RESERVED_CODES",
    "TRANSITIONS",
    "FormInfo",
    "RoleGrant",
    "StatusEvent",
    "Studies",
    "StudySetUp",
    "StudySummary",
    "StudyView",
    "study_code",
]

_CODE = re.compile(r"[a-z0-9][a-z0-9-]{1,63}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# The recruitment status changes a study lead may make; every one is recorded with who, when and why.
TRANSITIONS: dict[RecruitmentStatus, frozenset[RecruitmentStatus]] = {
    RecruitmentStatus.PLANNED: frozenset({RecruitmentStatus.RECRUITING}),
    RecruitmentStatus.RECRUITING: frozenset({RecruitmentStatus.CLOSED}),
    RecruitmentStatus.CLOSED: frozenset({RecruitmentStatus.RECRUITING, RecruitmentStatus.COMPLETED}),
    RecruitmentStatus.COMPLETED: frozenset(),
}
_STUDY_WIDE = frozenset({StudyRole.STUDY_LEAD, StudyRole.STATISTICIAN})


@dataclass(frozen=True)
class StudySetUp:
    """What a study lead fills in to set a study up."""

    title: str
    acronym: str
    registry_id: str | None = None
    ethics_vote: str | None = None
    eligibility: dict[str, Any] | None = None  # a CCDL structured query


@dataclass(frozen=True)
class RoleGrant:
    id: int
    email: str
    role: StudyRole
    site: str | None  # None: study-wide


@dataclass(frozen=True)
class FormInfo:
    url: str
    version: str
    title: str
    published: dt.datetime
    published_by: str

    @property
    def canonical(self) -> str:
        return f"{self.url}|{self.version}"


@dataclass(frozen=True)
class StatusEvent:
    at: dt.datetime
    by: str
    from_status: RecruitmentStatus | None
    to_status: RecruitmentStatus
    reason: str


@dataclass(frozen=True)
class StudySummary:
    code: str
    acronym: str
    title: str
    status: RecruitmentStatus
    roles: tuple[str, ...]  # the reader's roles in the study, e.g. "site-investigator (uk-a)"


@dataclass(frozen=True)
class StudyView:
    """A study as one reader may see it: site staff see only their sites' people and enrolment."""

    code: str
    set_up: StudySetUp
    status: RecruitmentStatus
    definition_version: int
    sites: tuple[str, ...]
    arms: tuple[Arm, ...]
    forms: tuple[FormInfo, ...]  # every version, per url in publication order
    roles: tuple[RoleGrant, ...]
    history: tuple[StatusEvent, ...]
    enrolment: tuple[tuple[str, tuple[tuple[str, int], ...]], ...]  # (site, ((arm, count), ...))
    randomised: bool
    mine: frozenset[tuple[StudyRole, str | None]]  # the reader's (role, site)

    @property
    def is_lead(self) -> bool:
        return any(role is StudyRole.STUDY_LEAD for role, _ in self.mine)

    @property
    def is_statistician(self) -> bool:
        return any(role is StudyRole.STATISTICIAN for role, _ in self.mine)

    def current_forms(self) -> tuple[FormInfo, ...]:
        latest: dict[str, FormInfo] = {}
        for form in self.forms:
            latest[form.url] = form
        return tuple(latest.values())


# Names of the portal's own pages under /studies/, which a study's code would hide.
RESERVED_CODES = frozenset({"lforms", "redcap", "new"})


def study_code(text: str) -> str:
    if not _CODE.fullmatch(text):
        raise Invalid("code: 2 to 64 lower-case letters, digits and '-', starting with a letter or digit")
    if text in RESERVED_CODES:
        raise Invalid(f"code: {text!r} is the name of a portal page; choose another")
    return text


def _email(text: str, field: str = "email") -> str:
    email = text.strip().lower()
    if not _EMAIL.fullmatch(email) or len(email) > 320:
        raise Invalid(f"{field}: not an e-mail address")
    return email


def _optional(text: str | None, field: str, limit: int) -> str | None:
    if text is None or not text.strip():
        return None
    if len(text) > limit:
        raise Invalid(f"{field}: at most {limit} characters")
    return text.strip()


class Studies:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock = utcnow, public_url: str = "") -> None:
        self._sessions = sessions
        self._clock = clock
        self._public_url = public_url.rstrip("/")
        self._mapping = load_mapping()

    # -- reading

    def visible(self, user: User) -> list[StudySummary]:
        """The studies the user has a role in, newest first."""
        with self._sessions() as session:
            rows = session.execute(
                sa.select(StudyRow, StudyRoleRow.role, SiteRow.name)
                .join(StudyRoleRow, StudyRoleRow.study_id == StudyRow.id)
                .outerjoin(SiteRow, SiteRow.id == StudyRoleRow.site_id)
                .where(StudyRoleRow.email == user.email.lower())
                .order_by(StudyRow.created.desc(), StudyRow.id.desc())
            ).all()
            studies: dict[int, tuple[StudyRow, list[str]]] = {}
            for study, role, site in rows:
                studies.setdefault(study.id, (study, []))[1].append(
                    role if site is None else f"{role} ({site})"
                )
            return [
                StudySummary(s.code, s.acronym, s.title, RecruitmentStatus(s.status), tuple(sorted(roles)))
                for s, roles in studies.values()
            ]

    def view(self, user: User, code: str) -> StudyView:
        with self._sessions() as session:
            study, mine = study_for(session, user, code)
            return _view(session, study, mine)

    def form_version(self, user: User, code: str, url: str, version: str) -> FormVersion:
        with self._sessions() as session:
            study, _mine = study_for(session, user, code)
            row = session.scalars(
                sa.select(FormVersionRow).where(
                    FormVersionRow.study_id == study.id,
                    FormVersionRow.url == url,
                    FormVersionRow.version == version,
                )
            ).first()
            if row is None:
                raise NotFound(f"no version {version!r} of form {url!r} in study {code!r}")
            return FormVersion(row.url, row.version, row.questionnaire)

    # -- changes by the study lead

    def create(self, user: User, code: str, set_up: StudySetUp, source: AuditSource) -> str:
        """A new study in status planned; its creator becomes its study lead. Raises Invalid, Conflict."""
        with self._sessions.begin() as session:
            return self._new_study(session, user, code, set_up, source).code

    def _new_study(
        self, session: Session, user: User, code: str, set_up: StudySetUp, source: AuditSource
    ) -> StudyRow:
        if not (user.has(Role.RESEARCHER) or user.has(Role.ADMIN)):
            raise Forbidden("setting up a study needs the researcher role")
        code = study_code(code)
        values = self._checked(set_up)
        now = self._clock()
        if session.scalar(sa.select(StudyRow.id).where(StudyRow.code == code)) is not None:
            raise Conflict(f"code: there is a study {code!r} already")
        study = StudyRow(
            code=code, status=RecruitmentStatus.PLANNED.value, definition_version=1, created=now, **values
        )
        session.add(study)
        session.flush()
        session.add(
            StudyRoleRow(study_id=study.id, email=user.email.lower(), role=StudyRole.STUDY_LEAD.value)
        )
        session.add(
            StatusEventRow(
                study_id=study.id,
                at=now,
                by=user.email,
                from_status=None,
                to_status=study.status,
                reason="set up",
            )
        )
        record(session, now, source, "study.create", code)
        return study

    def create_from_dictionary(
        self, user: User, code: str, set_up: StudySetUp, dictionary: str, file_name: str, source: AuditSource
    ) -> DictionaryConversion:
        """A new study with one form per instrument of a REDCap data dictionary (the CSV's text), all in one
        transaction: a dictionary that cannot be read (Invalid naming file, line and column) or a form
        that does not pass the form check leaves nothing behind. Returns the conversion with its report
        per field, for the lead to read what was not (fully) converted."""
        base_url = f"{self._public_url}/fhir/Questionnaire/{study_code(code)}/"
        try:
            conversion = dictionary_to_questionnaires(dictionary, file_name, base_url)
        except RedcapError as error:
            raise Invalid(str(error)) from None
        checked = [checked_form(q, f"questionnaires[{i}]") for i, q in enumerate(conversion.questionnaires)]
        with self._sessions.begin() as session:
            study = self._new_study(session, user, code, set_up, source)
            now = self._clock()
            for form in checked:
                self._publish(
                    session, study, form.url, form.title, form.questionnaire, user.email, now, source
                )
            record(session, now, source, "study.redcap", code, f"{file_name}: {len(checked)} forms")
        return conversion

    def update(self, user: User, code: str, set_up: StudySetUp, source: AuditSource) -> None:
        values = self._checked(set_up)
        with self._sessions.begin() as session:
            study = lead_study(session, user, code)
            for name, value in values.items():
                setattr(study, name, value)
            _changed(study)
            record(session, self._clock(), source, "study.update", code)

    def set_sites(self, user: User, code: str, names: Sequence[str], source: AuditSource) -> None:
        """The study's sites (hub sites, by name). Once recruitment started, sites may join but not leave."""
        with self._sessions.begin() as session:
            study = lead_study(session, user, code)
            _not_completed(study)
            by_name = {row.name: row for row in session.scalars(sa.select(SiteRow))}
            wanted: dict[int, str] = {}
            for index, name in enumerate(names):
                if name not in by_name:
                    raise Invalid(f"sites[{index}]: there is no site {name!r}")
                wanted[by_name[name].id] = name
            current = set(
                session.scalars(sa.select(StudySiteRow.site_id).where(StudySiteRow.study_id == study.id))
            )
            leaving = current - set(wanted)
            if leaving and study.status != RecruitmentStatus.PLANNED.value:
                raise Conflict("sites: once recruitment started, a site cannot leave the study")
            if leaving:
                session.execute(
                    sa.delete(StudyRoleRow).where(
                        StudyRoleRow.study_id == study.id, StudyRoleRow.site_id.in_(leaving)
                    )
                )
                session.execute(
                    sa.delete(StudySiteRow).where(
                        StudySiteRow.study_id == study.id, StudySiteRow.site_id.in_(leaving)
                    )
                )
            for site_id in set(wanted) - current:
                session.add(StudySiteRow(study_id=study.id, site_id=site_id))
            _changed(study)
            record(session, self._clock(), source, "study.sites", code, ", ".join(sorted(wanted.values())))

    def set_design(self, user: User, code: str, arms_json: Any, source: AuditSource) -> tuple[Arm, ...]:
        """Replace the arms with their visits and forms (JSON as `protocol.studies.Arm`). Every form a visit
        names must have a published version. Only while the study is planned; a randomisation scheme
        set for the earlier arms is dropped."""
        if not isinstance(arms_json, list):
            raise Invalid("arms: expected a list of arms")
        try:
            arms = tuple(Arm.from_json(arm, f"arms[{i}]") for i, arm in enumerate(arms_json))
        except ProtocolError as error:
            raise Invalid(str(error)) from None
        if not arms:
            raise Invalid("arms: a study has at least one arm")
        codes = [arm.code for arm in arms]
        for index, arm_code in enumerate(codes):
            if arm_code in codes[:index]:
                raise Invalid(f"arms[{index}].code: duplicate arm code {arm_code!r}")
        with self._sessions.begin() as session:
            study = lead_study(session, user, code)
            if study.status != RecruitmentStatus.PLANNED.value:
                raise Conflict("arms: the design is fixed once recruitment started")
            published = set(
                session.scalars(sa.select(FormVersionRow.url).where(FormVersionRow.study_id == study.id))
            )
            for a, arm in enumerate(arms):
                for v, visit in enumerate(arm.visits):
                    for f, form in enumerate(visit.forms):
                        if form.url not in published:
                            raise Invalid(
                                f"arms[{a}].visits[{v}].forms[{f}].url: no published form {form.url!r}"
                            )
            arm_ids = list(session.scalars(sa.select(ArmRow.id).where(ArmRow.study_id == study.id)))
            visit_ids = list(session.scalars(sa.select(VisitRow.id).where(VisitRow.arm_id.in_(arm_ids))))
            session.execute(sa.delete(VisitFormRow).where(VisitFormRow.visit_id.in_(visit_ids)))
            session.execute(sa.delete(VisitRow).where(VisitRow.id.in_(visit_ids)))
            session.execute(sa.delete(ArmRow).where(ArmRow.id.in_(arm_ids)))
            # A scheme names the arms it was set for; with other arms the statistician sets it again.
            session.execute(sa.delete(RandomisationRow).where(RandomisationRow.study_id == study.id))
            for a, arm in enumerate(arms):
                arm_row = ArmRow(study_id=study.id, code=arm.code, name=arm.name, position=a)
                session.add(arm_row)
                session.flush()
                for v, visit in enumerate(arm.visits):
                    visit_row = VisitRow(
                        arm_id=arm_row.id,
                        code=visit.code,
                        name=visit.name,
                        day_offset=visit.day_offset,
                        window_before=visit.window_before,
                        window_after=visit.window_after,
                        position=v,
                    )
                    session.add(visit_row)
                    session.flush()
                    for f, form in enumerate(visit.forms):
                        session.add(
                            VisitFormRow(
                                visit_id=visit_row.id, url=form.url, repeating=form.repeating, position=f
                            )
                        )
            _changed(study)
            record(session, self._clock(), source, "study.design", code, f"{len(arms)} arms")
        return arms

    def publish_form(self, user: User, code: str, questionnaire: Any, source: AuditSource) -> FormVersion:
        """Publish the next version of a form (its url names it); earlier versions stay as they were."""
        checked = checked_form(questionnaire)
        now = self._clock()
        with self._sessions.begin() as session:
            study = lead_study(session, user, code)
            _not_completed(study)
            return self._publish(
                session, study, checked.url, checked.title, checked.questionnaire, user.email, now, source
            )

    def publish_forms(
        self, user: User, code: str, questionnaires: Sequence[Any], source: AuditSource
    ) -> list[FormVersion]:
        """Several forms at once (a REDCap dictionary's): all are published, or none."""
        checked = []
        for index, questionnaire in enumerate(questionnaires):
            checked.append(checked_form(questionnaire, f"questionnaires[{index}]"))
        now = self._clock()
        with self._sessions.begin() as session:
            study = lead_study(session, user, code)
            _not_completed(study)
            return [
                self._publish(
                    session, study, form.url, form.title, form.questionnaire, user.email, now, source
                )
                for form in checked
            ]

    def _publish(
        self,
        session: Session,
        study: StudyRow,
        url: str,
        title: str,
        questionnaire: dict[str, Any],
        by: str,
        now: dt.datetime,
        source: AuditSource,
    ) -> FormVersion:
        latest = session.scalar(
            sa.select(sa.func.max(FormVersionRow.number)).where(
                FormVersionRow.study_id == study.id, FormVersionRow.url == url
            )
        )
        number = (latest or 0) + 1
        version = str(number)
        stored = {**questionnaire, "version": version}
        session.add(
            FormVersionRow(
                study_id=study.id,
                url=url,
                version=version,
                number=number,
                title=title,
                questionnaire=stored,
                published=now,
                published_by=by,
            )
        )
        _changed(study)
        record(session, now, source, "study.form", study.code, f"{url}|{version}")
        return FormVersion(url, version, stored)

    def grant(
        self, user: User, code: str, email: str, role: StudyRole, site: str | None, source: AuditSource
    ) -> None:
        """Give someone a role: study-wide roles without a site, site roles for one of the study's sites."""
        email = _email(email)
        with self._sessions.begin() as session:
            study = lead_study(session, user, code)
            site_id = None
            if role in SITE_ROLES:
                if not site:
                    raise Invalid(f"site: the role {role.value} is for one of the study's sites")
                site_id = session.scalar(
                    sa.select(SiteRow.id)
                    .join(StudySiteRow, StudySiteRow.site_id == SiteRow.id)
                    .where(StudySiteRow.study_id == study.id, SiteRow.name == site)
                )
                if site_id is None:
                    raise Invalid(f"site: {site!r} does not take part in the study")
            elif site:
                raise Invalid(f"site: the role {role.value} is study-wide, without a site")
            exists = session.scalar(
                sa.select(StudyRoleRow.id).where(
                    StudyRoleRow.study_id == study.id,
                    StudyRoleRow.email == email,
                    StudyRoleRow.role == role.value,
                    StudyRoleRow.site_id.is_(None) if site_id is None else StudyRoleRow.site_id == site_id,
                )
            )
            if exists is not None:
                raise Conflict(f"email: {email} has this role already")
            session.add(StudyRoleRow(study_id=study.id, email=email, role=role.value, site_id=site_id))
            _changed(study)
            record(
                session,
                self._clock(),
                source,
                "study.role.grant",
                email,
                f"{code}: {role.value} {site or ''}".strip(),
            )

    def revoke(self, user: User, code: str, grant_id: int, source: AuditSource) -> None:
        with self._sessions.begin() as session:
            study = lead_study(session, user, code)
            grant = session.get(StudyRoleRow, grant_id)
            if grant is None or grant.study_id != study.id:
                raise NotFound(f"no role {grant_id} in study {code!r}")
            if grant.role == StudyRole.STUDY_LEAD.value:
                leads = session.scalar(
                    sa.select(sa.func.count()).where(
                        StudyRoleRow.study_id == study.id, StudyRoleRow.role == StudyRole.STUDY_LEAD.value
                    )
                )
                if leads == 1:
                    raise Conflict("role: a study keeps at least one study lead")
            session.delete(grant)
            _changed(study)
            record(session, self._clock(), source, "study.role.revoke", grant.email, f"{code}: {grant.role}")

    def change_status(
        self, user: User, code: str, status: RecruitmentStatus, reason: str, source: AuditSource
    ) -> None:
        """Move the recruitment status along `TRANSITIONS`, with a reason; recorded with who and when."""
        reason = reason.strip()
        if not reason or len(reason) > 2000:
            raise Invalid("reason: say why (at most 2000 characters)")
        now = self._clock()
        with self._sessions.begin() as session:
            study = lead_study(session, user, code)
            current = RecruitmentStatus(study.status)
            if status not in TRANSITIONS[current]:
                raise Conflict(f"status: a {current.value} study cannot become {status.value}")
            if status is RecruitmentStatus.RECRUITING:
                _ready_to_recruit(session, study)
            study.status = status.value
            session.add(
                StatusEventRow(
                    study_id=study.id,
                    at=now,
                    by=user.email,
                    from_status=current.value,
                    to_status=status.value,
                    reason=reason,
                )
            )
            _changed(study)
            record(session, now, source, "study.status", code, f"{current.value} -> {status.value}: {reason}")

    def _checked(self, set_up: StudySetUp) -> dict[str, Any]:
        title, acronym = set_up.title.strip(), set_up.acronym.strip()
        if not title or len(title) > 500:
            raise Invalid("title: 1 to 500 characters")
        if not acronym or len(acronym) > 64:
            raise Invalid("acronym: 1 to 64 characters")
        eligibility = None
        if set_up.eligibility is not None:
            eligibility = canonical_json(
                answerable_query(set_up.eligibility, self._mapping, field="eligibility")
            )
        return {
            "title": title,
            "acronym": acronym,
            "registry_id": _optional(set_up.registry_id, "registry_id", 64),
            "ethics_vote": _optional(set_up.ethics_vote, "ethics_vote", 200),
            "eligibility": eligibility,
        }

    # -- sites

    def definitions_for(self, site: Site) -> list[StudyDefinition]:
        """The studies the site takes part in, each with the site's own staff only."""
        with self._sessions() as session:
            studies = session.scalars(
                sa.select(StudyRow)
                .join(StudySiteRow, StudySiteRow.study_id == StudyRow.id)
                .where(StudySiteRow.site_id == site.id)
                .order_by(StudyRow.code)
            ).all()
            return [_definition(session, study, site) for study in studies]

    def report_enrolment(self, site: Site, code: str, report: EnrolmentReport) -> None:
        """Keep the site's latest enrolment counts (an older report than the kept one changes nothing)."""
        if report.study_id != code:
            raise Invalid(f"study_id: the report is for {report.study_id!r}, not {code!r}")
        if report.site != site.name:
            raise Invalid(f"site: the report names {report.site!r}, but comes from {site.name!r}")
        with self._sessions.begin() as session:
            study = site_study(session, site, code)
            arms = set(session.scalars(sa.select(ArmRow.code).where(ArmRow.study_id == study.id)))
            for arm, _count in report.enrolled:
                if arm not in arms:
                    raise Invalid(f"enrolled.{arm}: the study has no arm {arm!r}")
            row = session.get(EnrolmentRow, (study.id, site.id), with_for_update=True)
            if row is None:
                session.add(
                    EnrolmentRow(
                        study_id=study.id,
                        site_id=site.id,
                        enrolled=dict(report.enrolled),
                        reported_at=report.reported_at,
                        received=self._clock(),
                    )
                )
            elif report.reported_at >= row.reported_at:
                row.enrolled, row.reported_at, row.received = (
                    dict(report.enrolled),
                    report.reported_at,
                    self._clock(),
                )


def _changed(study: StudyRow) -> None:
    study.definition_version += 1


def _not_completed(study: StudyRow) -> None:
    if study.status == RecruitmentStatus.COMPLETED.value:
        raise Conflict("status: a completed study is not changed any more")


def _ready_to_recruit(session: Session, study: StudyRow) -> None:
    """What a study needs before its sites may enrol: sites, arms with visits, randomisation for arms."""
    if session.scalar(sa.select(sa.func.count()).where(StudySiteRow.study_id == study.id)) == 0:
        raise Conflict("sites: a study recruits at one site at least")
    arms = session.scalars(sa.select(ArmRow).where(ArmRow.study_id == study.id)).all()
    if not arms:
        raise Conflict("arms: a study recruits into one arm at least")
    for arm in arms:
        if session.scalar(sa.select(sa.func.count()).where(VisitRow.arm_id == arm.id)) == 0:
            raise Conflict(f"arms: arm {arm.code!r} has no visit")
    if len(arms) > 1 and session.get(RandomisationRow, study.id) is None:
        raise Conflict("randomisation: a study with several arms needs the statistician's scheme first")


def _design(session: Session, study_id: int) -> tuple[Arm, ...]:
    arms = session.scalars(
        sa.select(ArmRow).where(ArmRow.study_id == study_id).order_by(ArmRow.position)
    ).all()
    result = []
    for arm in arms:
        visits = []
        for visit in session.scalars(
            sa.select(VisitRow).where(VisitRow.arm_id == arm.id).order_by(VisitRow.position)
        ):
            forms = session.scalars(
                sa.select(VisitFormRow)
                .where(VisitFormRow.visit_id == visit.id)
                .order_by(VisitFormRow.position)
            ).all()
            visits.append(
                Visit(
                    visit.code,
                    visit.name,
                    visit.day_offset,
                    visit.window_before,
                    visit.window_after,
                    tuple(VisitForm(form.url, form.repeating) for form in forms),
                )
            )
        result.append(Arm(arm.code, arm.name, tuple(visits)))
    return tuple(result)


def _form_rows(session: Session, study_id: int) -> list[FormVersionRow]:
    return list(
        session.scalars(
            sa.select(FormVersionRow)
            .where(FormVersionRow.study_id == study_id)
            .order_by(FormVersionRow.url, FormVersionRow.number)
        )
    )


def _view(session: Session, study: StudyRow, mine: frozenset[tuple[StudyRole, str | None]]) -> StudyView:
    # Site staff (without a study-wide role) see their own sites' people and counts only.
    wide = any(role in _STUDY_WIDE for role, _ in mine)
    own_sites = {site for role, site in mine if site is not None}
    sites = tuple(
        session.scalars(
            sa.select(SiteRow.name)
            .join(StudySiteRow, StudySiteRow.site_id == SiteRow.id)
            .where(StudySiteRow.study_id == study.id)
            .order_by(SiteRow.name)
        )
    )
    grants = [
        RoleGrant(row.id, row.email, StudyRole(row.role), site)
        for row, site in session.execute(
            sa.select(StudyRoleRow, SiteRow.name)
            .outerjoin(SiteRow, SiteRow.id == StudyRoleRow.site_id)
            .where(StudyRoleRow.study_id == study.id)
            .order_by(StudyRoleRow.role, SiteRow.name, StudyRoleRow.email)
        )
    ]
    enrolment = [
        (site, tuple(sorted(enrolled.items())))
        for site, enrolled in session.execute(
            sa.select(SiteRow.name, EnrolmentRow.enrolled)
            .join(EnrolmentRow, EnrolmentRow.site_id == SiteRow.id)
            .where(EnrolmentRow.study_id == study.id)
            .order_by(SiteRow.name)
        )
    ]
    if not wide:
        grants = [grant for grant in grants if grant.site is None or grant.site in own_sites]
        enrolment = [(site, counts) for site, counts in enrolment if site in own_sites]
        sites = tuple(site for site in sites if site in own_sites)
    history = tuple(
        StatusEvent(
            row.at,
            row.by,
            None if row.from_status is None else RecruitmentStatus(row.from_status),
            RecruitmentStatus(row.to_status),
            row.reason,
        )
        for row in session.scalars(
            sa.select(StatusEventRow).where(StatusEventRow.study_id == study.id).order_by(StatusEventRow.id)
        )
    )
    return StudyView(
        code=study.code,
        set_up=StudySetUp(
            study.title, study.acronym, study.registry_id, study.ethics_vote, study.eligibility
        ),
        status=RecruitmentStatus(study.status),
        definition_version=study.definition_version,
        sites=sites,
        arms=_design(session, study.id),
        forms=tuple(
            FormInfo(row.url, row.version, row.title, row.published, row.published_by)
            for row in _form_rows(session, study.id)
        ),
        roles=tuple(grants),
        history=history,
        enrolment=tuple(enrolment),
        randomised=session.get(RandomisationRow, study.id) is not None,
        mine=mine,
    )


def _definition(session: Session, study: StudyRow, site: Site) -> StudyDefinition:
    scheme = session.get(RandomisationRow, study.id)
    roster = session.execute(
        sa.select(StudyRoleRow.email, StudyRoleRow.role)
        .where(StudyRoleRow.study_id == study.id, StudyRoleRow.site_id == site.id)
        .order_by(StudyRoleRow.email, StudyRoleRow.role)
    ).all()
    return StudyDefinition(
        study_id=study.code,
        definition_version=study.definition_version,
        site=site.name,
        title=study.title,
        acronym=study.acronym,
        registry_id=study.registry_id,
        ethics_vote=study.ethics_vote,
        recruitment_status=RecruitmentStatus(study.status),
        eligibility=study.eligibility,
        arms=_design(session, study.id),
        forms=tuple(
            FormVersion(row.url, row.version, row.questionnaire) for row in _form_rows(session, study.id)
        ),
        randomised=scheme is not None,
        factors=()
        if scheme is None
        else tuple(StratificationFactor(f["name"], tuple(f["levels"])) for f in scheme.factors),
        roster=tuple(StaffMember(email, StudyRole(role)) for email, role in roster),
    )
