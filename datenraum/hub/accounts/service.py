"""Who may talk to the hub: sites with their credentials, users with their API tokens and roles.

Secrets are returned once, to the administrator who issues them, and stored only as hashes (see
`auth`). A user's API token works for `token_lifetime` after it was issued (see `users` for what else
ends it). A revoked site's credential stops working at once; rotating issues a new credential (and
re-activates a revoked site), after which the old one no longer works.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from datenraum.hub.accounts.audit import AuditSource, record
from datenraum.hub.accounts.passwords import check_password, hash_password
from datenraum.hub.accounts.secrets import (
    SITE_PREFIX,
    USER_PREFIX,
    hash_secret,
    new_secret,
    secret_matches,
)
from datenraum.hub.db import Clock, SiteRow, UserRoleRow, UserRow, utcnow
from datenraum.hub.errors import AccountError
from datenraum.hub.roles import Role

__all__ = ["Accounts", "PortalRoleHolders", "Site", "User", "load_user"]

COMMAND_LINE = AuditSource(None, "command line")
_SITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


@dataclass(frozen=True)
class Site:
    id: int
    name: str


@dataclass(frozen=True)
class User:
    id: int
    email: str
    roles: frozenset[Role]
    site_ids: frozenset[int] = frozenset()  # the sites a site administrator is responsible for
    name: str = ""
    language: str | None = None  # None: the browser's choice
    token_expires: dt.datetime | None = None  # when the API token stops working; None: no token

    def has(self, role: Role) -> bool:
        return role in self.roles


def load_user(session: Session, row: UserRow) -> User:
    """The user of `row` with their roles, as the request handlers see them."""
    grants = session.execute(
        sa.select(UserRoleRow.role, UserRoleRow.site_id).where(UserRoleRow.user_id == row.id)
    ).all()
    return User(
        row.id,
        row.email,
        frozenset(Role(role) for role, _site in grants),
        frozenset(site for role, site in grants if role == Role.SITE_ADMIN and site is not None),
        row.name,
        row.language,
        row.token_expires if row.token_hash is not None else None,
    )


class PortalRoleHolders:
    """Who holds a role, from `user_roles`: the proposals' `RoleHolders`, so that their notifications go
    to whoever the coordination office has given the role. Accounts that are not approved are left out:
    they could not act on what they were told."""

    def user_ids(self, session: Session, role: Role, site_id: int | None = None) -> list[int]:
        query = (
            sa.select(UserRoleRow.user_id)
            .join(UserRow, UserRow.id == UserRoleRow.user_id)
            .where(UserRoleRow.role == role, UserRow.status == "approved")
            .distinct()
        )
        if role == Role.SITE_ADMIN:
            if site_id is None:
                return []
            query = query.where(UserRoleRow.site_id == site_id)
        return sorted(session.scalars(query))


class Accounts:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock = utcnow,
        token_lifetime: dt.timedelta = dt.timedelta(days=90),
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._token_lifetime = token_lifetime

    def add_site(self, name: str, actor: AuditSource = COMMAND_LINE) -> str:
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
            record(session, self._clock(), actor, "site.add", name)
        return credential

    def rotate_site(self, name: str, actor: AuditSource = COMMAND_LINE) -> str:
        """Replace a site's credential (and re-activate it if it was revoked); returns the new one."""
        credential = new_secret(SITE_PREFIX)
        with self._sessions.begin() as session:
            site = self._site_row(session, name)
            site.credential_hash = hash_secret(credential)
            site.active = True
            record(session, self._clock(), actor, "site.rotate", name)
        return credential

    def revoke_site(self, name: str, actor: AuditSource = COMMAND_LINE) -> None:
        """Stop accepting the site's credential; its unanswered tasks run into their deadlines."""
        with self._sessions.begin() as session:
            self._site_row(session, name).active = False
            record(session, self._clock(), actor, "site.revoke", name)

    def create_user(self, email: str, role: Role, *, name: str = "", password: str | None = None) -> str:
        """Create an approved user; returns the API token, which is not stored and cannot be shown again.

        With a password the user can also sign in to the portal (the first administrator is made so). The
        address is kept in lower case, as the portal keeps and looks up every address.
        """
        email = email.strip().lower()
        if len(email) > 320 or not _EMAIL.fullmatch(email):
            raise AccountError(f"{email!r} is not an e-mail address")
        if password is not None:
            check_password(password, email)
        token = new_secret(USER_PREFIX)
        with self._sessions.begin() as session:
            if session.scalar(sa.select(UserRow.id).where(UserRow.email == email)) is not None:
                raise AccountError(f"user {email!r} exists already")
            row = UserRow(
                email=email,
                name=name,
                status="approved",
                token_hash=hash_secret(token),
                token_expires=self._clock() + self._token_lifetime,
                password_hash=None if password is None else hash_password(password),
                created=self._clock(),
            )
            session.add(row)
            session.flush()
            session.add(UserRoleRow(user_id=row.id, role=Role(role).value))
            record(session, self._clock(), COMMAND_LINE, "account.create", email, Role(role).value)
        return token

    def site_for(self, credential: str) -> Site | None:
        """The active site this credential belongs to, or None."""
        with self._sessions() as session:
            # Columns, not the ORM entity: every request of every site asks this, twice per analysis round.
            row = session.execute(
                sa.select(SiteRow.id, SiteRow.name, SiteRow.credential_hash).where(
                    SiteRow.credential_hash == hash_secret(credential), SiteRow.active
                )
            ).first()
            # The row was found by the hash, so this compares equal; it stays, in constant time, so that
            # the check does not rest on how the database compares strings.
            if row is None or not secret_matches(credential, row.credential_hash):
                return None
            return Site(row.id, row.name)

    def user_for(self, token: str) -> User | None:
        """The approved user this API token belongs to, while it lasts; or None."""
        with self._sessions() as session:
            row = session.scalar(
                sa.select(UserRow).where(
                    UserRow.token_hash == hash_secret(token),
                    UserRow.status == "approved",
                    UserRow.token_expires > self._clock(),
                )
            )
            if row is None or row.token_hash is None or not secret_matches(token, row.token_hash):
                return None
            return load_user(session, row)

    @staticmethod
    def _site_row(session: Session, name: str) -> SiteRow:
        row = session.scalar(sa.select(SiteRow).where(SiteRow.name == name))
        if row is None:
            raise AccountError(f"no site named {name!r}")
        return row
