"""REDCap's CSV files (data dictionaries and flat record exports), read strictly.

Python's csv module forgives broken quoting and does not say where a row went wrong, so this small
RFC 4180 reader keeps the line and column of every cell: a `RedcapError` names the file, line and
column ("datadictionary.csv:12:48: ...") of a stray quote, an unterminated quoted cell, or a row with
the wrong number of cells. Line endings LF and CRLF, a UTF-8 byte order mark, quotes doubled inside
quoted cells; a quoted cell may span lines (REDCap labels do).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass

MAX_CELL = 1_000_000


class RedcapError(ValueError):
    """A REDCap file that cannot be read: `source`, 1-based `line` and `column` (None when the whole
    file is at fault), and what is wrong."""

    def __init__(self, source: str, line: int | None, column: int | None, message: str) -> None:
        where = source if line is None else f"{source}:{line}" + ("" if column is None else f":{column}")
        super().__init__(f"{where}: {message}")
        self.source = source
        self.line = line
        self.column = column
        self.message = message


@dataclass(frozen=True)
class Cell:
    text: str
    line: int
    column: int


@dataclass(frozen=True)
class Row:
    line: int  # where the row starts
    cells: tuple[Cell, ...]

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(cell.text for cell in self.cells)


def read_rows(text: str, source: str) -> list[Row]:
    """The rows of a CSV text; blank lines are skipped."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise RedcapError(source, line, None, "the file contains a NUL byte: not a CSV text file")
    rows: list[Row] = []
    cells: list[Cell] = []
    line, column = 1, 1
    i, n = 0, len(text)
    row_line = 1
    while i < n:
        start_line, start_column = line, column
        if text[i] == '"':
            i += 1
            column += 1
            parts = []
            while True:
                end = text.find('"', i)
                if end < 0:
                    raise RedcapError(source, start_line, start_column, "a quoted cell is not closed")
                chunk = text[i:end]
                parts.append(chunk)
                newlines = chunk.count("\n")
                if newlines:
                    line += newlines
                    column = len(chunk) - chunk.rfind("\n")
                else:
                    column += len(chunk)
                i = end + 1
                column += 1
                if i < n and text[i] == '"':
                    parts.append('"')
                    i += 1
                    column += 1
                    continue
                break
            value = "".join(parts)
            if i < n and text[i] not in ",\r\n":
                raise RedcapError(source, line, column, f"unexpected {text[i]!r} after a quoted cell")
        else:
            end = i
            while end < n and text[end] not in ',"\r\n':
                end += 1
            if end < n and text[end] == '"':
                raise RedcapError(source, line, column + end - i, "a quote inside an unquoted cell")
            value = text[i:end]
            column += end - i
            i = end
        if len(value) > MAX_CELL:
            raise RedcapError(source, start_line, start_column, f"a cell longer than {MAX_CELL} characters")
        cells.append(Cell(value.replace("\r\n", "\n"), start_line, start_column))
        if i < n and text[i] == ",":
            i += 1
            column += 1
            if i == n:
                cells.append(Cell("", line, column))
            continue
        # end of row
        if i < n and text[i] == "\r":
            i += 1
        if i < n and text[i] == "\n":
            i += 1
        if not (len(cells) == 1 and cells[0].text == ""):
            rows.append(Row(row_line, tuple(cells)))
        cells = []
        line += 1
        column = 1
        row_line = line
    if cells and not (len(cells) == 1 and cells[0].text == ""):
        rows.append(Row(row_line, tuple(cells)))
    return rows


def write_rows(rows: Iterable[Iterable[str]]) -> str:
    """CSV text as REDCap writes it: comma-separated, quoted where needed, LF line ends."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    for row in rows:
        writer.writerow(list(row))
    return buffer.getvalue()
