"""Local accounts of the site's study staff, and their sessions.

The EDC runs inside the hospital and signs its own staff in: an account is an e-mail address, a name and
an argon2id password hash (`datenraum studies users add`). What a person may do is not stored here: it is
their role on the study's roster, which the hub sends with the study definition and which matches the
account by e-mail. So the study lead changes a role at the hub, and the site decides who has an account.

Session tokens are random; only their SHA-256 is stored, so a copy of the database signs nobody in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

import argon2

from datenraum.site.studies.database import EdcDatabase

__all__ = ["MIN_PASSWORD", "Account", "AccountError", "Accounts", "normal_email"]

MIN_PASSWORD = 12
_hasher = argon2.PasswordHasher()
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class AccountError(ValueError):
    """An account cannot be created as asked; the text says why."""


@dataclass(frozen=True)
class Account:
    email: str
    name: str


def normal_email(email: str) -> str:
    """E-mail addresses compare case-insensitively (the roster's and the account's)."""
    return email.strip().lower()


class Accounts:
    def __init__(self, database: EdcDatabase, session_hours: float = 8.0) -> None:
        self._db = database
        self._session = dt.timedelta(hours=session_hours)

    def add(self, email: str, name: str, password: str, now: dt.datetime) -> Account:
        email = normal_email(email)
        if not _EMAIL.match(email):
            raise AccountError(f"{email!r} is not an e-mail address")
        if not name.strip():
            raise AccountError("the name must not be empty")
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"the password must have at least {MIN_PASSWORD} characters")
        with self._db.transaction() as db:
            if db.execute("SELECT 1 FROM account WHERE email = ?", (email,)).fetchone():
                raise AccountError(f"an account for {email} exists already")
            db.execute(
                "INSERT INTO account VALUES (?, ?, ?, ?)",
                (email, name.strip(), _hasher.hash(password), now.isoformat()),
            )
        return Account(email, name.strip())

    def check_password(self, email: str, password: str) -> Account | None:
        """The account if the password is its own; None otherwise (which of the two is wrong is not told)."""
        rows = self._db.rows(
            "SELECT email, name, password_hash FROM account WHERE email = ?", (normal_email(email),)
        )
        if not rows:
            _hasher.hash(password)  # as slow as a wrong password, so the time tells no one who has an account
            return None
        try:
            _hasher.verify(rows[0]["password_hash"], password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return None
        return Account(rows[0]["email"], rows[0]["name"])

    def start_session(self, account: Account, now: dt.datetime) -> str:
        token = secrets.token_urlsafe(32)
        with self._db.transaction() as db:
            db.execute("DELETE FROM session WHERE expires_at < ?", (now.isoformat(),))
            db.execute(
                "INSERT INTO session VALUES (?, ?, ?)",
                (_digest(token), account.email, (now + self._session).isoformat()),
            )
        return token

    def session_account(self, token: str, now: dt.datetime) -> Account | None:
        rows = self._db.rows(
            "SELECT a.email, a.name FROM session s JOIN account a ON a.email = s.email "
            "WHERE s.token_hash = ? AND s.expires_at > ?",
            (_digest(token), now.isoformat()),
        )
        return Account(rows[0]["email"], rows[0]["name"]) if rows else None

    def end_session(self, token: str) -> None:
        with self._db.transaction() as db:
            db.execute("DELETE FROM session WHERE token_hash = ?", (_digest(token),))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
