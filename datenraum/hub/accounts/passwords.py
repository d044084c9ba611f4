"""Passwords: the policy, and argon2id hashes (salted and slow, unlike the hashes of random secrets)."""

from __future__ import annotations

import argon2

from datenraum.hub.errors import AccountError

__all__ = ["MIN_PASSWORD_LENGTH", "check_password", "hash_password", "needs_rehash", "verify_password"]

MIN_PASSWORD_LENGTH = 10
_hasher = argon2.PasswordHasher()
# Verifying against this when there is no stored hash makes a failed sign-in take as long either way,
# so that the response time does not tell which addresses have accounts.
_NOBODY = _hasher.hash("not a password of anyone")


def check_password(password: str, email: str) -> None:
    """Long enough, not too long to hash, and not the e-mail address."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > 1000:
        raise AccountError("password: at most 1000 characters")
    if password.strip().lower() == email.strip().lower():
        raise AccountError("password: must not be the e-mail address")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Whether `password` matches; with no stored hash, False, after the same work as a real check."""
    try:
        return _hasher.verify(stored_hash or _NOBODY, password) and stored_hash is not None
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)
