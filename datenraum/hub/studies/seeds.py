"""The statistician's randomisation seed, as the hub keeps it: sealed, and checkable.

The hub must draw allocations while the statistician is away, so it needs the seed; but whoever can read
the seed can derive every future allocation and unblind the study. So the database holds it only
encrypted (AES-256-GCM) with a key kept in a file outside the database (`study_key_file`, created on
first use, readable by the hub's user only): a copy of the database, a backup or a database
administrator learn nothing, and nothing the hub shows or answers contains it. Beside it the hub keeps
a slow hash (scrypt) of the seed, to check a seed the statistician types in when they reproduce the
sequence: the hub hands the full sequence out only to someone who already holds the seed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["SeedVault", "seed_check", "seed_matches"]

_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def seed_check(seed: bytes) -> str:
    salt = secrets.token_bytes(16)
    return f"scrypt${salt.hex()}${hashlib.scrypt(seed, salt=salt, **_SCRYPT).hex()}"


def seed_matches(seed: bytes, check: str) -> bool:
    _kind, salt, digest = check.split("$")
    return hmac.compare_digest(hashlib.scrypt(seed, salt=bytes.fromhex(salt), **_SCRYPT).hex(), digest)


class SeedVault:
    """Seal and open seeds with the hub's key file; the study's id is bound in, so a sealed seed copied
    to another study's row does not open there."""

    def __init__(self, key_file: Path) -> None:
        self._key_file = key_file

    def _key(self) -> bytes:
        if not self._key_file.exists():
            self._key_file.parent.mkdir(parents=True, exist_ok=True)
            key = AESGCM.generate_key(bit_length=256)
            # Written to a new file that only the hub's user may read; a second process racing us loses
            # (O_EXCL) and reads the winner's key below.
            try:
                descriptor = os.open(self._key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(descriptor, "wb") as out:
                    out.write(key.hex().encode())
        return bytes.fromhex(self._key_file.read_text().strip())

    def seal(self, study_id: int, seed: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + AESGCM(self._key()).encrypt(nonce, seed, str(study_id).encode())

    def open(self, study_id: int, sealed: bytes) -> bytes:
        return AESGCM(self._key()).decrypt(sealed[:12], sealed[12:], str(study_id).encode())
