"""Team members named by an address that has no approved account (yet).

The draft form's team field takes any address. An address with an approved account becomes a team member
at once (it is stored by user id, with the draft); any other is kept here as an invitation, and becomes a
member when an account with that address is approved (`resolve`, called in the approval's transaction).
The pages list members and invitations alike, by address and role, in the order of the addresses, so that
the team field does not tell a researcher which addresses have approved accounts.

Invitations are written by the portal right after the proposal service accepted the draft from the same
person (create or edit), so they need no check of their own.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from datenraum.hub.proposals.tables import InvitationRow, TeamMemberRow

__all__ = ["Invitations", "resolve"]


class Invitations:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def replace(self, proposal_id: int, invited: Iterable[tuple[str, str]]) -> None:
        """The proposal's invitations become `invited` (address, project role)."""
        with self._sessions.begin() as session:
            session.execute(sa.delete(InvitationRow).where(InvitationRow.proposal_id == proposal_id))
            for email, role in dict(invited).items():
                session.add(InvitationRow(proposal_id=proposal_id, email=email, project_role=role))

    def of(self, proposal_id: int) -> list[tuple[str, str]]:
        """(address, project role) of the proposal's invitations, by address."""
        with self._sessions() as session:
            rows = session.execute(
                sa.select(InvitationRow.email, InvitationRow.project_role)
                .where(InvitationRow.proposal_id == proposal_id)
                .order_by(InvitationRow.email)
            )
            return [(email, role) for email, role in rows]


def resolve(session: Session, user_id: int, email: str) -> None:
    """The account of `email` was approved: its invitations become team memberships."""
    invitations = session.scalars(sa.select(InvitationRow).where(InvitationRow.email == email)).all()
    for invitation in invitations:
        member = session.get(TeamMemberRow, (invitation.proposal_id, user_id))
        if member is None:
            session.add(
                TeamMemberRow(
                    proposal_id=invitation.proposal_id, user_id=user_id, project_role=invitation.project_role
                )
            )
        session.delete(invitation)
