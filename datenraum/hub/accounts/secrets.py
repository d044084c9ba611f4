"""Secrets for sites and users: issued once, stored only as a hash, compared in constant time.

The secrets are 256 random bits, so a plain SHA-256 is enough to store them: there is nothing to guess
that a slow, salted hash would protect (unlike passwords). The hash is also the lookup key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["SITE_PREFIX", "USER_PREFIX", "hash_secret", "new_secret", "secret_matches"]

# Prefixes make a leaked secret recognisable (by people and secret scanners) and say what it opens.
SITE_PREFIX = "drs_"
USER_PREFIX = "dru_"


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)
