"""Who may touch a study: the reader's roles in it, read from `study_roles` by e-mail.

Someone without a role in a study is told there is no such study (NotFound), so that study codes do not
leak; a member who may read but not change gets Forbidden. A site (its agent) sees only the studies it
takes part in.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from datenraum.hub.accounts.service import Site, User
from datenraum.hub.db import SiteRow
from datenraum.hub.errors import Forbidden, NotFound
from datenraum.hub.studies.tables import StudyRoleRow, StudyRow, StudySiteRow
from datenraum.protocol.studies import StudyRole

__all__ = ["Roles", "lead_study", "roles_of", "site_study", "study_for"]

Roles = frozenset[tuple[StudyRole, str | None]]  # (role, site name or None for a study-wide role)


def roles_of(session: Session, study_id: int, email: str) -> Roles:
    rows = session.execute(
        sa.select(StudyRoleRow.role, SiteRow.name)
        .outerjoin(SiteRow, SiteRow.id == StudyRoleRow.site_id)
        .where(StudyRoleRow.study_id == study_id, StudyRoleRow.email == email.lower())
    ).all()
    return frozenset((StudyRole(role), site) for role, site in rows)


def study_for(session: Session, user: User, code: str, *, lock: bool = False) -> tuple[StudyRow, Roles]:
    """The study and the user's roles in it; NotFound for someone without any."""
    statement = sa.select(StudyRow).where(StudyRow.code == code)
    study = session.scalars(statement.with_for_update() if lock else statement).first()
    mine = frozenset() if study is None else roles_of(session, study.id, user.email)
    if study is None or not mine:
        raise NotFound(f"no study {code!r}")
    return study, mine


def lead_study(session: Session, user: User, code: str) -> StudyRow:
    study, mine = study_for(session, user, code, lock=True)
    if not any(role is StudyRole.STUDY_LEAD for role, _ in mine):
        raise Forbidden("only a study lead changes the study")
    return study


def site_study(session: Session, site: Site, code: str) -> StudyRow:
    study = session.scalars(
        sa.select(StudyRow)
        .join(StudySiteRow, StudySiteRow.study_id == StudyRow.id)
        .where(StudyRow.code == code, StudySiteRow.site_id == site.id)
        .with_for_update(of=StudyRow)
    ).first()
    if study is None:
        raise NotFound(f"no study {code!r} at site {site.name!r}")
    return study
