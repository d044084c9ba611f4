"""Portal accounts: registration, approval, passwords, sign-in, sessions, password reset and roles.

A person registers (name, institution, e-mail, password) and can do nothing until the coordination
office approves the account. Passwords are hashed with argon2id; session and reset tokens are random
and stored only as SHA-256 hashes, like the API tokens (see `auth`); the reset mail holds the token, the
outbox keeps it masked. An API token lasts `token_lifetime` and ends with a password change or reset.

Failed sign-ins are counted per e-mail address and per client address, so that guessing is slowed down
whether it aims at one account or at many. For an address the pause grows (1 minute after
`max_failed_logins` failures, doubling with each further one, at most `login_window`), so nobody can keep
an account locked for long, and the owner's password reset ends it at once. Reset requests (per address
and per client) and registrations (per client) are limited too, counted in the audit log; an address is
counted alike whether or not it has an account, and a registration with an address that has one answers
as any other (its owner is told by mail), so that no form reveals which addresses have accounts.

Names, institutions and addresses must not hold invisible or direction-changing characters (Unicode's
control and format characters, e.g. U+202E or U+200B), which would make the coordination office read a
name other than the one stored. Every method is one transaction and records what it did in the audit log.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from datenraum.hub.accounts.audit import AuditSource, record
from datenraum.hub.accounts.outbox import Outbox
from datenraum.hub.accounts.passwords import (
    MIN_PASSWORD_LENGTH,
    check_password,
    hash_password,
    needs_rehash,
    verify_password,
)
from datenraum.hub.accounts.secrets import USER_PREFIX, hash_secret, new_secret
from datenraum.hub.accounts.service import User, load_user
from datenraum.hub.db import (
    AuditRow,
    Clock,
    LoginAttemptRow,
    PasswordResetRow,
    SiteRow,
    UserRoleRow,
    UserRow,
    WebSessionRow,
    utcnow,
)
from datenraum.hub.errors import AccountError, TooMany
from datenraum.hub.roles import Role
from datenraum.hub.text import clean_text

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "Account",
    "AccountPending",
    "LoginThrottled",
    "Registration",
    "RequestsThrottled",
    "Status",
    "Users",
]

SESSION_PREFIX = "drw_"
RESET_PREFIX = "drp_"
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")


class Status(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    DISABLED = "disabled"


class AccountPending(AccountError):
    """The account exists but waits for approval; a sign-in by single sign-on says so on its own page."""


class LoginThrottled(TooMany):
    """Too many failed sign-ins recently; `retry_after` says when to try again."""

    def __init__(self, retry_after: dt.timedelta) -> None:
        super().__init__("too many failed sign-ins; try again later", retry_after)


class RequestsThrottled(TooMany):
    """Too many reset requests or registrations recently; `retry_after` says when to try again."""

    def __init__(self, retry_after: dt.timedelta) -> None:
        super().__init__("too many requests; try again later", retry_after)


@dataclass(frozen=True)
class Registration:
    name: str
    institution: str
    email: str
    password: str


@dataclass(frozen=True)
class Account:
    """A user as the administrators' pages list them."""

    id: int
    email: str
    name: str
    institution: str
    status: Status
    created: dt.datetime
    roles: tuple[tuple[Role, str | None], ...]  # (role, site name) pairs
    has_password: bool
    has_token: bool


def _normal_email(email: str) -> str:
    email = email.strip().lower()
    _visible(email, "email")
    if len(email) > 320 or not _EMAIL.fullmatch(email):
        raise AccountError("email: not an e-mail address")
    return email


# Unicode's control (Cc), format (Cf: bidi overrides and isolates, zero-width characters, the BOM, the soft
# hyphen) and surrogate (Cs) characters: none belongs in a name, and they change how one is displayed.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs"})


def _visible(value: str, field: str) -> None:
    for character in value:
        if unicodedata.category(character) in _INVISIBLE:
            raise AccountError(
                f"{field}: must not contain invisible or direction-changing characters "
                f"(found U+{ord(character):04X})"
            )


