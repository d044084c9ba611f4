"""Who may talk to the hub: sites with their credentials, users with their API tokens.

Secrets are returned once, to the administrator who issues them, and stored only as hashes (see
`auth`). A revoked site's credential stops working at once; rotating issues a new credential (and
re-activates a revoked site), after which the old one no longer works.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from datenraum.hub.auth import SITE_PREFIX, USER_PREFIX, hash_secret, new_secret, secret_matches
from datenraum.hub.db import Clock, SiteRow, UserRow, utcnow

__all__ = ["AccountError", "Accounts", "Role", "Site", "User"]

_SITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


class AccountError(ValueError):
    """An administrative request that cannot be done (unknown or duplicate name, bad value)."""


class Role(StrEnum):
    RESEARCHER = "researcher"
    ADMIN = "admin"  # may read every query, not only those they submitted


@dataclass(frozen=True)
class Site:
    id: int
    name: str


@dataclass(frozen=True)
class User:
    id: int
    email: str
    role: Role


class Accounts:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock = utcnow) -> None:
        self._sessions = sessions
        self._clock = clock

    def add_site(self, name: str) -> str:
        """Register a site; returns its credential, which is not stored and cannot be shown again."""
        if not _SITE_NAME.fullmatch(name):
            raise AccountError(
                f"site name {name!r}: use 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        credential = new_secret(SITE_PREFIX)
        with self._sessions.begin() as session:
            if session.scalar(sa.select(SiteRow.id).where(SiteRow.name == name)) is not None:
                raise AccountError(f"site {name!r} exists already (rotate-site issues a new credential)")
            session.add(SiteRow(name=name, credential_hash=hash_secret(credential), created=self._clock()))
        return credential

    def rotate_site(self, name: str) -> str:
        """Replace a site's credential (and re-activate it if it was revoked); returns the new one."""
        credential = new_secret(SITE_PREFIX)
        with self._sessions.begin() as session:
            site = self._site_row(session, name)
            site.credential_hash = hash_secret(credential)
            site.active = True
        return credential

    def revoke_site(self, name: str) -> None:
        """Stop accepting the site's credential; its unanswered tasks run into their deadlines."""
        with self._sessions.begin() as session:
            self._site_row(session, name).active = False

    def create_user(self, email: str, role: Role) -> str:
        """Create a user; returns the API token, which is not stored and cannot be shown again."""
        if len(email) > 320 or not _EMAIL.fullmatch(email):
            raise AccountError(f"{email!r} is not an e-mail address")
        token = new_secret(USER_PREFIX)
        with self._sessions.begin() as session:
            if session.scalar(sa.select(UserRow.id).where(UserRow.email == email)) is not None:
                raise AccountError(f"user {email!r} exists already")
            session.add(
                UserRow(
                    email=email, role=Role(role).value, token_hash=hash_secret(token), created=self._clock()
                )
            )
        return token

    def site_for(self, credential: str) -> Site | None:
        """The active site this credential belongs to, or None."""
        with self._sessions() as session:
            row = session.scalar(
                sa.select(SiteRow).where(SiteRow.credential_hash == hash_secret(credential), SiteRow.active)
            )
            # The row was found by the hash, so this compares equal; it stays, in constant time, so that
            # the check does not rest on how the database compares strings.
            if row is None or not secret_matches(credential, row.credential_hash):
                return None
            return Site(row.id, row.name)

    def user_for(self, token: str) -> User | None:
        """The user this API token belongs to, or None."""
        with self._sessions() as session:
            row = session.scalar(sa.select(UserRow).where(UserRow.token_hash == hash_secret(token)))
            if row is None or not secret_matches(token, row.token_hash):
                return None
            return User(row.id, row.email, Role(row.role))

    @staticmethod
    def _site_row(session: Session, name: str) -> SiteRow:
        row = session.scalar(sa.select(SiteRow).where(SiteRow.name == name))
        if row is None:
            raise AccountError(f"no site named {name!r}")
        return row
