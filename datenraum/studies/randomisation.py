"""Permuted-block randomisation, stratified by site and up to three factors, concealed and reproducible.

Every allocation is a pure function of (seed, stratum, position in the stratum): block k of a stratum
draws its size from the configured sizes and its permutation from HMAC-SHA256(seed, stratum, k), so

- the statistician, who holds the seed, reproduces the whole sequence (`sequence`) at any time;
- nobody else can predict the next arm: without the seed the HMAC output is indistinguishable from
  random, and random block sizes keep the end of a block from giving the last arm away;
- nothing has to be stored but the number of participants already allocated per stratum.

The seed must have at least 16 bytes: a short seed could be found by trying all, which would unblind.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_FACTORS",
    "MIN_SEED_BYTES",
    "Arm",
    "Factor",
    "RandomisationError",
    "RandomisationScheme",
    "Stratum",
    "allocate",
    "blocks",
    "new_seed",
    "scheme_from_json",
    "sequence",
]

MAX_FACTORS = 3
MIN_SEED_BYTES = 16


class RandomisationError(ValueError):
    """A scheme, stratum or seed that cannot be used; the message names the field."""


@dataclass(frozen=True)
class Arm:
    name: str
    ratio: int = 1


@dataclass(frozen=True)
class Factor:
    """A stratification factor (besides the site, which always stratifies) and its levels."""

    name: str
    levels: tuple[str, ...]


@dataclass(frozen=True)
class RandomisationScheme:
    arms: tuple[Arm, ...]
    block_sizes: tuple[int, ...]
    factors: tuple[Factor, ...] = ()

    def __post_init__(self) -> None:
        if len(self.arms) < 2:
            raise RandomisationError("arms: a randomisation needs at least two arms")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names) or not all(names):
            raise RandomisationError(f"arms: names must be distinct and not empty, got {names}")
        for index, arm in enumerate(self.arms):
            if not isinstance(arm.ratio, int) or arm.ratio < 1:
                raise RandomisationError(
                    f"arms[{index}].ratio: must be a whole number >= 1, got {arm.ratio!r}"
                )
        if not self.block_sizes:
            raise RandomisationError("block_sizes: at least one block size is needed")
        unit = self.ratio_sum
        for index, size in enumerate(self.block_sizes):
            if not isinstance(size, int) or size < unit or size % unit:
                raise RandomisationError(
                    f"block_sizes[{index}]: {size!r} is not a multiple of the arm ratios' sum {unit}, "
                    "so a block could not keep the ratio"
                )
        if len(self.factors) > MAX_FACTORS:
            raise RandomisationError(
                f"factors: at most {MAX_FACTORS} stratification factors besides the site, got "
                f"{len(self.factors)} ({', '.join(f.name for f in self.factors)})"
            )
        factor_names = [f.name for f in self.factors]
        if len(set(factor_names)) != len(factor_names) or "site" in factor_names:
            raise RandomisationError(f"factors: names must be distinct and not 'site', got {factor_names}")
        for index, factor in enumerate(self.factors):
            if len(factor.levels) < 2 or len(set(factor.levels)) != len(factor.levels):
                raise RandomisationError(
                    f"factors[{index}].levels: {factor.name!r} needs at least two distinct levels"
                )

    @property
    def ratio_sum(self) -> int:
        return sum(a.ratio for a in self.arms)

    def stratum(self, site: str, values: Mapping[str, str]) -> Stratum:
        """The stratum of a participant: refuses unknown or missing factors and unknown levels by name."""
        if not site:
            raise RandomisationError("site: the site is part of every stratum and must not be empty")
        known = {f.name: f for f in self.factors}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise RandomisationError(
                f"stratum: unknown factor {', '.join(map(repr, unknown))} (the scheme stratifies by "
                f"site{''.join(', ' + repr(n) for n in known)}; at most {MAX_FACTORS} factors besides the site)"
            )
        levels = []
        for factor in self.factors:
            if factor.name not in values:
                raise RandomisationError(f"stratum: factor {factor.name!r} has no value")
            level = values[factor.name]
            if level not in factor.levels:
                raise RandomisationError(
                    f"stratum: factor {factor.name!r} has no level {level!r} "
                    f"(levels: {', '.join(map(repr, factor.levels))})"
                )
            levels.append((factor.name, level))
        return Stratum(site, tuple(levels))

    def to_json(self) -> dict[str, Any]:
        return {
            "arms": [{"name": a.name, "ratio": a.ratio} for a in self.arms],
            "blockSizes": list(self.block_sizes),
            "factors": [{"name": f.name, "levels": list(f.levels)} for f in self.factors],
        }


@dataclass(frozen=True)
class Stratum:
    """A site and the participant's level of each factor, in the scheme's factor order."""

    site: str
    levels: tuple[tuple[str, str], ...] = ()

    def key(self) -> bytes:
        # JSON of a list is an unambiguous encoding: no two strata share a key.
        return json.dumps([self.site, [list(p) for p in self.levels]], ensure_ascii=False).encode()


def scheme_from_json(data: Any) -> RandomisationScheme:
    """A scheme from its JSON form (`to_json`); errors name the JSON path."""
    if not isinstance(data, dict):
        raise RandomisationError("$: a randomisation scheme is a JSON object")
    try:
        arms = tuple(
            Arm(_text(a, f"$.arms[{i}].name", "name"), _whole(a.get("ratio", 1), f"$.arms[{i}].ratio"))
            for i, a in enumerate(_list(data.get("arms"), "$.arms"))
        )
        sizes = tuple(
            _whole(s, f"$.blockSizes[{i}]")
            for i, s in enumerate(_list(data.get("blockSizes"), "$.blockSizes"))
        )
        factors = tuple(
            Factor(
                _text(f, f"$.factors[{i}].name", "name"),
                tuple(
                    _plain(level, f"$.factors[{i}].levels[{j}]")
                    for j, level in enumerate(_list(f.get("levels"), f"$.factors[{i}].levels"))
                ),
            )
            for i, f in enumerate(_list(data.get("factors", []), "$.factors"))
        )
    except AttributeError as error:  # an entry that is not an object
        raise RandomisationError(f"$: every arm and factor is a JSON object ({error})") from None
    try:
        return RandomisationScheme(arms, sizes, factors)
    except RandomisationError as error:
        field, _, message = str(error).partition(":")
        raise RandomisationError(f"$.{field.replace('block_sizes', 'blockSizes')}:{message}") from None


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise RandomisationError(f"{path}: expected a JSON array")
    return value


def _whole(value: Any, path: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise RandomisationError(f"{path}: expected a whole number, got {value!r}")
    return value


def _plain(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise RandomisationError(f"{path}: expected a non-empty text, got {value!r}")
    return value


def _text(entry: Any, path: str, key: str) -> str:
    if not isinstance(entry, dict):
        raise RandomisationError(f"{path.rsplit('.', 1)[0]}: expected a JSON object")
    return _plain(entry.get(key), path)


def new_seed() -> bytes:
    """A fresh seed for the statistician (32 random bytes)."""
    return secrets.token_bytes(32)


def _check_seed(seed: bytes) -> None:
    if not isinstance(seed, bytes) or len(seed) < MIN_SEED_BYTES:
        raise RandomisationError(
            f"seed: at least {MIN_SEED_BYTES} bytes are needed so that the sequence stays concealed"
        )


class _Stream:
    """Uniform whole numbers from HMAC-SHA256(seed, label || counter), without modulo bias."""

    def __init__(self, seed: bytes, label: bytes) -> None:
        self._seed, self._label, self._counter, self._buffer = seed, label, 0, b""

    def _bytes(self, n: int) -> bytes:
        while len(self._buffer) < n:
            block = self._counter.to_bytes(8, "big")
            self._buffer += hmac.new(self._seed, self._label + b"\x00" + block, hashlib.sha256).digest()
            self._counter += 1
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def below(self, bound: int) -> int:
        """A number in [0, bound), by rejection of the values above the largest multiple of bound."""
        limit = (1 << 32) - (1 << 32) % bound
        while True:
            value = int.from_bytes(self._bytes(4), "big")
            if value < limit:
                return value % bound


def _block(scheme: RandomisationScheme, seed: bytes, stratum: Stratum, index: int) -> list[str]:
    stream = _Stream(seed, stratum.key() + b"\x00" + str(index).encode())
    size = scheme.block_sizes[stream.below(len(scheme.block_sizes))]
    per_unit = size // scheme.ratio_sum
    block = [arm.name for arm in scheme.arms for _ in range(arm.ratio * per_unit)]
    for i in range(len(block) - 1, 0, -1):  # Fisher-Yates
        j = stream.below(i + 1)
        block[i], block[j] = block[j], block[i]
    return block


def _blocks(scheme: RandomisationScheme, seed: bytes, stratum: Stratum) -> Iterator[list[str]]:
    index = 0
    while True:
        yield _block(scheme, seed, stratum, index)
        index += 1


def blocks(scheme: RandomisationScheme, seed: bytes, stratum: Stratum, count: int) -> list[tuple[str, ...]]:
    """The first `count` blocks of a stratum: the statistician's allocation list with its block borders."""
    _check_seed(seed)
    return [tuple(b) for b, _ in zip(_blocks(scheme, seed, stratum), range(count), strict=False)]


def allocate(scheme: RandomisationScheme, seed: bytes, stratum: Stratum, sequence_number: int) -> str:
    """The arm of the participant at `sequence_number` (0-based) in `stratum`."""
    _check_seed(seed)
    if sequence_number < 0:
        raise RandomisationError(f"sequence_number: must be >= 0, got {sequence_number}")
    start, index = 0, 0
    while True:
        block = _block(scheme, seed, stratum, index)
        if sequence_number < start + len(block):
            return block[sequence_number - start]
        start, index = start + len(block), index + 1


def sequence(scheme: RandomisationScheme, seed: bytes, stratum: Stratum, n: int) -> list[str]:
    """The first `n` allocations of a stratum: the statistician's list, equal to `allocate` one by one."""
    _check_seed(seed)
    out: list[str] = []
    for block in _blocks(scheme, seed, stratum):
        if len(out) >= n:
            break
        out.extend(block)
    return out[:n]
