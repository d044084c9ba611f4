"""Study pseudonym domains in the manner of gPAS: one domain per study and site, its own alphabet,
length, check character and key.

A pseudonym is `prefix + body + check`: the body is drawn from HMAC-SHA256(domain key, domain name,
site patient id, attempt), so the same patient gets the same pseudonym again (no lookup table needed to
re-identify at the site, none at all outside it), and nobody without the key can derive it. Collisions
are the caller's to find (its store knows which pseudonyms are taken): `generate` asks `is_taken` and
moves to the next attempt.

The check character catches typing errors when site staff enter a pseudonym by hand:
- `damm` (decimal alphabets): the Damm quasigroup; every single substitution and every adjacent
  transposition is detected.
- `luhn` (any alphabet of even size): Luhn mod N; every single substitution is detected, adjacent
  transpositions except of the pair (0, N-1)-valued characters. An odd N would let the doubling map two
  characters onto one, so odd alphabets are refused.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DECIMAL",
    "SAFE_ALPHABET",
    "PseudonymDomain",
    "PseudonymError",
    "domain_key",
    "generate",
    "pseudonym",
    "pseudonym_problem",
    "valid_pseudonym",
]

DECIMAL = "0123456789"
# Digits and upper-case letters without the look-alikes 0/O, 1/I/L, 2/Z, 5/S, B: 26 characters, even
# for Luhn mod N.
SAFE_ALPHABET = "346789ACDEFGHJKMNPQRTUVWXY"
CheckMethod = Literal["damm", "luhn"]
MAX_ATTEMPTS = 1000


class PseudonymError(ValueError):
    """A domain that cannot work, or a domain that has no free pseudonym left."""


@dataclass(frozen=True)
class PseudonymDomain:
    """One pseudonym domain: a study at a site."""

    study: str
    site: str
    prefix: str
    alphabet: str = DECIMAL
    length: int = 8
    check: CheckMethod = "damm"

    def __post_init__(self) -> None:
        if self.check not in ("damm", "luhn"):
            raise PseudonymError(f"check: 'damm' or 'luhn', got {self.check!r}")
        if not self.study or not self.site:
            raise PseudonymError("domain: study and site must not be empty")
        if len(set(self.alphabet)) != len(self.alphabet) or len(self.alphabet) < 2:
            raise PseudonymError(f"alphabet: needs at least two distinct characters, got {self.alphabet!r}")
        if self.length < 4:
            raise PseudonymError(f"length: at least 4 characters, got {self.length}")
        if self.check == "damm" and sorted(self.alphabet) != list(DECIMAL):
            raise PseudonymError("check: the Damm check digit needs the decimal alphabet 0-9")
        if self.check == "luhn" and len(self.alphabet) % 2:
            raise PseudonymError(
                f"check: Luhn mod N needs an alphabet of even size (got {len(self.alphabet)}); with an "
                "odd size two characters double to the same value and a typo between them goes unseen"
            )

    @property
    def name(self) -> str:
        return f"{self.study}/{self.site}"


# Damm's totally anti-symmetric quasigroup of order 10 (H. M. Damm, 2004).
_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)


def _damm(digits: str) -> str:
    interim = 0
    for char in digits:
        interim = _DAMM[interim][int(char)]
    return str(interim)


def _luhn(body: str, alphabet: str) -> str:
    n = len(alphabet)
    total, factor = 0, 2
    for char in reversed(body):
        addend = factor * alphabet.index(char)
        total += addend // n + addend % n
        factor = 3 - factor
    return alphabet[(n - total % n) % n]


def _check_character(domain: PseudonymDomain, body: str) -> str:
    return _damm(body) if domain.check == "damm" else _luhn(body, domain.alphabet)


def domain_key(site_secret: bytes, domain: PseudonymDomain) -> bytes:
    """The domain's key from the site's one secret: each domain differs, none reveals another."""
    if len(site_secret) < 16:
        raise PseudonymError("site secret: at least 16 bytes")
    return hmac.new(
        site_secret, b"datenraum-study-pseudonym\x00" + domain.name.encode(), hashlib.sha256
    ).digest()


def pseudonym(domain: PseudonymDomain, key: bytes, site_patient_id: str, attempt: int = 0) -> str:
    """The pseudonym of a site patient in a domain at the given attempt (0 unless earlier ones collided)."""
    if not site_patient_id:
        raise PseudonymError("site patient id: must not be empty")
    message = b"\x00".join([domain.name.encode(), site_patient_id.encode(), str(attempt).encode()])
    stream = b""
    counter = 0
    body = []
    n = len(domain.alphabet)
    limit = 256 - 256 % n  # bytes at or above this would favour the first characters
    while len(body) < domain.length:
        if not stream:
            stream = hmac.new(key, message + b"\x00" + counter.to_bytes(4, "big"), hashlib.sha256).digest()
            counter += 1
        byte, stream = stream[0], stream[1:]
        if byte < limit:
            body.append(domain.alphabet[byte % n])
    text = "".join(body)
    return domain.prefix + text + _check_character(domain, text)


def generate(
    domain: PseudonymDomain, key: bytes, site_patient_id: str, is_taken: Callable[[str], bool]
) -> str:
    """A pseudonym not yet taken in the caller's store: the first attempt that `is_taken` refuses not."""
    for attempt in range(MAX_ATTEMPTS):
        candidate = pseudonym(domain, key, site_patient_id, attempt)
        if not is_taken(candidate):
            return candidate
    raise PseudonymError(
        f"domain {domain.name}: {MAX_ATTEMPTS} pseudonyms in a row are taken; the domain is too small "
        f"(alphabet of {len(domain.alphabet)}, length {domain.length})"
    )


def pseudonym_problem(domain: PseudonymDomain, text: str) -> str | None:
    """What is wrong with a typed pseudonym, or None when it is one of this domain's."""
    if not text.startswith(domain.prefix):
        return f"does not start with the domain prefix {domain.prefix!r}"
    rest = text[len(domain.prefix) :]
    if len(rest) != domain.length + 1:
        return f"has {len(rest)} characters after the prefix, expected {domain.length + 1}"
    for position, char in enumerate(rest, start=len(domain.prefix) + 1):
        if char not in domain.alphabet:
            return f"character {char!r} at position {position} is not in the domain's alphabet"
    if _check_character(domain, rest[:-1]) != rest[-1]:
        return "the check character does not match: a typing error?"
    return None


def valid_pseudonym(domain: PseudonymDomain, text: str) -> bool:
    return pseudonym_problem(domain, text) is None
