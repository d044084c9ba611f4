"""REDCap's flat record export <-> QuestionnaireResponses, one per record, event, form and repeat instance.

A row of the export is one record in one event (`redcap_event_name`), either with the non-repeating forms
of that event or with one instance (`redcap_repeat_instance`) of one repeating form
(`redcap_repeat_instrument`). A form appears in a row when one of its fields or its `<form>_complete`
status has a value; its status 0/1/2 (incomplete, unverified, complete) becomes the response's
`meta.tag` (FORM_STATUS) and `status` (in-progress; completed). The record, event and instance are in the
response's `identifier` and extensions, so `responses_to_records` writes the same rows and cells back.

Values: REDCap exports dates as Y-M-D whatever the field shows; datetimes "Y-M-D H:M[:S]" get the time
zone offset of `timezone` (FHIR dateTimes with a time need one) and lose it on the way back; numbers of
`*_comma_decimal` fields have a decimal comma; checkbox options are columns `field___code` of 0/1.
A cell that is not a value of its field is a `RedcapError` naming file, line and column.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from datenraum.studies.questionnaire import EXT_COPIED_FROM
from datenraum.studies.redcap import fields as f
from datenraum.studies.redcap.csvtext import RedcapError, Row, read_rows, write_rows
from datenraum.studies.redcap.logic import number_text

RECORD_SYSTEM = "https://datenraum.de/fhir/sid/redcap-record"
RESPONSE_SYSTEM = "https://datenraum.de/fhir/sid/redcap-response"
FORM_STATUS = "https://datenraum.de/fhir/CodeSystem/form-status"
EXT_EVENT = "https://datenraum.de/fhir/StructureDefinition/redcap-event"
EXT_REPEAT_INSTANCE = "https://datenraum.de/fhir/StructureDefinition/redcap-repeat-instance"
STATUS_CODES = {"0": "incomplete", "1": "unverified", "2": "complete"}
SPECIAL = ("redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance")


@dataclass(frozen=True)
class RecordImport:
    responses: tuple[dict, ...]
    rows_per_event_and_instrument: Mapping[tuple[str, str], int]  # (event, repeat instrument or "") -> rows
    responses_per_event_and_form: Mapping[tuple[str, str], int]
    columns: tuple[str, ...]  # the export's header, for writing the same columns back


@dataclass(frozen=True)
class _Column:
    index: int
    form: str
    item: dict
    option: str | None  # a checkbox option column


def _extension(item: dict, url: str) -> dict | None:
    return next((e for e in item.get("extension", []) if e.get("url") == url), None)


def _validation(item: dict) -> str:
    ext = _extension(item, f.EXT_REDCAP_FIELD)
    for sub in (ext or {}).get("extension", []):
        if sub.get("url") == "validation":
            return sub.get("valueString", "")
    return ""


def _forms(questionnaires: Sequence[dict]) -> dict[str, dict]:
    return {q.get("name") or q["id"]: q for q in questionnaires}


class _Reader:
    def __init__(self, questionnaires: Sequence[dict], source: str, timezone: str) -> None:
        self.forms = _forms(questionnaires)
        self.source = source
        try:
            self.zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise RedcapError(source, None, None, f"unknown time zone {timezone!r}") from None
        self.header_index: dict[str, int] = {}
        self.fields: dict[str, tuple[str, dict]] = {}
        self.copies: dict[str, list[dict]] = {}
        for form, questionnaire in self.forms.items():
            for item in questionnaire.get("item", []):
                if item["type"] == "display":
                    continue
                if _extension(item, EXT_COPIED_FROM) is not None:
                    self.copies.setdefault(form, []).append(item)
                else:
                    self.fields[item["linkId"]] = (form, item)

    def error(self, row: Row, index: int, message: str) -> RedcapError:
        cell = row.cells[index] if index < len(row.cells) else row.cells[-1]
        return RedcapError(self.source, cell.line, cell.column, message)

    def columns(self, header: Row) -> tuple[dict[str, int], list[_Column], dict[str, int]]:
        special: dict[str, int] = {}
        columns: list[_Column] = []
        status: dict[str, int] = {}
        names = header.values
        if len(set(names)) != len(names):
            twice = next(n for n in names if names.count(n) > 1)
            raise self.error(
                header, names.index(twice, names.index(twice) + 1), f"the column {twice!r} occurs twice"
            )
        for index, name in enumerate(names):
            if index == 0:
                if name not in self.fields:
                    raise self.error(
                        header, 0, f"the first column {name!r} is not the dictionary's record id field"
                    )
                form, item = self.fields[name]
                columns.append(_Column(index, form, item, None))  # the record id is its form's first answer
                continue
            if name in SPECIAL:
                special[name] = index
            elif name.endswith("_complete") and name[: -len("_complete")] in self.forms:
                status[name[: -len("_complete")]] = index
            elif name in self.fields:
                form, item = self.fields[name]
                columns.append(_Column(index, form, item, None))
            elif "___" in name and name.partition("___")[0] in self.fields:
                field, _, option = name.partition("___")
                form, item = self.fields[field]
                codes = [o["valueCoding"]["code"] for o in item.get("answerOption", []) if "valueCoding" in o]
                if not item.get("repeats") or option not in codes:
                    raise self.error(header, index, f"{name!r} is not an option column of a checkbox field")
                columns.append(_Column(index, form, item, option))
            else:
                raise self.error(header, index, f"the column {name!r} is not a field of the dictionary")
        return special, columns, status

    def read(self, text: str) -> RecordImport:
        rows = read_rows(text, self.source)
        if not rows:
            raise RedcapError(self.source, None, None, "the file is empty: a record export has a header row")
        header = rows[0]
        self.header_index = {name: i for i, name in enumerate(header.values)}
        special, columns, status = self.columns(header)
        by_form: dict[str, list[_Column]] = {}
        for column in columns:
            by_form.setdefault(column.form, []).append(column)
        responses: list[dict] = []
        row_counts: Counter[tuple[str, str]] = Counter()
        form_counts: Counter[tuple[str, str]] = Counter()
        plain_rows: dict[tuple[str, str], Row] = {}
        parsed: list[tuple[Row, str, str, str, int | None]] = []
        for row in rows[1:]:
            if len(row.cells) != len(header.cells):
                raise RedcapError(
                    self.source,
                    row.line,
                    None,
                    f"the row has {len(row.cells)} cells, the header {len(header.cells)}",
                )
            values = row.values
            record = values[0].strip()
            if not record:
                raise self.error(row, 0, "the record id is empty")
            event = values[special["redcap_event_name"]] if "redcap_event_name" in special else ""
            instrument = (
                values[special["redcap_repeat_instrument"]] if "redcap_repeat_instrument" in special else ""
            )
            instance_text = (
                values[special["redcap_repeat_instance"]] if "redcap_repeat_instance" in special else ""
            )
            instance = None
            if instance_text:
                if not instance_text.isdigit() or int(instance_text) < 1:
                    raise self.error(
                        row,
                        special["redcap_repeat_instance"],
                        f"{instance_text!r} is not a repeat instance (1, 2, ...)",
                    )
                instance = int(instance_text)
            if instrument and instrument not in self.forms:
                raise self.error(
                    row,
                    special["redcap_repeat_instrument"],
                    f"{instrument!r} is not a form of the dictionary",
                )
            if instrument and instance is None:
                raise self.error(
                    row, special.get("redcap_repeat_instance", 0), "a repeating form's row needs its instance"
                )
            row_counts[(event, instrument)] += 1
            if not instrument:
                plain_rows[(record, event)] = row
            parsed.append((row, record, event, instrument, instance))
        for row, record, event, instrument, instance in parsed:
            values = row.values
            forms = [instrument] if instrument else list(self.forms)
            for form in forms:
                form_columns = by_form.get(form, [])
                status_index = status.get(form)
                status_text = values[status_index].strip() if status_index is not None else ""
                if not status_text and not any(values[c.index].strip() for c in form_columns if c.index != 0):
                    continue
                if status_text and status_text not in STATUS_CODES:
                    raise self.error(
                        row, status_index or 0, f"the form status {status_text!r} is not 0, 1 or 2"
                    )
                response = self.response(
                    row, record, event, form, instance, form_columns, status_text, plain_rows
                )
                responses.append(response)
                form_counts[(event, form)] += 1
        return RecordImport(tuple(responses), dict(row_counts), dict(form_counts), header.values)

    def response(
        self,
        row: Row,
        record: str,
        event: str,
        form: str,
        instance: int | None,
        columns: list[_Column],
        status_text: str,
        plain_rows: Mapping[tuple[str, str], Row],
    ) -> dict:
        questionnaire = self.forms[form]
        answers: dict[str, list[dict]] = {}
        for column in columns:
            text = row.values[column.index].strip()
            if not text:
                continue
            link_id = column.item["linkId"]
            if column.option is not None:
                if text not in ("0", "1"):
                    raise self.error(row, column.index, f"{text!r} is not 0 or 1 (a checkbox option)")
                if text == "1":
                    answers.setdefault(link_id, []).append(self.coding(column.item, column.option))
                continue
            answers[link_id] = [self.value(row, column.index, column.item, text)]
        for copy in self.copies.get(form, []):
            # The value comes from the same record's and event's row of non-repeating forms.
            source_row = plain_rows.get((record, event))
            index = self.header_index.get(copy["linkId"])
            if source_row is not None and index is not None and source_row.values[index].strip():
                answers[copy["linkId"]] = [
                    self.value(source_row, index, copy, source_row.values[index].strip())
                ]
        items = [
            {"linkId": item["linkId"], "answer": answers[item["linkId"]]}
            for item in questionnaire.get("item", [])
            if item["linkId"] in answers
        ]
        code = STATUS_CODES.get(status_text or "0")
        key = f"{record}|{event}|{form}|{instance or ''}"
        extensions = [{"url": EXT_EVENT, "valueString": event}] if event else []
        if instance is not None:
            extensions.append({"url": EXT_REPEAT_INSTANCE, "valueInteger": instance})
        response: dict[str, Any] = {
            "resourceType": "QuestionnaireResponse",
            "meta": {"tag": [{"system": FORM_STATUS, "code": code}]},
            "identifier": {"system": RESPONSE_SYSTEM, "value": key},
            "questionnaire": f"{questionnaire['url']}|{questionnaire['version']}",
            "status": "completed" if code in ("unverified", "complete") else "in-progress",
            "subject": {"identifier": {"system": RECORD_SYSTEM, "value": record}},
            "item": items,
        }
        if extensions:
            response["extension"] = extensions
        return response

    def coding(self, item: dict, code: str) -> dict:
        for option in item.get("answerOption", []):
            coding = option.get("valueCoding", {})
            if coding.get("code") == code:
                return {
                    "valueCoding": {k: v for k, v in coding.items() if k in ("system", "code", "display")}
                }
        return {"valueCoding": {"code": code}}

    def value(self, row: Row, index: int, item: dict, text: str) -> dict:
        kind = item["type"]
        name = item["linkId"]

        def refuse(what: str) -> RedcapError:
            return self.error(row, index, f"{name}: {text[:40]!r} is not {what}")

        if kind in ("choice", "open-choice"):
            codes = [o["valueCoding"]["code"] for o in item.get("answerOption", []) if "valueCoding" in o]
            if text not in codes:
                raise refuse(f"one of the codes {', '.join(codes[:10])}")
            return self.coding(item, text)
        if kind == "boolean":
            if text not in ("0", "1"):
                raise refuse("0 or 1")
            return {"valueBoolean": text == "1"}
        if kind == "integer":
            if not re.fullmatch(r"-?\d+", text):
                raise refuse("a whole number")
            return {"valueInteger": int(text)}
        if kind == "decimal":
            number = text.replace(",", ".") if "comma" in _validation(item) else text
            if not re.fullmatch(r"-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?", number):
                raise refuse("a number")
            return {"valueDecimal": float(number)}
        if kind == "date":
            try:
                dt.date.fromisoformat(text)
            except ValueError:
                raise refuse("a date (Y-M-D)") from None
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                raise refuse("a date (Y-M-D)")
            return {"valueDate": text}
        if kind == "dateTime":
            match = re.fullmatch(r"(\d{4}-\d{2}-\d{2}) (\d{2}):(\d{2})(?::(\d{2}))?", text)
            if match is None:
                raise refuse("a datetime (Y-M-D H:M)")
            try:
                moment = dt.datetime.fromisoformat(
                    f"{match.group(1)}T{match.group(2)}:{match.group(3)}:{match.group(4) or '00'}"
                )
            except ValueError:
                raise refuse("a datetime (Y-M-D H:M)") from None
            return {"valueDateTime": moment.replace(tzinfo=self.zone).isoformat()}
        if kind == "time":
            if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", text):
                raise refuse("a time (H:M)")
            return {"valueTime": text + ":00"}
        if kind == "attachment":
            return {"valueAttachment": {"title": text}}
        return {"valueString": text}


def records_to_responses(
    questionnaires: Sequence[dict], text: str, source: str, timezone: str = "Europe/Berlin"
) -> RecordImport:
    """The responses of a REDCap flat record export (its CSV text) to the forms of its dictionary."""
    return _Reader(questionnaires, source, timezone).read(text)


# --- the way back ----------------------------------------------------------------------------------


def _cell(item: dict, answer: dict) -> str:
    key, value = next((k, v) for k, v in answer.items() if k.startswith("value"))
    if key == "valueCoding":
        return str(value.get("code", ""))
    if key == "valueBoolean":
        return "1" if value else "0"
    if key == "valueDecimal":
        written = (
            number_text(value) if isinstance(value, float) and value.is_integer() else repr(float(value))
        )
        return written.replace(".", ",") if "comma" in _validation(item) else written
    if key == "valueDateTime":
        seconds = "seconds" in _validation(item)
        return value[:19].replace("T", " ") if seconds else value[:16].replace("T", " ")
    if key == "valueTime":
        return value[:5]
    if key == "valueAttachment":
        return str(value.get("title", ""))
    return str(value)


def default_columns(questionnaires: Sequence[dict], longitudinal: bool = True) -> tuple[str, ...]:
    """REDCap's export header for these forms: record id, the event and repeat columns, each form's
    fields (a checkbox as one column per option) followed by its status."""
    columns: list[str] = []
    for form, questionnaire in _forms(questionnaires).items():
        for item in questionnaire.get("item", []):
            if item["type"] == "display" or _extension(item, EXT_COPIED_FROM) is not None:
                continue
            if item.get("repeats") and item["type"] == "choice":
                columns.extend(
                    f"{item['linkId']}___{o['valueCoding']['code']}" for o in item.get("answerOption", [])
                )
            else:
                columns.append(item["linkId"])
            if not columns[1:] and longitudinal:
                columns.extend(SPECIAL)
        columns.append(f"{form}_complete")
    return tuple(columns)


def responses_to_records(
    questionnaires: Sequence[dict], responses: Iterable[dict], columns: Sequence[str] | None = None
) -> str:
    """The flat record export (CSV) of responses made by `records_to_responses` (or the site EDC, with the
    same identifier and extensions): one row per record and event, and per repeat instance."""
    forms = _forms(questionnaires)
    by_url = {f"{q['url']}|{q['version']}": (name, q) for name, q in forms.items()}
    header = tuple(columns) if columns is not None else default_columns(questionnaires)
    position = {name: i for i, name in enumerate(header)}
    rows: dict[tuple[str, str, str, str], list[str]] = {}
    for response in responses:
        form, questionnaire = by_url[response["questionnaire"]]
        record = response["subject"]["identifier"]["value"]
        extensions = {e["url"]: e for e in response.get("extension", [])}
        event = extensions[EXT_EVENT]["valueString"] if EXT_EVENT in extensions else ""
        instance = (
            str(extensions[EXT_REPEAT_INSTANCE]["valueInteger"]) if EXT_REPEAT_INSTANCE in extensions else ""
        )
        key = (record, event, form if instance else "", instance)
        row = rows.setdefault(key, [""] * len(header))
        row[0] = record
        for name, value in zip(SPECIAL, (event, key[2], instance), strict=True):
            if name in position:
                row[position[name]] = value
        items = {item["linkId"]: item for item in questionnaire.get("item", [])}
        for answered in response.get("item", []):
            item = items.get(answered["linkId"])
            if item is None or _extension(item, EXT_COPIED_FROM) is not None:
                continue
            answers = answered.get("answer", [])
            if item.get("repeats") and item["type"] == "choice":
                chosen = {a["valueCoding"]["code"] for a in answers if "valueCoding" in a}
                for option in item.get("answerOption", []):
                    code = option["valueCoding"]["code"]
                    column = position.get(f"{item['linkId']}___{code}")
                    if column is not None:
                        row[column] = "1" if code in chosen else "0"
            elif answers and item["linkId"] in position:
                row[position[item["linkId"]]] = _cell(item, answers[0])
        tags = {t.get("system"): t.get("code") for t in response.get("meta", {}).get("tag", [])}
        status = {v: k for k, v in STATUS_CODES.items()}.get(tags.get(FORM_STATUS, ""), "0")
        if f"{form}_complete" in position:
            row[position[f"{form}_complete"]] = status
    return write_rows([header, *rows.values()])