def _without_invisible(value: str) -> str:
    return "".join(c for c in value if unicodedata.category(c) not in _INVISIBLE)


def _name(value: str, field: str) -> str:
    """A name of one line, as stored (see `clean_text`), without invisible characters."""
    name = clean_text(value, field, max_length=200, collapse_spaces=True, error=AccountError)
    _visible(name, field)
    return name


def _add_pending(session: Session, now: dt.datetime, ip: str, row: UserRow, *detail: str) -> UserRow:
    """`row`, a new account, added as pending with the researcher role, and its registration audited."""
    row.status = Status.PENDING.value
    row.created = now
    session.add(row)
    session.flush()
    session.add(UserRoleRow(user_id=row.id, role=Role.RESEARCHER.value))
    record(session, now, AuditSource(row.id, row.email, ip), "account.register", row.email, *detail)
    return row


class Users:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        outbox: Outbox,
        *,
        clock: Clock = utcnow,
        session_lifetime: dt.timedelta = dt.timedelta(hours=12),
        reset_lifetime: dt.timedelta = dt.timedelta(hours=1),
        max_failed_logins: int = 5,
        login_window: dt.timedelta = dt.timedelta(minutes=15),
        token_lifetime: dt.timedelta = dt.timedelta(days=90),
        resets_per_address: int = 3,
        resets_per_client: int = 10,
        registrations_per_client: int = 5,
        request_window: dt.timedelta = dt.timedelta(hours=1),
        on_approved: Callable[[Session, int, str], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._outbox = outbox
        self._clock = clock
        self._session_lifetime = session_lifetime
        self._reset_lifetime = reset_lifetime
        self._max_failed = max_failed_logins
        self._login_window = login_window
        # Failures are remembered longer than the longest pause, so that the pauses keep growing.
        self._failure_memory = 4 * login_window
        self._token_lifetime = token_lifetime
        self._limits = {
            "reset-address": resets_per_address,
            "reset-client": resets_per_client,
            "register-client": registrations_per_client,
        }
        self._request_window = request_window
        # What else happens in the transaction that approves an account (proposals' team invitations).
        self._on_approved = on_approved

    # Registration and approval

    def register(self, registration: Registration, ip: str = "") -> int | None:
        """A new pending account (its id); the coordination office is told that one waits.

        An address that has an account already is answered alike (None, after the same work), and its
        owner is told by mail that someone tried, so that registering does not reveal who has an account.
        """
        email = _normal_email(registration.email)
        name = _name(registration.name, "name")
        institution = _name(registration.institution, "institution")
        check_password(registration.password, email)
        password_hash = hash_password(registration.password)
        now = self._clock()
        with self._sessions.begin() as session:
            throttled = self._limit(
                session, now, "register-client", ip, ("account.register", "account.register-existing"), ip
            )
        if throttled is not None:
            raise throttled
        try:
            with self._sessions.begin() as session:
                existing = session.scalar(sa.select(UserRow).where(UserRow.email == email))
                if existing is None:
                    return _add_pending(
                        session,
                        now,
                        ip,
                        UserRow(email=email, name=name, institution=institution, password_hash=password_hash),
                    ).id
                self._tell_of_registration(session, existing, now, ip)
                return None
        except sa.exc.IntegrityError:
            # The same address registered at the same moment, and that transaction came first.
            with self._sessions.begin() as session:
                existing = session.scalar(sa.select(UserRow).where(UserRow.email == email))
                if existing is not None:
                    self._tell_of_registration(session, existing, now, ip)
            return None

    def _tell_of_registration(self, session: Session, row: UserRow, now: dt.datetime, ip: str) -> None:
        record(session, now, AuditSource(row.id, row.email, ip), "account.register-existing", row.email)
        self._outbox.queue(
            session,
            row.email,
            "Datenraum: someone tried to register with your address",
            f"Hello {row.name},\n\nsomeone tried to register a new Datenraum account with your e-mail address, "
            "which has an account already. Nothing was changed. If it was you, sign in as before, or ask "
            "for a new password on the sign-in page; if not, ignore this message.",
        )

    def set_status(self, actor: AuditSource, user_id: int, status: Status) -> None:
        """Approve, reject, disable or re-enable an account; the person is told by message."""
        with self._sessions.begin() as session:
            row = self._user_row(session, user_id)
            if row.id == actor.user_id and status != Status.APPROVED:
                raise AccountError("status: administrators cannot lock themselves out")
            row.status = status.value
            if status != Status.APPROVED:
                session.execute(sa.delete(WebSessionRow).where(WebSessionRow.user_id == row.id))
            record(session, self._clock(), actor, f"account.{status.value}", row.email)
            if status == Status.APPROVED:
                if self._on_approved is not None:
                    self._on_approved(session, row.id, row.email)
                self._outbox.queue(
                    session,
                    row.email,
                    "Datenraum: your account is approved",
                    f"Hello {row.name},\n\nyour Datenraum account has been approved; you can sign in now.",
                )

    def grant(self, actor: AuditSource, user_id: int, role: Role, site: str | None = None) -> None:
        with self._sessions.begin() as session:
            row = self._user_row(session, user_id)
            site_id = self._site_for_role(session, role, site)
            exists = session.scalar(
                sa.select(UserRoleRow.id).where(
                    UserRoleRow.user_id == user_id,
                    UserRoleRow.role == role.value,
                    UserRoleRow.site_id.is_(None) if site_id is None else UserRoleRow.site_id == site_id,
                )
            )
            if exists is None:
                session.add(UserRoleRow(user_id=user_id, role=role.value, site_id=site_id))
                record(session, self._clock(), actor, "role.grant", row.email, _role_text(role, site))

    def revoke(self, actor: AuditSource, user_id: int, role: Role, site: str | None = None) -> None:
        with self._sessions.begin() as session:
            row = self._user_row(session, user_id)
            if row.id == actor.user_id and role == Role.ADMIN:
                raise AccountError("role: administrators cannot take their own administrator role")
            site_id = self._site_for_role(session, role, site)
            session.execute(
                sa.delete(UserRoleRow).where(
                    UserRoleRow.user_id == user_id,
                    UserRoleRow.role == role.value,
                    UserRoleRow.site_id.is_(None) if site_id is None else UserRoleRow.site_id == site_id,
                )
            )
            record(session, self._clock(), actor, "role.revoke", row.email, _role_text(role, site))

    def accounts(self, status: Status | None = None) -> list[Account]:
        with self._sessions() as session:
            statement = sa.select(UserRow).order_by(UserRow.created.desc(), UserRow.id.desc())
            if status is not None:
                statement = statement.where(UserRow.status == status.value)
            rows = session.scalars(statement).all()
            grants = session.execute(
                sa.select(UserRoleRow.user_id, UserRoleRow.role, SiteRow.name)
                .outerjoin(SiteRow, SiteRow.id == UserRoleRow.site_id)
                .order_by(UserRoleRow.role, SiteRow.name)
            ).all()
            by_user: dict[int, list[tuple[Role, str | None]]] = {}
            for user_id, role, site in grants:
                by_user.setdefault(user_id, []).append((Role(role), site))
            return [
                Account(
                    row.id,
                    row.email,
                    row.name,
                    row.institution,
                    Status(row.status),
                    row.created,
                    tuple(by_user.get(row.id, ())),
                    row.password_hash is not None,
                    row.token_hash is not None,
                )
                for row in rows
            ]

    # Signing in and out

    def login(self, email: str, password: str, ip: str) -> str:
        """A new session token for an approved account with this password.

        Raises AccountError with one message for every kind of failure (unknown address, wrong password,
        account not approved), so that the answer does not tell which addresses have accounts; the audit
        log records the real reason.
        """
        email = email.strip().lower()
        now = self._clock()
        with self._sessions.begin() as session:
            throttled = self._throttled(session, email, ip, now)
            if throttled is not None:
                record(session, now, AuditSource(None, email, ip), "login.throttled", email)
        if throttled is not None:
            raise throttled
        with self._sessions.begin() as session:
            row = session.scalar(sa.select(UserRow).where(UserRow.email == email))
            verified = verify_password(row.password_hash if row else None, password)
            actor = AuditSource(row.id if row else None, email, ip)
            if not verified or row is None:
                session.add(LoginAttemptRow(at=now, email=email[:320], ip=ip[:64]))
                record(session, now, actor, "login.failed", email, "wrong e-mail or password")
                failure = AccountError("wrong e-mail address or password")
            elif row.status != Status.APPROVED:
                record(session, now, actor, "login.refused", email, f"account {row.status}")
                failure = _not_active(Status(row.status))
            else:
                if needs_rehash(row.password_hash):
                    row.password_hash = hash_password(password)
                record(session, now, actor, "login", email)
                return self._new_session(session, row.id, now)
        raise failure

    def login_external(self, subject: str, email: str, name: str, ip: str) -> str:
        """A session for a person signed in by the identity provider (OpenID Connect).

        The first sign-in links the provider's subject to the account with that e-mail address, or creates a
        pending account; approval by the coordination office is needed either way.
        """
        email = _normal_email(email)
        now = self._clock()
        with self._sessions.begin() as session:
            row = session.scalar(sa.select(UserRow).where(UserRow.oidc_subject == subject))
            if row is None:
                row = session.scalar(sa.select(UserRow).where(UserRow.email == email))
                if row is not None and row.oidc_subject is None:
                    row.oidc_subject = subject
                elif row is None:
                    row = _add_pending(
                        session,
                        now,
                        ip,
                        UserRow(
                            email=email,
                            name=_name(_without_invisible(name) or email, "name"),
                            institution="",
                            oidc_subject=subject,
                        ),
                        "single sign-on",
                    )
                else:
                    raise AccountError("this e-mail address belongs to another single sign-on identity")
            actor = AuditSource(row.id, row.email, ip)
            if row.status == Status.APPROVED:
                record(session, now, actor, "login", row.email, "single sign-on")
                return self._new_session(session, row.id, now)
            record(session, now, actor, "login.refused", row.email, f"account {row.status}")
            failure = _not_active(Status(row.status))
        raise failure

    def session_user(self, token: str) -> User | None:
        """The approved user of a live session, or None."""
        now = self._clock()
        with self._sessions() as session:
            row = session.scalar(
                sa.select(UserRow)
                .join(WebSessionRow, WebSessionRow.user_id == UserRow.id)
                .where(
                    WebSessionRow.token_hash == hash_secret(token),
                    WebSessionRow.expires > now,
                    UserRow.status == Status.APPROVED.value,
                )
            )
            return None if row is None else load_user(session, row)

    def logout(self, token: str, actor: AuditSource) -> None:
        with self._sessions.begin() as session:
            session.execute(sa.delete(WebSessionRow).where(WebSessionRow.token_hash == hash_secret(token)))
            record(session, self._clock(), actor, "logout", actor.label)

    # Passwords and tokens

    def change_password(self, actor: AuditSource, current: str, new: str) -> None:
        """Set a new password after checking the current one; other sessions of the user end."""
        with self._sessions.begin() as session:
            row = self._user_row(session, actor.user_id)
            if not verify_password(row.password_hash, current):
                record(session, self._clock(), actor, "password.change-failed", row.email)
                failure = AccountError("current password: wrong password")
            else:
                check_password(new, row.email)
                row.password_hash = hash_password(new)
                self._end_credentials(session, row)
                record(session, self._clock(), actor, "password.change", row.email)
                return
        raise failure

    def request_reset(self, email: str, link_base: str, ip: str) -> None:
        """Send a one-time link to set a new password, if the address has an account (nothing is said
        either way, so that the form does not reveal which addresses have accounts)."""
        email = email.strip().lower()
        now = self._clock()
        with self._sessions.begin() as session:
            # Counted by the address asked for, whether or not it has an account, and by the client.
            requests = ("password.reset-request",)
            throttled = self._limit(session, now, "reset-address", email, requests, ip) or self._limit(
                session, now, "reset-client", ip, requests, ip
            )
        if throttled is not None:
            raise throttled
        with self._sessions.begin() as session:
            row = session.scalar(sa.select(UserRow).where(UserRow.email == email))
            record(
                session,
                now,
                AuditSource(row.id if row else None, email, ip),
                "password.reset-request",
                email[:320],
            )
            if row is None or row.status in (Status.REJECTED, Status.DISABLED):
                return
            token = new_secret(RESET_PREFIX)
            session.add(
                PasswordResetRow(
                    token_hash=hash_secret(token),
                    user_id=row.id,
                    created=now,
                    expires=now + self._reset_lifetime,
                )
            )
            minutes = int(self._reset_lifetime.total_seconds() // 60)
            self._outbox.queue(
                session,
                row.email,
                "Datenraum: set a new password",
                f"Hello {row.name},\n\nto set a new password for Datenraum, open this link within {minutes} "
                f"minutes:\n\n{link_base}?token={token}\n\nIf you did not ask for this, ignore this message.",
                secret=token,
            )

    def reset_password(self, token: str, new: str, ip: str) -> None:
        """Set a new password with a one-time link; the link then stops working, as do older sessions."""
        now = self._clock()
        with self._sessions.begin() as session:
            reset = session.get(PasswordResetRow, hash_secret(token), with_for_update=True)
            if reset is None or reset.used is not None or reset.expires <= now:
                raise AccountError("this link is invalid or has expired; ask for a new one")
            row = self._user_row(session, reset.user_id)
            check_password(new, row.email)
            row.password_hash = hash_password(new)
            reset.used = now
            self._end_credentials(session, row)
            record(session, now, AuditSource(row.id, row.email, ip), "password.reset", row.email)

    def issue_token(self, actor: AuditSource) -> str:
        """A new API token for the user (shown once); the previous one stops working."""
        token = new_secret(USER_PREFIX)
        now = self._clock()
        with self._sessions.begin() as session:
            row = self._user_row(session, actor.user_id)
            row.token_hash = hash_secret(token)
            row.token_expires = now + self._token_lifetime
            record(session, now, actor, "token.issue", row.email)
        return token

    def emails(self, user_ids: Iterable[int]) -> dict[int, str]:
        """The e-mail addresses of these users, by id: how proposal pages name team members and voters."""
        wanted = sorted(set(user_ids))
        if not wanted:
            return {}
        with self._sessions() as session:
            rows = session.execute(sa.select(UserRow.id, UserRow.email).where(UserRow.id.in_(wanted)))
            return dict(rows.all())

    def approved_ids(self, emails: Iterable[str]) -> dict[str, int]:
        """The ids of the approved accounts with these addresses (normalised as at registration), by the
        address as given; an address without such an account is missing from the answer."""
        given = {email: email.strip().lower() for email in emails}
        if not given:
            return {}
        with self._sessions() as session:
            found = dict(
                session.execute(
                    sa.select(UserRow.email, UserRow.id).where(
                        UserRow.email.in_(sorted(set(given.values()))),
                        UserRow.status == Status.APPROVED.value,
                    )
                ).all()
            )
        return {email: found[normal] for email, normal in given.items() if normal in found}

    def set_language(self, user_id: int, language: str) -> None:
        with self._sessions.begin() as session:
            self._user_row(session, user_id).language = language

    # Internals

    def _new_session(self, session: Session, user_id: int, now: dt.datetime) -> str:
        token = new_secret(SESSION_PREFIX)
        session.execute(sa.delete(WebSessionRow).where(WebSessionRow.expires <= now))
        session.add(
            WebSessionRow(
                token_hash=hash_secret(token),
                user_id=user_id,
                created=now,
                expires=now + self._session_lifetime,
            )
        )
        return token

    def _end_credentials(self, session: Session, row: UserRow) -> None:
        """After a new password: other sessions and the API token end, and a sign-in pause for the address
        is lifted (whoever set the password owns the account)."""
        session.execute(sa.delete(WebSessionRow).where(WebSessionRow.user_id == row.id))
        session.execute(sa.delete(LoginAttemptRow).where(LoginAttemptRow.email == row.email))
        row.token_hash = None
        row.token_expires = None

    def _throttled(self, session: Session, email: str, ip: str, now: dt.datetime) -> LoginThrottled | None:
        session.execute(sa.delete(LoginAttemptRow).where(LoginAttemptRow.at <= now - self._failure_memory))
        # The address: a pause after `max_failed` failures, of a minute, doubling with each further failure
        # (only failures count, and a paused attempt is not one), at most the window.
        failures = session.scalars(
            sa.select(LoginAttemptRow.at).where(
                LoginAttemptRow.email == email, LoginAttemptRow.at > now - self._failure_memory
            )
        ).all()
        if len(failures) >= self._max_failed:
            excess = min(len(failures) - self._max_failed, 16)
            pause = min(dt.timedelta(minutes=2**excess), self._login_window)
            until = max(failures) + pause
            if until > now:
                return LoginThrottled(until - now)
        # The client: one address may serve many people (a hospital's proxy), so it gets more room.
        since = now - self._login_window
        attempts = session.scalars(
            sa.select(LoginAttemptRow.at).where(LoginAttemptRow.ip == ip, LoginAttemptRow.at > since)
        ).all()
        if len(attempts) >= self._max_failed * 4:
            return LoginThrottled(min(attempts) + self._login_window - now)
        return None

    def _limit(
        self, session: Session, now: dt.datetime, kind: str, key: str, actions: tuple[str, ...], ip: str
    ) -> RequestsThrottled | None:
        """RequestsThrottled (recorded) when `key` (an e-mail address or a client) made its limit of these
        requests within the request window; the audit log, which records each request, is what counts."""
        if not key:
            return None  # no client address known (a command, a test): nothing to count by
        column = AuditRow.ip if kind.endswith("-client") else AuditRow.target
        since = now - self._request_window
        times = session.scalars(
            sa.select(AuditRow.at).where(
                AuditRow.action.in_(actions), AuditRow.at > since, column == key[:320]
            )
        ).all()
        if len(times) < self._limits[kind]:
            return None
        record(session, now, AuditSource(None, "anonymous", ip), "request.throttled", key[:320], kind)
        return RequestsThrottled(min(times) + self._request_window - now)

    @staticmethod
    def _user_row(session: Session, user_id: int | None) -> UserRow:
        row = None if user_id is None else session.get(UserRow, user_id)
        if row is None:
            raise AccountError(f"no user with id {user_id}")
        return row

    @staticmethod
    def _site_for_role(session: Session, role: Role, site: str | None) -> int | None:
        if role != Role.SITE_ADMIN:
            if site:
                raise AccountError(f"site: only the {Role.SITE_ADMIN} role is for a site")
            return None
        if not site:
            raise AccountError(f"site: the {Role.SITE_ADMIN} role needs a site")
        site_id = session.scalar(sa.select(SiteRow.id).where(SiteRow.name == site))
        if site_id is None:
            raise AccountError(f"site: no site named {site!r}")
        return site_id


def _not_active(status: Status) -> AccountError:
    if status == Status.PENDING:
        return AccountPending("this account is waiting for approval by the coordination office")
    return AccountError("this account is not active; ask the coordination office")


def _role_text(role: Role, site: str | None) -> str:
    return f"{role.value} of {site}" if site else role.value
