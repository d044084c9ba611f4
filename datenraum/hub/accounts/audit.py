"""The audit log: every security-relevant action, for the coordination office to read and filter.

Entries are written in the same transaction as the action they describe, so the log can neither miss
an action that happened nor show one that was rolled back. Details never carry secrets or counts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from datenraum.hub.db import AuditRow

__all__ = ["AuditEntry", "AuditSource", "record", "search"]


@dataclass(frozen=True)
class AuditSource:
    """Who acts: a user (by id, with their e-mail as a label that outlives the account) from an address."""

    user_id: int | None
    label: str
    ip: str = ""


@dataclass(frozen=True)
class AuditEntry:
    at: dt.datetime
    actor: str
    action: str
    target: str
    detail: str
    ip: str


def record(
    session: Session, at: dt.datetime, actor: AuditSource, action: str, target: str = "", detail: str = ""
) -> None:
    session.add(
        AuditRow(
            at=at,
            actor_id=actor.user_id,
            actor=actor.label[:320],
            action=action,
            target=target[:320],
            detail=detail,
            ip=actor.ip[:64],
        )
    )


def search(
    sessions: sessionmaker[Session],
    *,
    action: str | None = None,
    actor: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 200,
) -> list[AuditEntry]:
    """The newest entries first; `action` matches a prefix ("login" finds login.failed too), `actor` a part
    of the actor's or the target's e-mail address."""
    statement = sa.select(AuditRow).order_by(AuditRow.at.desc(), AuditRow.id.desc()).limit(limit)
    if action:
        statement = statement.where(AuditRow.action.startswith(action, autoescape=True))
    if actor:
        statement = statement.where(
            sa.or_(
                AuditRow.actor.contains(actor, autoescape=True),
                AuditRow.target.contains(actor, autoescape=True),
            )
        )
    if since is not None:
        statement = statement.where(AuditRow.at >= since)
    if until is not None:
        statement = statement.where(AuditRow.at < until)
    with sessions() as session:
        return [
            AuditEntry(row.at, row.actor, row.action, row.target, row.detail, row.ip)
            for row in session.scalars(statement)
        ]
