"""Exports for the study statistician: one table per form, as CSV with a data dictionary, and as SPSS,
Stata, SAS and R files.

A table has one row per response of its form: the record (the study pseudonym, the response's
`subject.identifier`), the event and the repeat instance (the REDCap conventions of
`datenraum.studies.redcap.records`), then one column per answerable item in the form's order (items of
groups too, under their own linkId). A choice that repeats (REDCap's checkbox) becomes one 0/1 column per
option, `<linkId>___<code>`, as REDCap exports it. Choices keep their codes; the labels variant of the CSV
and the value labels of the statistical files carry the option texts.

Two options protect the participants further, as REDCap's export does: `drop_identifiers` leaves out the
items flagged as identifying (the REDCap "Identifier?" column), and `date_shift_key` moves every date and
date-time of a record by the same number of days (0 to 364 earlier, keyed on the record, so intervals
within a record are kept and the same key gives the same shift).

The CSV and dictionary files are byte-identical for the same responses (rows sorted by record, event and
instance; fixed line ends). The SPSS and Stata files carry their creation time in their headers (ReadStat
writes it), so those compare by content, not by bytes.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datenraum.studies.questionnaire import Item, Questionnaire
from datenraum.studies.redcap.records import EXT_EVENT, EXT_REPEAT_INSTANCE

__all__ = ["FORMATS", "Column", "ExportError", "FormTable", "export_form", "form_table", "read_responses"]

FORMATS = ("csv", "labels.csv", "dictionary.csv", "sav", "dta", "xpt", "rds")
_NOT_ANSWERED = ("group", "display")
_KINDS = {
    "boolean": "integer",
    "integer": "integer",
    "decimal": "decimal",
    "quantity": "decimal",
    "date": "date",
    "dateTime": "datetime",
}


class ExportError(ValueError):
    """Responses that cannot be exported with their form; the text names the response and the item."""


@dataclass(frozen=True)
class Column:
    name: str
    label: str
    kind: str  # string | integer | decimal | date | datetime
    choices: tuple[tuple[str, str], ...] = ()  # (code, label) of a single choice
    identifier: bool = False


@dataclass(frozen=True)
class FormTable:
    form: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Any, ...], ...]  # values as Python objects; None for no answer


_KEY_COLUMNS = (
    Column("record_id", "Record (study pseudonym)", "string"),
    Column("redcap_event_name", "Event", "string"),
    Column("redcap_repeat_instance", "Repeat instance", "integer"),
)


def _answerable(items: Sequence[Item]) -> Iterable[Item]:
    for item in items:
        if item.type not in _NOT_ANSWERED:
            yield item
        yield from _answerable(item.items)


def _options(item: Item) -> tuple[tuple[str, str], ...]:
    codings = [option.value.value for option in item.answer_options if option.value.kind == "Coding"]
    codings += list(item.value_set_codings or ())
    return tuple((c.code, c.display or c.code) for c in codings if c.code is not None)


def _columns(questionnaire: Questionnaire, drop_identifiers: bool) -> list[tuple[Column, Item, str | None]]:
    out: list[tuple[Column, Item, str | None]] = []
    for item in _answerable(questionnaire.items):
        if drop_identifiers and item.identifier:
            continue
        label = item.text or item.link_id
        options = _options(item)
        if item.type in ("choice", "open-choice") and item.repeats and options:
            for code, text in options:
                out.append((Column(f"{item.link_id}___{code}", f"{label}: {text}", "integer"), item, code))
        elif item.type in ("choice", "open-choice"):
            out.append((Column(item.link_id, label, "string", options, item.identifier), item, None))
        else:
            kind = _KINDS.get(item.type, "string")
            out.append((Column(item.link_id, label, kind, identifier=item.identifier), item, None))
    return out


def _answers(response: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}

    def walk(items: list[dict[str, Any]]) -> None:
        for answered in items:
            found.setdefault(answered.get("linkId", ""), []).extend(answered.get("answer", []))
            walk(answered.get("item", []))
            for answer in answered.get("answer", []):
                walk(answer.get("item", []))

    walk(response.get("item", []))
    return found


def _value(column: Column, answer: dict[str, Any], where: str) -> Any:
    for key, value in answer.items():
        if not key.startswith("value"):
            continue
        if key == "valueCoding":
            return value.get("code")
        if key == "valueQuantity":
            return value.get("value")
        if key == "valueBoolean":
            return int(value)
        if column.kind == "date" and isinstance(value, str):
            return _date(value, where)
        if column.kind == "datetime" and isinstance(value, str):
            return _datetime(value, where)
        return value
    return None


def _date(text: str, where: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        raise ExportError(f"{where}: {text!r} is not a date") from None


def _datetime(text: str, where: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ExportError(f"{where}: {text!r} is not a date-time") from None
    # One zone for the table: UTC, without an offset (the statistical formats have none).
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _shift(record: str, key: bytes) -> dt.timedelta:
    digest = hmac.new(key, b"datenraum date shift v1\n" + record.encode(), hashlib.sha256).digest()
    return dt.timedelta(days=-(int.from_bytes(digest[:4], "big") % 365))


def form_table(
    questionnaire: Questionnaire,
    responses: Iterable[dict[str, Any]],
    *,
    drop_identifiers: bool = False,
    date_shift_key: bytes | None = None,
) -> FormTable:
    """The table of `questionnaire`'s form from those of `responses` that answer its version; raises
    ExportError for a response without a record or with a value its item's type does not allow."""
    canonical = f"{questionnaire.url}|{questionnaire.version}" if questionnaire.version else questionnaire.url
    layout = _columns(questionnaire, drop_identifiers)
    rows: list[tuple[Any, ...]] = []
    for number, response in enumerate(responses):
        if response.get("questionnaire") not in (canonical, questionnaire.url):
            continue
        where = f"response {response.get('id') or number}"
        record = (response.get("subject") or {}).get("identifier", {}).get("value")
        if not isinstance(record, str) or not record:
            raise ExportError(f"{where}: subject.identifier.value (the record) is missing")
        extensions = {e.get("url"): e for e in response.get("extension", [])}
        event = extensions.get(EXT_EVENT, {}).get("valueString", "")
        instance = extensions.get(EXT_REPEAT_INSTANCE, {}).get("valueInteger")
        answers = _answers(response)
        shift = _shift(record, date_shift_key) if date_shift_key is not None else None
        values: list[Any] = [record, event, instance]
        for column, item, option in layout:
            given = answers.get(item.link_id, [])
            if option is not None:
                values.append(int(any(a.get("valueCoding", {}).get("code") == option for a in given)))
                continue
            value = _value(column, given[0], f"{where}, item {item.link_id}") if given else None
            if shift is not None and isinstance(value, dt.date):
                value = value + shift
            values.append(value)
        rows.append(tuple(values))
    rows.sort(key=lambda row: (row[0], row[1], row[2] or 0))
    name = questionnaire.name or questionnaire.url or "form"
    return FormTable(name, _KEY_COLUMNS + tuple(column for column, _, _ in layout), tuple(rows))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def _csv(rows: Iterable[Sequence[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in rows:
        writer.writerow([_text(v) for v in row])
    return buffer.getvalue().encode("utf-8")


def _labelled(table: FormTable) -> list[list[Any]]:
    labels = [dict(column.choices) for column in table.columns]
    return [
        [labels[i].get(value, value) if value is not None else None for i, value in enumerate(row)]
        for row in table.rows
    ]


def _dictionary(table: FormTable) -> bytes:
    rows = [("variable", "label", "type", "choices", "identifier")]
    for column in table.columns:
        choices = " | ".join(f"{code}, {label}" for code, label in column.choices)
        rows.append((column.name, column.label, column.kind, choices, "y" if column.identifier else ""))
    return _csv(rows)


def _frame(table: FormTable) -> Any:
    import pandas as pd

    data = {}
    for i, column in enumerate(table.columns):
        values = [row[i] for row in table.rows]
        if column.kind in ("integer", "decimal"):
            data[column.name] = pd.array(values, dtype="Float64").astype("float64")
        elif column.kind in ("date", "datetime"):
            data[column.name] = pd.to_datetime(pd.Series(values, dtype="object"))
        else:
            data[column.name] = pd.Series(["" if v is None else str(v) for v in values], dtype="object")
    return pd.DataFrame(data, columns=[c.name for c in table.columns])


def _variable_names(table: FormTable, limit: int) -> dict[str, str]:
    """Names the statistical formats accept (letters, digits, underscore; SAS and Stata: 32 characters),
    unique within the table."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for column in table.columns:
        base = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in column.name)
        base = base if base[:1].isalpha() else f"v_{base}"
        name, n = base[:limit], 1
        while name.lower() in taken:
            suffix = f"_{n}"
            name, n = base[: limit - len(suffix)] + suffix, n + 1
        taken.add(name.lower())
        names[column.name] = name
    return names


def _statistical(table: FormTable, path: Path, kind: str) -> None:
    import pyreadstat

    frame = _frame(table)
    names = _variable_names(table, 32 if kind in ("dta", "xpt") else 64)
    frame = frame.rename(columns=names)
    labels = [column.label[:80] if kind == "dta" else column.label for column in table.columns]
    value_labels = {
        names[c.name]: {code: label for code, label in c.choices} for c in table.columns if c.choices
    }
    if kind == "sav":
        pyreadstat.write_sav(
            frame, str(path), column_labels=labels, variable_value_labels=value_labels or None
        )
    elif kind == "dta":
        # Stata labels values of numbers only: coded choices stay text, their labels in the dictionary.
        pyreadstat.write_dta(frame, str(path), column_labels=labels)
    else:
        pyreadstat.write_xport(frame, str(path), column_labels=labels, table_name=table.form[:8] or "form")


def export_form(table: FormTable, folder: Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write `table` into `folder` as `<form>.<format>` for each of `formats`; returns the files."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ExportError(f"formats: {', '.join(unknown)} unknown; choose from {', '.join(FORMATS)}")
    folder.mkdir(parents=True, exist_ok=True)
    header = [c.name for c in table.columns]
    written: list[Path] = []
    for kind in formats:
        path = folder / f"{table.form}.{kind}"
        if kind == "csv":
            path.write_bytes(_csv([header, *table.rows]))
        elif kind == "labels.csv":
            path.write_bytes(_csv([header, *_labelled(table)]))
        elif kind == "dictionary.csv":
            path.write_bytes(_dictionary(table))
        elif kind == "rds":
            import pyreadr

            pyreadr.write_rds(str(path), _frame(table))
        else:
            _statistical(table, path, kind)
        written.append(path)
    return written


def read_responses(path: Path) -> list[dict[str, Any]]:
    """The QuestionnaireResponses of an NDJSON file (one a line) or a FHIR Bundle (what
    `datenraum studies import-redcap-records` and a delivery's study data hold); an error names the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ExportError(f"{path}: cannot be read ({error})") from None
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None  # NDJSON (or broken: the line-by-line reading names the line)
    if isinstance(whole, dict) and whole.get("resourceType") == "Bundle":
        resources = [entry.get("resource") for entry in whole.get("entry", []) if isinstance(entry, dict)]
    else:
        resources = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                resources.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ExportError(f"{path}:{number}:{error.colno}: not JSON: {error.msg}") from None
    return [r for r in resources if isinstance(r, dict) and r.get("resourceType") == "QuestionnaireResponse"]
