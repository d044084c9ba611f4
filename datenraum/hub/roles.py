"""Who acts in the hub: one `Role` vocabulary and one `Actor`, for accounts, the proposals' workflow and
the directory alike (the audit log's record of who acted is `accounts.audit.AuditSource`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Actor", "Role"]


class Role(StrEnum):
    """What a user may do; one user may hold several roles (see the role matrix in the README)."""

    RESEARCHER = "researcher"  # asks feasibility queries, writes proposals
    SITE_ADMIN = "site-admin"  # manages one site's agent credential and reads its task log
    COMMITTEE = "committee"  # member of the use-and-access committee
    ADMIN = "admin"  # coordination office: approves accounts, manages sites and roles, reads every query


@dataclass(frozen=True)
class Actor:
    """A user as the rules see them: their id, roles and the sites they administer."""

    user_id: int
    roles: frozenset[Role]
    site_ids: frozenset[int] = frozenset()  # the sites of the role site-admin
