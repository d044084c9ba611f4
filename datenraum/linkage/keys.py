"""Keys: per-project secrets derived from the secret the sites share, per-feature keys as clkhash derives.

The site secret is known to the sites only (never the hub nor the linkage unit). Each project gets its own
secret, HKDF-SHA256(site secret, info = project), so CLKs of two projects cannot be joined and a leaked
project key leaks one project. Per-feature keys follow clkhash (`key_derivation.generate_key_lists`):
HKDF over the project secret with the schema's hash, salt and info, two keys of `keySize` bytes per
feature (ignored ones included, in schema order).
"""

from __future__ import annotations

import hashlib
import hmac

PROJECT_SALT = b"datenraum-pprl-project-key-v1"


def hkdf(
    secret: bytes, length: int, *, salt: bytes = b"", info: bytes = b"", hash_name: str = "sha256"
) -> bytes:
    """RFC 5869 HKDF (extract, then expand)."""
    size = hashlib.new(hash_name).digest_size
    prk = hmac.digest(salt or b"\x00" * size, secret, hash_name)
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes([counter]), hash_name)
        out += block
        counter += 1
    return out[:length]


def project_secret(site_secret: bytes, project: str) -> bytes:
    """The project's secret: the shared site secret narrowed to one project."""
    if len(site_secret) < 16:
        raise ValueError("the site secret must have at least 16 bytes")
    return hkdf(site_secret, 32, salt=PROJECT_SALT, info=project.encode("utf-8"))


def feature_keys(
    secret: bytes,
    n_features: int,
    *,
    key_size: int = 64,
    salt: bytes = b"",
    info: bytes = b"",
    hash_name: str = "sha256",
) -> list[tuple[bytes, bytes]]:
    """Two keys per feature, as clkhash's `generate_key_lists` (HKDF output cut in `key_size` pieces)."""
    raw = hkdf(secret, n_features * 2 * key_size, salt=salt, info=info, hash_name=hash_name)
    pieces = [raw[i * key_size : (i + 1) * key_size] for i in range(n_features * 2)]
    return [(pieces[2 * i], pieces[2 * i + 1]) for i in range(n_features)]


def read_key_file(path) -> bytes:
    """A key file: the secret's bytes (surrounding whitespace ignored)."""
    with open(path, "rb") as f:
        return f.read().strip()
