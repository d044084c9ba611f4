"""Comparison of CLKs: Dice similarity, vectorised, blocking, thresholding, multi-party clustering.

CLKs arrive packed (uint8 rows). Two vectorised Dice kernels:
- `popcount`: rows viewed as uint64 words, |a ∧ b| by `np.bitwise_count` (numpy ≥ 2; a byte lookup table
  otherwise) over a chunk of rows at a time;
- `matmul`: the bits unpacked to float32 and |a ∧ b| as a matrix product (exact: counts < 2²⁴), which
  BLAS runs at many times the popcount speed.
Dice(a, b) = 2 |a ∧ b| / (|a| + |b|).

Blocking (`lsh_blocks`): keyed-free Hamming LSH on the CLK bits; `bands` random samples of `bits` positions
each, two records are candidates when they agree on all positions of at least one band. Clustering
(`cluster`): anonlink-style greedy multi-party solving: candidate pairs by decreasing similarity, two
groups merge when they have no site in common (a person appears at most once per site).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount(packed: np.ndarray) -> np.ndarray:
    """Set bits per row of packed CLKs."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(packed).sum(axis=-1, dtype=np.int64)
    return _POPCOUNT8[packed].sum(axis=-1, dtype=np.int64)


def _words(packed: np.ndarray) -> np.ndarray:
    packed = np.ascontiguousarray(packed)
    if packed.shape[1] % 8:
        return packed
    return packed.view(np.uint64)


