"""Cell suppression for released tables: a threshold k with complementary (secondary) suppression.

A released table is a set of cells keyed by their stratum (a tuple of values, `None` where the cell is
aggregated over a dimension: the all-`None` key is the total). A cell with a value from 1 to k-1 is
suppressed (primary); 0 is published as 0. Then, for every margin (a cell and its children along one
dimension, which sum to it), a group in which exactly one cell is hidden would give it away by
subtraction, so a second one is hidden: the smallest positive published child, or the margin itself when
no child is left to hide. This repeats until no group reveals anything. Extra groups (`groups`, e.g. the
days of an ISO week whose weekly total is published elsewhere) are treated the same way.

`suppress` returns the keys to hide; the caller publishes `null` with `suppressed: true` for them, never
a sentinel number.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence

__all__ = ["DEFAULT_K", "margin_groups", "suppress"]

DEFAULT_K = 5

Key = tuple[str | None, ...]


def margin_groups(keys: Iterable[Key]) -> list[tuple[Key, list[Key]]]:
    """(margin, children) for every dimension along which a listed cell is broken down."""
    keys = list(keys)
    present = set(keys)
    groups: dict[tuple[Key, int], list[Key]] = {}
    for key in keys:
        for index, value in enumerate(key):
            if value is None:
                continue
            parent = (*key[:index], None, *key[index + 1 :])
            if parent in present:
                groups.setdefault((parent, index), []).append(key)
    return [(parent, children) for (parent, _index), children in groups.items()]


def suppress(
    values: Mapping[Hashable, int],
    k: int = DEFAULT_K,
    *,
    margins: Sequence[tuple[Hashable | None, Sequence[Hashable]]] = (),
    sensitive: Iterable[Hashable] = (),
) -> set[Hashable]:
    """The cells to hide so that no value from 1 to k-1 is published or derivable from the margins.

    `margins`: (margin key or None, child keys) groups whose children sum to the margin (a None margin:
    the sum is published elsewhere, e.g. a weekly value beside its days, and is not in `values`).
    `sensitive`: further cells to hide as if they were small (e.g. a value that differs from one
    published earlier by 1..k-1); they are protected by the margins like the small ones.
    """
    hidden = {key for key, value in values.items() if 0 < value < k}
    hidden.update(key for key in sensitive if key in values)
    if not hidden:
        return hidden
    changed = True
    while changed:
        changed = False
        for margin, children in margins:
            margin_hidden = margin is not None and margin in hidden
            unknown = [c for c in children if c in hidden]
            if margin_hidden or len(unknown) != 1:
                # None hidden: nothing to reveal; two or more: the sum tells only their total (each of
                # them already passed or is hidden); a hidden margin with hidden children is safe too.
                if not (margin_hidden and len(unknown) == 0):
                    continue
                # A hidden margin whose children are all published is derivable: hide the smallest child.
                candidates = [c for c in children if values.get(c, 0) > 0]
                if not candidates:
                    continue
                hidden.add(min(candidates, key=lambda c: (values[c], str(c))))
                changed = True
                continue
            candidates = [c for c in children if c not in hidden and values.get(c, 0) > 0]
            if candidates:
                hidden.add(min(candidates, key=lambda c: (values[c], str(c))))
            elif margin is not None:
                hidden.add(margin)
            else:
                continue
            changed = True
    return hidden
