"""Keys of a project, derived at the site from one site secret: never stored in the output.

A key file holds one secret (64 hex characters, `openssl rand -hex 32`; comment lines with `#`). Every
project gets its own keys derived from it (HMAC-SHA256 of the secret and a label), so that a new project
means a new hash key and a new pseudonym namespace (the FDPG standard case, "re-pseudonymize per DUP"),
while two runs of one project give the same pseudonyms and the same date shift.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

__all__ = ["KeyFileError", "ProjectKeys", "new_secret", "read_secret"]


class KeyFileError(ValueError):
    pass


def new_secret() -> str:
    return secrets.token_hex(32)


def read_secret(path: Path | str) -> bytes:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise KeyFileError(f"cannot read key file {path}: {error.strerror}") from None
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if len(lines) != 1:
        raise KeyFileError(f"{path}: expected one line with the secret (64 hex characters)")
    try:
        secret = bytes.fromhex(lines[0])
    except ValueError:
        raise KeyFileError(f"{path}: the secret is not hexadecimal") from None
    if len(secret) < 32:
        raise KeyFileError(f"{path}: the secret has {len(secret)} bytes; at least 32 are needed")
    return secret


def _derive(secret: bytes, label: str) -> bytes:
    return hmac.digest(secret, b"datenraum/deidentify/v1/" + label.encode(), "sha256")


@dataclass(frozen=True)
class ProjectKeys:
    """The keys of one project: `hash_key` (ids, FDPG cryptoHash), `salt_key` (FTS salts),
    `shift_key` (date shift seeds), `pseudonym_key` (the built-in pseudonym service's namespace)."""

    project: str
    hash_key: bytes
    salt_key: bytes
    shift_key: bytes
    pseudonym_key: bytes

    @classmethod
    def derive(cls, secret: bytes, project: str) -> ProjectKeys:
        if not project or not project.strip():
            raise KeyFileError("the project needs a name")
        return cls(
            project,
            _derive(secret, f"hash/{project}"),
            _derive(secret, f"salt/{project}"),
            _derive(secret, f"shift/{project}"),
            _derive(secret, f"pseudonym/{project}"),
        )

    def crypto_hash(self, value: str, truncate: int = 32) -> str:
        """FDPG's cryptoHash: hex HMAC-SHA256(key, value), first `truncate` characters
        (`echo -n VALUE | openssl dgst -sha256 -hmac KEY`, with this project's key)."""
        return hmac.digest(self.hash_key, value.encode(), "sha256").hex()[:truncate]

    def salt(self, patient: str) -> str:
        """FTS's per-patient salt (gPAS pseudonym of `Salt_<patient>` there)."""
        return hmac.digest(self.salt_key, f"Salt_{patient}".encode(), "sha256").hex()

    def shift_seed(self, label: str) -> int:
        return int.from_bytes(hmac.digest(self.shift_key, label.encode(), "sha256")[:8], "big")

    def fingerprint(self) -> str:
        """A public name of the keys (to tell two key files apart in a report), not the keys."""
        return hashlib.sha256(b"fingerprint/" + self.hash_key).hexdigest()[:16]