def dice_popcount(a: np.ndarray, b: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Dice matrix of a × b (packed rows) by popcount of the AND, `chunk` rows of a at a time."""
    wa, wb = _words(a), _words(b)
    pa, pb = popcount(a), popcount(b)
    out = np.empty((len(a), len(b)), dtype=np.float32)
    for start in range(0, len(a), chunk):
        block = wa[start : start + chunk, None, :] & wb[None, :, :]
        inter = popcount(block) if hasattr(np, "bitwise_count") else popcount(block.view(np.uint8))
        denom = pa[start : start + chunk, None] + pb[None, :]
        out[start : start + chunk] = 2.0 * inter / np.maximum(denom, 1)
    return out


def dice_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dice matrix of a × b (packed rows): |a ∧ b| as a float32 matrix product of the unpacked bits."""
    fa = np.unpackbits(a, axis=1).astype(np.float32)
    fb = np.unpackbits(b, axis=1).astype(np.float32)
    inter = fa @ fb.T
    denom = fa.sum(axis=1)[:, None] + fb.sum(axis=1)[None, :]
    return (2.0 * inter / np.maximum(denom, 1)).astype(np.float32)


def dice_matrix(a: np.ndarray, b: np.ndarray, method: str = "matmul") -> np.ndarray:
    return dice_matmul(a, b) if method == "matmul" else dice_popcount(a, b)


def dice_pairs(a: np.ndarray, ia: np.ndarray, b: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """Dice of the row pairs (a[ia[j]], b[ib[j]])."""
    wa, wb = _words(a), _words(b)
    inter = popcount(wa[ia] & wb[ib]) if hasattr(np, "bitwise_count") else popcount(a[ia] & b[ib])
    denom = popcount(a)[ia] + popcount(b)[ib]
    return (2.0 * inter / np.maximum(denom, 1)).astype(np.float32)


def lsh_blocks(packed: np.ndarray, bands: int, bits: int, seed: int = 0) -> list[np.ndarray]:
    """One key per band per record: the record's bits at the band's positions, as an int64."""
    rng = np.random.default_rng(seed)
    unpacked = np.unpackbits(packed, axis=1)
    weights = 1 << np.arange(bits, dtype=np.int64)
    return [
        unpacked[:, rng.choice(unpacked.shape[1], bits, replace=False)].astype(np.int64) @ weights
        for _ in range(bands)
    ]


@dataclass(frozen=True)
class Candidates:
    """Candidate pairs between datasets: (dataset i, row i, dataset j, row j, similarity)."""

    da: np.ndarray
    ra: np.ndarray
    db: np.ndarray
    rb: np.ndarray
    score: np.ndarray


def candidate_pairs(
    datasets: Sequence[np.ndarray],
    threshold: float,
    *,
    blocking: tuple[int, int] | None = None,
    seed: int = 0,
) -> Candidates:
    """All pairs across different datasets with Dice ≥ threshold. Without blocking every pair is compared
    (dense, by blocked matrix products, `_dense_candidates`); with `blocking=(bands, bits)` only pairs that share
    an LSH band."""
    out: list[tuple[np.ndarray, ...]] = []
    keys = [lsh_blocks(d, *blocking, seed=seed) for d in datasets] if blocking else None
    for i in range(len(datasets)):
        for j in range(i + 1, len(datasets)):
            a, b = datasets[i], datasets[j]
            if keys is None:
                ra, rb, score = _dense_candidates(a, b, threshold)
                out.append((np.full(len(ra), i), ra, np.full(len(ra), j), rb, score))
            else:
                ia_all, ib_all = [], []
                for ka, kb in zip(keys[i], keys[j], strict=True):
                    ia, ib = _join(ka, kb)
                    ia_all.append(ia)
                    ib_all.append(ib)
                ia = np.concatenate(ia_all)
                ib = np.concatenate(ib_all)
                if len(ia):
                    pair = np.unique(ia.astype(np.int64) * len(b) + ib)
                    ia, ib = pair // len(b), pair % len(b)
                sim = dice_pairs(a, ia, b, ib)
                keep = sim >= threshold
                out.append((np.full(keep.sum(), i), ia[keep], np.full(keep.sum(), j), ib[keep], sim[keep]))
    if not out:
        empty = np.zeros(0, dtype=np.int64)
        return Candidates(empty, empty, empty, empty, np.zeros(0, dtype=np.float32))
    cols = [np.concatenate([o[c] for o in out]) for c in range(5)]
    return Candidates(*(c.astype(np.int64) for c in cols[:4]), cols[4].astype(np.float32))


# Rows of a and columns of b per matrix product: blocks of 1024 x 4096 float32 scores (16 MB) bound the
# memory for any size of b; smaller blocks measured slower here (BLAS's fixed cost per call, 2 threads).
_ROWS, _COLUMNS = 1024, 4096
# The prefilter may keep pairs up to this far below the threshold (float32 rounding of the folded bound
# is far smaller); the exact test on the kept pairs decides.
_SLACK = 0.01


def _dense_candidates(
    a: np.ndarray, b: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs (row of a, row of b, Dice) with Dice ≥ threshold among all of a × b, in row-major order.

    Dice ≥ t is |a ∧ b| − c·|a| − c·|b| ≥ 0 with c = t/2, and both bounds fold into the matrix product:
    each row of a gains the columns (1, −c·|a|) and each row of b (−c·|b|, 1). So one BLAS call and one
    comparison per block find the few pairs near or above the threshold, with no division per pair;
    their Dice is then computed exactly by popcount, in the same float32 arithmetic
    as `dice_matmul`, so the result does not depend on the prefilter."""
    c = max(threshold - _SLACK, 0.0) / 2
    pa, pb = popcount(a), popcount(b)
    fb = _folded(b, [-c * pb, np.ones(len(b))])
    found: list[np.ndarray] = []
    for s in range(0, len(a), _ROWS):
        rows = a[s : s + _ROWS]
        fa = _folded(rows, [np.ones(len(rows)), -c * pa[s : s + _ROWS]])
        for t in range(0, len(b), _COLUMNS):
            near = np.flatnonzero(fa @ fb[t : t + _COLUMNS].T >= 0)
            width = min(_COLUMNS, len(b) - t)
            found.append((near // width + s) * len(b) + near % width + t)
    flat = np.sort(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
    ra, rb = flat // max(len(b), 1), flat % max(len(b), 1)
    score = _dice32(a, ra, pa, b, rb, pb)
    keep = score >= threshold
    return ra[keep], rb[keep], score[keep]


def _folded(packed: np.ndarray, extra: list[np.ndarray]) -> np.ndarray:
    """The unpacked bits as float32, with the `extra` columns appended."""
    bits = packed.shape[1] * 8
    out = np.empty((len(packed), bits + len(extra)), dtype=np.float32)
    out[:, :bits] = np.unpackbits(packed, axis=1)
    for k, column in enumerate(extra):
        out[:, bits + k] = column
    return out


def _dice32(
    a: np.ndarray, ia: np.ndarray, pa: np.ndarray, b: np.ndarray, ib: np.ndarray, pb: np.ndarray
) -> np.ndarray:
    """Dice of the row pairs in float32, rounded as `dice_matmul` rounds it (exact counts, one division)."""
    wa, wb = _words(a), _words(b)
    inter = popcount(wa[ia] & wb[ib]) if hasattr(np, "bitwise_count") else popcount(a[ia] & b[ib])
    denom = (pa[ia] + pb[ib]).astype(np.float32)
    return np.float32(2.0) * inter.astype(np.float32) / np.maximum(denom, np.float32(1))


def _join(ka: np.ndarray, kb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row pairs with equal keys (a sort-merge join)."""
    oa, ob = np.argsort(ka, kind="stable"), np.argsort(kb, kind="stable")
    sa, sb = ka[oa], kb[ob]
    common = np.intersect1d(sa, sb)
    if not len(common):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    la, ra_ = np.searchsorted(sa, common, "left"), np.searchsorted(sa, common, "right")
    lb, rb_ = np.searchsorted(sb, common, "left"), np.searchsorted(sb, common, "right")
    na, nb = ra_ - la, rb_ - lb
    total = na * nb
    group = np.repeat(np.arange(len(common)), total)
    offset = np.arange(total.sum()) - np.repeat(np.cumsum(total) - total, total)
    ia = oa[la[group] + offset // nb[group]]
    ib = ob[lb[group] + offset % nb[group]]
    return ia, ib


def cluster(sizes: Sequence[int], candidates: Candidates) -> np.ndarray:
    """Greedy multi-party solve: a cluster id per record (datasets concatenated in order). Pairs are taken
    by decreasing similarity; two clusters merge only if they share no dataset."""
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    parent = list(range(int(offsets[-1])))
    sites: list[set[int] | None] = [None] * len(parent)
    for d in range(len(sizes)):
        for r in range(int(offsets[d]), int(offsets[d + 1])):
            sites[r] = {d}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    order = np.argsort(-candidates.score, kind="stable")
    ga = (offsets[candidates.da] + candidates.ra)[order].tolist()
    gb = (offsets[candidates.db] + candidates.rb)[order].tolist()
    for x, y in zip(ga, gb, strict=True):
        rx, ry = find(x), find(y)
        if rx == ry or sites[rx] & sites[ry]:
            continue
        if len(sites[rx]) < len(sites[ry]):
            rx, ry = ry, rx
        parent[ry] = rx
        sites[rx] |= sites[ry]
        sites[ry] = None
    roots = np.array([find(x) for x in range(len(parent))], dtype=np.int64)
    _, ids = np.unique(roots, return_inverse=True)
    return ids


def matched_pairs(sizes: Sequence[int], ids: np.ndarray) -> set[tuple[int, int]]:
    """The record pairs (global row numbers) in the same cluster."""
    pairs: set[tuple[int, int]] = set()
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    bounds = np.flatnonzero(np.diff(sorted_ids)) + 1
    for group in np.split(order, bounds):
        g = sorted(group.tolist())
        for i in range(len(g)):
            for j in range(i + 1, len(g)):
                pairs.add((g[i], g[j]))
    return pairs
