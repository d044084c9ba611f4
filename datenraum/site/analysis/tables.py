"""Analysis tables at a site: one row per patient (or per record), columns by name.

`AnalysisTable` holds the columns of one table as Arrow arrays and hands them to the executor as numpy
(float64 with NaN for missing, or object arrays of str with None for text). Tables come from a CSV or
Parquet file (development, tests, local mode: `read_table`) or from the site store, for a cohort and
declarative variable definitions (`datenraum.site.analysis.variables`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["AnalysisTable", "RowUniverse", "TableError", "read_table"]


class TableError(ValueError):
    """An analysis table that cannot be read or a variable it does not have."""


@dataclass(frozen=True)
class RowUniverse:
    """Where a table's rows lie among all rows of their source (for a store: every patient of the store
    generation), so that the differencing ledger compares the row sets of different cohorts: two cohort
    queries that differ by one patient are two row sets of one source, not two sources."""

    source: str
    positions: np.ndarray  # of each row of the table, in 0..size-1
    size: int


class AnalysisTable:
    def __init__(self, table: pa.Table, key: str, universe: RowUniverse | None = None) -> None:
        self._table = table
        self.key = key  # identifies the rows (file and content): the differencing ledger's source
        self._universe = universe
        self._cache: dict[str, np.ndarray] = {}
        self._codes: dict[str, tuple[np.ndarray, list[str]]] = {}

    @property
    def n_rows(self) -> int:
        return self._table.num_rows

    def ledger_rows(self, mask: np.ndarray) -> tuple[str, np.ndarray]:
        """The differencing ledger's source and the row set of `mask` in it."""
        if self._universe is None:
            return self.key, mask
        rows = np.zeros(self._universe.size, dtype=bool)
        rows[self._universe.positions[mask]] = True
        return self._universe.source, rows

    def names(self) -> list[str]:
        return list(self._table.column_names)

    def column(self, name: str) -> np.ndarray:
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        if name not in self._table.column_names:
            raise TableError(f"unknown variable {name!r}")
        array = self._table.column(name)
        kind = array.type
        if pa.types.is_boolean(kind):
            array = pc.cast(array, pa.float64())
            kind = array.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
            values = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
            values = np.where(np.isnan(values), np.nan, values)
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
            values = np.array(pc.cast(array, pa.string()).to_pylist(), dtype=object)
        else:
            values = np.array([None if v is None else str(v) for v in array.to_pylist()], dtype=object)
        values.setflags(write=False)
        self._cache[name] = values
        return values

    def codes(self, name: str) -> tuple[np.ndarray, list[str]]:
        """The column dictionary-encoded: int32 codes (-1: missing) and the label of each code, as
        `datenraum.analysis.design.level_strings` would label them. Text columns are encoded by Arrow
        (no Python strings per row); numeric ones by numpy on float64."""
        cached = self._codes.get(name)
        if cached is not None:
            return cached
        if name not in self._table.column_names:
            raise TableError(f"unknown variable {name!r}")
        array = self._table.column(name)
        kind = array.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
            encoded = pc.dictionary_encode(pc.cast(array, pa.string())).combine_chunks()
            codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
            labels = [str(v) for v in encoded.dictionary.to_pylist()]
        else:
            from datenraum.analysis.design import level_strings

            values = self.column(name)
            if values.dtype == object:  # other types, labelled as text
                labels_all = values
            else:
                distinct, inverse = np.unique(values, return_inverse=True)
                keep = ~np.isnan(distinct)
                labels = level_strings(distinct[keep]).tolist()
                codes = np.where(keep[inverse], inverse, -1).astype(np.int32)
                self._codes[name] = (codes, labels)
                return codes, labels
            labels_list, codes_list = np.unique(labels_all.astype(str), return_inverse=True)
            codes = np.where(labels_all == None, -1, codes_list).astype(np.int32)  # noqa: E711
            labels = labels_list.tolist()
        self._codes[name] = (codes, labels)
        return codes, labels


def read_table(path: Path) -> AnalysisTable:
    """A CSV or Parquet file as an analysis table. Column names are stripped of blanks; an unnamed first
    column (a row index written by R or pandas) is dropped."""
    import pyarrow.csv as csv
    import pyarrow.parquet as pq

    try:
        if path.suffix.lower() == ".parquet":
            table = pq.read_table(path)
        elif path.suffix.lower() in (".csv", ".tsv"):
            options = csv.ParseOptions(delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            convert = csv.ConvertOptions(null_values=["", "NA", "NaN", "null"], strings_can_be_null=True)
            table = csv.read_csv(path, parse_options=options, convert_options=convert)
        else:
            raise TableError(f"{path.name}: expected a .csv, .tsv or .parquet file")
    except (OSError, pa.ArrowInvalid) as error:
        raise TableError(f"{path.name}: cannot read: {error}") from None
    names = [n.strip() for n in table.column_names]
    keep = [i for i, n in enumerate(names) if n]
    table = table.select(keep).rename_columns([names[i] for i in keep])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return AnalysisTable(table, f"{path.name}:{digest}")
