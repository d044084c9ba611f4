"""CLK encoding: identity records → Bloom filters, as a linkage schema (clkhash v3) describes.

Per feature: normalise (`normalise`), tokenise (q-grams, optionally positional, or the exact value), hash
each token with the feature's keys into `k` bit positions (clkhash's doubleHash = HMAC-SHA1/HMAC-MD5
double hashing, or blakeHash = keyed BLAKE2b), `k` from the feature's weight (`bitsPerFeature` spread over
its tokens, or `bitsPerToken`). All features go into one filter of `l` bits. Hardening: salting tokens by
another feature (e.g. birth year), clkhash's XOR folding, balancing (append the complement, so that every
filter has exactly half its bits set) and a keyed permutation of the bit positions.

The hashing is done in Python per distinct (feature, salt, token), cached; setting the bits is one numpy
operation per batch. Output: packed bits, one row of `size / 8` bytes per record (clkhash's byte and bit
order, so `base64` of a row is clkhash's serialisation).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from datenraum.linkage import normalise
from datenraum.linkage.keys import feature_keys, hkdf
from datenraum.linkage.schema import Feature, Schema


class EncodingError(ValueError):
    pass


def tokens(feature: Feature, value: str) -> list[str]:
    """clkhash's tokeniser: q-grams of the value padded with n - 1 spaces each side (n > 1), positional
    q-grams prefixed by their 1-based position; `exact` is the value itself."""
    if feature.comparison == "exact":
        return [value] if value else []
    if not value:
        return []
    n = feature.n
    pad = " " * (n - 1)
    word = f"{pad}{value}{pad}"
    if feature.positional:
        return [f"{i + 1} {word[i : i + n]}" for i in range(len(word) - n + 1)]
    return [word[i : i + n] for i in range(len(word) - n + 1)]


def bits_per_token(feature: Feature, n_tokens: int) -> list[int]:
    if n_tokens == 0:
        return []
    if feature.bits_per_token is not None:
        return [feature.bits_per_token] * n_tokens
    k, rest = divmod(feature.bits_per_feature, n_tokens)
    return [k + 1] * rest + [k] * (n_tokens - rest)


def prepare(feature: Feature, value: str | None) -> str:
    """The value as it is tokenised: missing-value rule, normalisation, format rules."""
    value = "" if value is None else value
    if feature.missing_sentinel is not None and value == feature.missing_sentinel:
        return feature.missing_replace or ""
    if feature.format_type == "integer":
        text = value.strip()
        return str(int(text)) if text else ""
    if feature.format_type == "date":
        return normalise.date(value, feature.date_format) if value.strip() else ""
    if feature.format_type == "enum":
        text = value.strip()
        if text and feature.enum_values and text not in feature.enum_values:
            raise EncodingError(f"{feature.identifier}: {text!r} is not one of {feature.enum_values}")
        return text
    text = normalise.NORMALISERS[feature.normaliser](value)
    if feature.case == "upper":
        text = text.upper()
    elif feature.case == "lower":
        text = text.lower()
    if feature.max_length is not None:
        text = text[: feature.max_length]
    return text


class Encoder:
    """Encodes records for one project with keys derived from the project secret."""

    def __init__(self, schema: Schema, secret: bytes) -> None:
        self.schema = schema
        keys = feature_keys(
            secret,
            len(schema.features),
            key_size=schema.key_size,
            salt=schema.kdf_salt,
            info=schema.kdf_info,
            hash_name=schema.kdf_hash,
        )
        self._active = [(f, keys[i]) for i, f in enumerate(schema.features) if not f.ignored]
        self._cache: dict[tuple[int, str, str], tuple[int, int] | np.ndarray] = {}
        if schema.permute:
            seed = int.from_bytes(hkdf(secret, 16, info=b"datenraum-pprl-permutation"), "big")
            self._permutation = np.random.default_rng(seed).permutation(schema.size)
        else:
            self._permutation = None

    @property
    def columns(self) -> list[str]:
        return [f.identifier for f, _ in self._active]

    def _hash(self, index: int, feature: Feature, keys: tuple[bytes, bytes], token: str, salt: str):
        cache_key = (index, salt, token)
        hit = self._cache.get(cache_key)
        if hit is not None:
            return hit
        message = (salt + "\x1f" + token if salt else token).encode("utf-8")
        l = self.schema.hash_length  # noqa: E741
        if feature.hash_type == "doubleHash":
            h1 = int.from_bytes(hmac.digest(keys[0], message, "sha1"), "big") % l
            h2 = int.from_bytes(hmac.digest(keys[1], message, "md5"), "big") % l
            i = 0
            while feature.prevent_singularity and h2 == 0:
                h2 = int.from_bytes(hmac.digest(keys[1], message + chr(i).encode(), "md5"), "big") % l
                i += 1
            result: tuple[int, int] | np.ndarray = (h1, h2)
        else:
            shorts: list[int] = []
            k_max = max(1, feature.bits_per_token or feature.bits_per_feature)
            for i in range((k_max + 31) // 32):
                digest = hashlib.blake2b(message, key=keys[0][:64], salt=str(i).encode()).digest()
                shorts.extend(struct.unpack("32H", digest))
            result = np.asarray(shorts, dtype=np.int64) % l
        if len(self._cache) < 2_000_000:
            self._cache[cache_key] = result
        return result

    def encode(self, records: Iterable[Mapping[str, str | None]]) -> np.ndarray:
        """Packed CLKs, one row (uint8, `schema.size / 8` bytes) per record."""
        rows: list[int] = []
        h1s: list[int] = []
        h2s: list[int] = []
        ks: list[int] = []
        direct_rows: list[np.ndarray] = []
        direct_bits: list[np.ndarray] = []
        n = 0
        for r, record in enumerate(records):
            n += 1
            values = {f.identifier: prepare(f, record.get(f.identifier)) for f, _ in self._active}
            for index, (feature, keys) in enumerate(self._active):
                salt = ""
                if feature.salt_from:
                    salt = values.get(feature.salt_from, "")
                    if feature.salt_slice:
                        salt = salt[feature.salt_slice[0] : feature.salt_slice[1]]
                toks = tokens(feature, values[feature.identifier])
                for token, k in zip(toks, bits_per_token(feature, len(toks)), strict=True):
                    if k == 0:
                        continue
                    h = self._hash(index, feature, keys, token, salt)
                    if isinstance(h, tuple):
                        rows.append(r)
                        h1s.append(h[0])
                        h2s.append(h[1])
                        ks.append(k)
                    else:
                        direct_bits.append(h[:k])
                        direct_rows.append(np.full(k, r, dtype=np.int64))
        bits = np.zeros((n, self.schema.hash_length), dtype=np.uint8)
        if ks:
            k_arr = np.asarray(ks, dtype=np.int64)
            token_of = np.repeat(np.arange(len(ks)), k_arr)
            step = np.arange(len(token_of)) - np.repeat(np.cumsum(k_arr) - k_arr, k_arr)
            pos = (
                np.asarray(h1s, dtype=np.int64)[token_of] + step * np.asarray(h2s, dtype=np.int64)[token_of]
            ) % self.schema.hash_length
            bits[np.asarray(rows, dtype=np.int64)[token_of], pos] = 1
        if direct_bits:
            bits[np.concatenate(direct_rows), np.concatenate(direct_bits)] = 1
        return self._harden(bits)

    def _harden(self, bits: np.ndarray) -> np.ndarray:
        for _ in range(self.schema.xor_folds):
            half = bits.shape[1] // 2
            bits = bits[:, :half] ^ bits[:, half:]
        if self.schema.balance:
            bits = np.concatenate([bits, 1 - bits], axis=1)
        if self._permutation is not None:
            bits = bits[:, self._permutation]
        return np.packbits(bits, axis=1)


def to_base64(clks: np.ndarray) -> list[str]:
    """clkhash's serialisation: base64 of each filter's bytes."""
    return [base64.b64encode(row.tobytes()).decode("ascii") for row in clks]


def from_base64(encoded: Sequence[str]) -> np.ndarray:
    return np.stack([np.frombuffer(base64.b64decode(e), dtype=np.uint8) for e in encoded])
