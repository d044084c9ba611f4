"""A linkage schema: clkhash's linkage-schema v3 plus optional Datenraum extensions.

The clkhash part (`version`, `clkConfig` with `l`, `kdf`, `xorFolds`, `features` with `format` and
`hashing`) is read as clkhash reads it, so a schema written for clkhash works here and, without
extensions, gives the same CLKs for the same secret. Datenraum's additions live under the top-level key
`x-datenraum`, which `clkhash_schema` strips for exchange:

    "x-datenraum": {
      "normalise": {"surname": "name", "city": "place", "postcode": "digits"},   # default "none": as clkhash, the value as it is
      "salt": {"surname": {"from": "birth_date", "slice": [0, 4]}},              # salt tokens by birth year
      "balance": true,                                                           # append the complement
      "permute": true                                                            # keyed bit permutation
    }
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXTENSION = "x-datenraum"


class SchemaError(ValueError):
    pass


@dataclass(frozen=True)
class Feature:
    identifier: str
    ignored: bool = False
    format_type: str = "string"
    case: str = "mixed"
    date_format: str = "%Y-%m-%d"
    enum_values: tuple[str, ...] = ()
    min_length: int | None = None
    max_length: int | None = None
    comparison: str = "ngram"  # ngram | exact
    n: int = 2
    positional: bool = False
    bits_per_feature: int | None = None
    bits_per_token: int | None = None
    hash_type: str = "blakeHash"  # clkhash's default
    prevent_singularity: bool = False
    missing_sentinel: str | None = None
    missing_replace: str | None = None
    normaliser: str = "none"
    salt_from: str | None = None
    salt_slice: tuple[int, int] | None = None


@dataclass(frozen=True)
class Schema:
    l: int  # noqa: E741 - clkhash's name
    features: tuple[Feature, ...]
    kdf_hash: str = "sha256"
    kdf_salt: bytes = b""
    kdf_info: bytes = b""
    key_size: int = 64
    xor_folds: int = 0
    balance: bool = False
    permute: bool = False
    digest: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def hash_length(self) -> int:
        """Bits the tokens are hashed into: clkhash's `l` is the length after folding, so a folded
        filter is hashed into `l · 2^xorFolds` bits and folded down to `l`."""
        return self.l << self.xor_folds

    @property
    def size(self) -> int:
        """Bits of the final CLK (after folding and balancing)."""
        return 2 * self.l if self.balance else self.l


def clkhash_schema(raw: dict[str, Any]) -> dict[str, Any]:
    """The schema for clkhash users: the Datenraum extensions removed."""
    return {k: v for k, v in raw.items() if k != EXTENSION}


def _feature(spec: dict[str, Any], ext: dict[str, Any]) -> Feature:
    ident = spec.get("identifier")
    if not isinstance(ident, str):
        raise SchemaError(f"a feature without identifier: {spec!r}")
    if spec.get("ignored"):
        return Feature(ident, ignored=True)
    fmt, hashing = spec.get("format") or {}, spec.get("hashing") or {}
    ftype = fmt.get("type", "string")
    if ftype not in {"string", "integer", "date", "enum"}:
        raise SchemaError(f"{ident}: format type {ftype!r} is not supported")
    comp = hashing.get("comparison") or {"type": "ngram", "n": 2}
    if comp.get("type") not in {"ngram", "exact"}:
        raise SchemaError(f"{ident}: comparison {comp.get('type')!r} is not supported (ngram, exact)")
    strategy = hashing.get("strategy") or {}
    bpf, bpt = strategy.get("bitsPerFeature"), strategy.get("bitsPerToken")
    if (bpf is None) == (bpt is None):
        raise SchemaError(f"{ident}: strategy needs exactly one of bitsPerFeature, bitsPerToken")
    hash_spec = hashing.get("hash") or {"type": "blakeHash"}
    if hash_spec.get("type") not in {"blakeHash", "doubleHash"}:
        raise SchemaError(f"{ident}: hash {hash_spec.get('type')!r} is not supported")
    missing = hashing.get("missingValue") or {}
    salt = (ext.get("salt") or {}).get(ident) or {}
    return Feature(
        ident,
        format_type=ftype,
        case=fmt.get("case", "mixed"),
        date_format=fmt.get("format", "%Y-%m-%d"),
        enum_values=tuple(fmt.get("values", ())),
        min_length=fmt.get("minLength"),
        max_length=fmt.get("maxLength"),
        comparison=comp["type"],
        n=int(comp.get("n", 2)),
        positional=bool(comp.get("positional", False)),
        bits_per_feature=bpf,
        bits_per_token=bpt,
        hash_type=hash_spec["type"],
        prevent_singularity=bool(hash_spec.get("prevent_singularity", False)),
        missing_sentinel=missing.get("sentinel"),
        missing_replace=missing.get("replaceWith"),
        normaliser=(ext.get("normalise") or {}).get(ident, "none"),
        salt_from=salt.get("from"),
        salt_slice=tuple(salt["slice"]) if "slice" in salt else None,
    )


def parse_schema(raw: dict[str, Any]) -> Schema:
    if raw.get("version") != 3:
        raise SchemaError("only linkage schema version 3 is supported")
    cfg = raw.get("clkConfig") or {}
    kdf = cfg.get("kdf") or {}
    if kdf.get("type", "HKDF") != "HKDF":
        raise SchemaError("only the HKDF key derivation is supported")
    ext = raw.get(EXTENSION) or {}
    features = tuple(_feature(f, ext) for f in raw.get("features") or [])
    names = {f.identifier for f in features}
    for f in features:
        if f.salt_from and f.salt_from not in names:
            raise SchemaError(f"{f.identifier}: salt from unknown feature {f.salt_from!r}")
        if f.normaliser not in {"name", "place", "plain", "digits", "none"}:
            raise SchemaError(f"{f.identifier}: unknown normaliser {f.normaliser!r}")
    length = int(cfg.get("l", 1024))
    folds = int(cfg.get("xorFolds", 0))
    if length % 8:
        raise SchemaError("clkConfig.l must be a multiple of 8")
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()
    return Schema(
        l=length,
        features=features,
        kdf_hash=kdf.get("hash", "SHA256").lower(),
        kdf_salt=base64.b64decode(kdf.get("salt", "")),
        kdf_info=base64.b64decode(kdf.get("info", "")),
        key_size=int(kdf.get("keySize", 64)),
        xor_folds=folds,
        balance=bool(ext.get("balance", False)),
        permute=bool(ext.get("permute", False)),
        digest=hashlib.sha256(canonical).hexdigest(),
        raw=raw,
    )


def load_schema(path: str | Path) -> Schema:
    return parse_schema(json.loads(Path(path).read_text(encoding="utf-8")))
