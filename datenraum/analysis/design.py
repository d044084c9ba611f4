"""From a `ModelSpec` and a table's columns to the model frame and the design matrix (no `eval`).

`column(name)` gives a raw column over all rows of the analysis table: float64 with NaN for missing
(numeric), or an object array of str with None (categorical). Transforms are applied here; a value a
transform cannot take (log of 0 or less, sqrt of a negative) counts as missing, as does NaN anywhere in
the row's model variables (listwise deletion, R's na.omit). Factors use treatment coding against the
first of the global levels (the hub fixes them from every site's levels), so every site builds the same
columns in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from datenraum.analysis.formula import FormulaError, ModelSpec, Var

__all__ = ["Frame", "column_names", "design_matrix", "level_strings", "model_frame", "transform"]

Column = Callable[[str], np.ndarray]


def level_strings(values: np.ndarray) -> np.ndarray:
    """A column as level labels (object array, None for missing): 1.0 -> "1", "a" -> "a"."""
    if values.dtype != object:
        distinct, inverse = np.unique(values, return_inverse=True)  # NaN sorts last
        labels = np.array(
            [None if np.isnan(v) else str(int(v)) if v == round(v) else repr(float(v)) for v in distinct]
            + [None],
            dtype=object,
        )
        return labels[inverse.reshape(values.shape)] if len(values) else np.empty(0, dtype=object)
    return values


def transform(values: np.ndarray, name: str | None) -> np.ndarray:
    if name is None:
        return values
    with np.errstate(all="ignore"):
        match name:
            case "log":
                out = np.log(values)
            case "log1p":
                out = np.log1p(values)
            case "log2":
                out = np.log2(values)
            case "log10":
                out = np.log10(values)
            case "exp":
                out = np.exp(values)
            case "sqrt":
                out = np.sqrt(values)
            case "abs":
                out = np.abs(values)
            case "square":
                out = values * values
            case _:
                raise FormulaError(f"transform {name!r} is not allowed")
    out[~np.isfinite(out)] = np.nan
    return out


@dataclass
class Frame:
    """The complete-case rows of a model's variables."""

    n_total: int
    mask: np.ndarray  # bool over all rows: the rows used
    numeric: dict[Var, np.ndarray]  # transformed values on the used rows
    factors: dict[str, np.ndarray]  # level labels on the used rows

    @property
    def n(self) -> int:
        return int(self.mask.sum())


def _numeric(column: Column, var: Var) -> np.ndarray:
    raw = column(var.name)
    if raw.dtype == object:
        raise FormulaError(f"variable {var.name} is categorical: write factor({var.name})")
    return transform(np.asarray(raw, dtype=float), var.transform)


def model_frame(
    spec: ModelSpec, column: Column, weights: Var | None = None, row_mask: np.ndarray | None = None
) -> Frame:
    numeric: dict[Var, np.ndarray] = {}
    factors: dict[str, np.ndarray] = {}
    variables = spec.variables() + ([weights] if weights is not None else [])
    n_total = None
    for var in variables:
        if var.is_factor:
            if var.name not in factors:
                factors[var.name] = level_strings(column(var.name))
                n_total = len(factors[var.name])
        elif var not in numeric:
            numeric[var] = _numeric(column, var)
            n_total = len(numeric[var])
    assert n_total is not None
    mask = np.ones(n_total, dtype=bool) if row_mask is None else row_mask.copy()
    for values in numeric.values():
        mask &= ~np.isnan(values)
    for values in factors.values():
        mask &= values != None  # noqa: E711 (element-wise)
    return Frame(
        n_total,
        mask,
        {var: values[mask] for var, values in numeric.items()},
        {name: values[mask] for name, values in factors.items()},
    )


def column_names(spec: ModelSpec, levels: Mapping[str, Sequence[str]]) -> list[str]:
    names = ["(Intercept)"] if spec.intercept else []
    for term in spec.terms:
        parts: list[list[str]] = [[]]
        for var in term:
            if var.is_factor:
                labels = [f"{var.label}{level}" for level in levels[var.name][1:]]
            else:
                labels = [var.label]
            parts = [[*p, label] for p in parts for label in labels]
        names.extend(":".join(p) for p in parts)
    return names


def design_matrix(spec: ModelSpec, frame: Frame, levels: Mapping[str, Sequence[str]]) -> np.ndarray:
    """The n x p design matrix on the frame's rows, in `column_names` order."""
    codes: dict[str, np.ndarray] = {}
    for name, values in frame.factors.items():
        known = list(levels[name])
        index = {level: i for i, level in enumerate(known)}
        try:
            codes[name] = np.fromiter((index[v] for v in values), dtype=np.int64, count=len(values))
        except KeyError as missing:
            raise FormulaError(
                f"factor {name}: level {missing.args[0]!r} is not among the global levels"
            ) from None
    n = frame.n
    columns = [np.ones(n)] if spec.intercept else []
    for term in spec.terms:
        parts = [np.ones(n)]
        for var in term:
            if var.is_factor:
                code = codes[var.name]
                dummies = [(code == i).astype(float) for i in range(1, len(levels[var.name]))]
            else:
                dummies = [frame.numeric[var]]
            parts = [p * d for p in parts for d in dummies]
        columns.extend(parts)
    return np.column_stack(columns) if columns else np.empty((n, 0))
