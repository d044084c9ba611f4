"""Questionnaires -> a REDCap data dictionary (the export direction of `dictionary.py`).

Each item becomes a row; the REDCap details FHIR has no element for come from our `redcap-field`
extension (see `fields.py`). Logic is written from its stored REDCap source only while that source still
converts to exactly what the item now says; otherwise the export writes the item's enableWhen as REDCap
logic, and a FHIRPath expression without a current REDCap source is reported and left out (REDCap
cannot evaluate FHIRPath). The one column that differs after a round trip is the choices' spacing:
REDCap's canonical "code, label | code, label" is written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from datenraum.studies.questionnaire import (
    EXT_CALCULATED_EXPRESSION,
    EXT_COPIED_FROM,
    EXT_ENABLE_WHEN_EXPRESSION,
    EXT_HIDDEN,
    EXT_IDENTIFIER,
    EXT_ITEM_CONTROL,
    EXT_MAX_VALUE,
    EXT_MIN_VALUE,
    EXT_REGEX,
    parse_questionnaire,
)
from datenraum.studies.redcap import fields as f
from datenraum.studies.redcap.csvtext import write_rows
from datenraum.studies.redcap.dictionary import CONVERTED, NOT_CONVERTED, PARTIAL, FieldReport, action_tags
from datenraum.studies.redcap.logic import (
    LogicError,
    enable_when_to_logic,
    number_text,
    parse_logic,
    to_enable_when,
    to_fhirpath_condition,
    to_fhirpath_value,
)

# Which item types each REDCap field type becomes (`dictionary._item_type`): a stored field type is used
# only while the item still has one of these.
_ITEM_TYPES = {
    "text": {"string", "date", "dateTime", "time", "integer", "decimal"},
    "notes": {"text"},
    "dropdown": {"choice"},
    "radio": {"choice"},
    "checkbox": {"choice"},
    "yesno": {"boolean"},
    "truefalse": {"boolean"},
    "calc": {"decimal"},
    "descriptive": {"display"},
    "slider": {"integer"},
    "file": {"attachment"},
    "sql": {"string"},
}
_DEFAULT_VALIDATION = {
    "date": "date_ymd",
    "dateTime": "datetime_ymd",
    "time": "time",
    "integer": "integer",
    "decimal": "number",
}


@dataclass(frozen=True)
class DictionaryExport:
    text: str  # the dictionary CSV
    report: tuple[FieldReport, ...]


def _extension(item: dict, url: str) -> dict | None:
    return next((e for e in item.get("extension", []) if e.get("url") == url), None)


def _redcap(item: dict) -> dict[str, str]:
    ext = _extension(item, f.EXT_REDCAP_FIELD)
    if ext is None:
        return {}
    return {sub["url"]: sub.get("valueString", "") for sub in ext.get("extension", []) if "url" in sub}


def _control(item: dict) -> str | None:
    ext = _extension(item, EXT_ITEM_CONTROL)
    if ext is None:
        return None
    codings = ext.get("valueCodeableConcept", {}).get("coding", [])
    return codings[0].get("code") if codings else None


def _expression(item: dict, url: str) -> str | None:
    ext = _extension(item, url)
    return None if ext is None else ext.get("valueExpression", {}).get("expression")


def _bound_text(item: dict, url: str) -> str:
    ext = _extension(item, url)
    if ext is None:
        return ""
    for key in ("valueInteger", "valueDecimal", "valueDate", "valueDateTime", "valueTime"):
        if key in ext:
            value = ext[key]
            return number_text(value) if isinstance(value, int | float) else str(value)
    return ""


def _is_copy(item: dict) -> bool:
    return _extension(item, EXT_COPIED_FROM) is not None


class _Exporter:
    def __init__(self, questionnaires: Sequence[dict]) -> None:
        self.questionnaires = questionnaires
        self.kinds: dict[str, tuple[str, str]] = {}  # field -> (form, logic kind)
        for questionnaire in questionnaires:
            form = self.form_name(questionnaire)
            for item in self.flat(questionnaire.get("item", [])):
                if item["type"] not in ("group", "display") and not _is_copy(item):
                    self.kinds[item["linkId"]] = (form, f.logic_kind(item["type"], bool(item.get("repeats"))))

    @staticmethod
    def form_name(questionnaire: dict) -> str:
        name = questionnaire.get("name") or questionnaire.get("id") or "form"
        if f.FORM_NAME.match(name):
            return name
        cleaned = "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")
        return cleaned if f.FORM_NAME.match(cleaned) else f"form_{cleaned}"

    def flat(self, items: list[dict]) -> list[dict]:
        found = []
        for item in items:
            found.append(item)
            found.extend(self.flat(item.get("item", [])))
        return found

    def kind_of(self, form: str, crossed: list[str]) -> Any:
        def kind(name: str) -> str:
            if name not in self.kinds:
                raise LogicError(f"[{name}] is not a field")
            other, logic_kind = self.kinds[name]
            if other != form:
                crossed.append(name)
            return logic_kind

        return kind

    def export(self) -> DictionaryExport:
        rows: list[list[str]] = [list(f.COLUMNS)]
        reports: list[FieldReport] = []
        for questionnaire in self.questionnaires:
            parse_questionnaire(questionnaire)  # a FormError stops the export: the form itself is broken
            form = self.form_name(questionnaire)
            section = ""
            for item in self.walk(questionnaire.get("item", []), reports, form):
                link_id = item["linkId"]
                if item["type"] == "display" and link_id.endswith(f.SECTION_SUFFIX):
                    section = item.get("text", "")
                    continue
                if _is_copy(item):
                    continue
                notes: list[str] = []
                row = self.row(item, form, section, notes)
                section = ""
                if row is None:
                    reports.append(
                        FieldReport(link_id, form, len(rows) + 1, NOT_CONVERTED, item["type"], tuple(notes))
                    )
                    continue
                rows.append(row)
                status = PARTIAL if notes else CONVERTED
                reports.append(FieldReport(link_id, form, len(rows), status, item["type"], tuple(notes)))
        return DictionaryExport(write_rows(rows), tuple(reports))

    def walk(self, items: list[dict], reports: list[FieldReport], form: str) -> list[dict]:
        """The items in order, groups dissolved: a group's text becomes its first item's section header."""
        found: list[dict] = []
        for item in items:
            if item["type"] == "group":
                children = self.walk(item.get("item", []), reports, form)
                if item.get("text") and children:
                    first = children[0]["linkId"]
                    found.append(
                        {"linkId": first + f.SECTION_SUFFIX, "type": "display", "text": item["text"]}
                    )
                found.extend(children)
                note = "a group is written as a section header (REDCap forms are flat)"
                if item.get("repeats"):
                    note += "; make the form a repeating instrument in REDCap"
                reports.append(FieldReport(item["linkId"], form, 0, PARTIAL, "group", (note,)))
            else:
                found.append(item)
                found.extend(self.walk(item.get("item", []), reports, form))
        return found

    def row(self, item: dict, form: str, section: str, notes: list[str]) -> list[str] | None:
        stored = _redcap(item)
        kind = item["type"]
        repeats = bool(item.get("repeats"))
        calculated = _expression(item, EXT_CALCULATED_EXPRESSION)
        field_type = stored.get("fieldType", "")
        if (
            field_type not in _ITEM_TYPES
            or kind not in _ITEM_TYPES[field_type]
            or (field_type == "checkbox") != (kind == "choice" and repeats)
        ):
            field_type = self.derive_type(item, calculated, notes)
            if field_type is None:
                return None
        if field_type == "calc" and calculated is None and not stored.get("calculation"):
            field_type = "text"
        values = [""] * len(f.COLUMNS)
        values[f.FIELD] = item["linkId"]
        values[f.FORM] = form
        values[f.SECTION] = section
        values[f.TYPE] = field_type
        values[f.LABEL] = item.get("text", "")
        values[f.CHOICES] = self.choices(item, field_type, stored, form, calculated, notes)
        note = _extension(item, f.EXT_ENTRY_FORMAT)
        values[f.NOTE] = note.get("valueString", "") if note else ""
        values[f.VALIDATION] = self.validation(item, field_type, stored)
        minimum, maximum = _bound_text(item, EXT_MIN_VALUE), _bound_text(item, EXT_MAX_VALUE)
        if field_type == "slider" and (minimum, maximum) == ("0", "100"):
            minimum, maximum = "", ""  # REDCap's own slider range
        values[f.MINIMUM], values[f.MAXIMUM] = minimum, maximum
        identifier = _extension(item, EXT_IDENTIFIER)
        values[f.IDENTIFIER] = "y" if identifier and identifier.get("valueBoolean") else ""
        values[f.BRANCHING] = self.branching(item, stored, form, notes)
        values[f.REQUIRED] = "y" if item.get("required") else ""
        values[f.ALIGNMENT] = stored.get("alignment", "")
        values[f.QUESTION_NUMBER] = stored.get("questionNumber", "")
        values[f.MATRIX_GROUP] = stored.get("matrixGroup", "")
        values[f.MATRIX_RANKING] = stored.get("matrixRanking", "")
        values[f.ANNOTATION] = self.annotation(item, field_type, stored)
        return values

    def derive_type(self, item: dict, calculated: str | None, notes: list[str]) -> str | None:
        kind = item["type"]
        if kind == "choice":
            if item.get("repeats"):
                return "checkbox"
            return "radio" if _control(item) == "radio-button" else "dropdown"
        if kind == "open-choice":
            notes.append(
                "open-choice: REDCap has no free-text alternative to the choices (written as dropdown)"
            )
            return "dropdown"
        if kind == "decimal" and calculated is not None:
            return "calc"
        if kind == "quantity":
            notes.append("a quantity is written as a number: its unit is lost")
            return "text"
        if kind == "url":
            notes.append("a url is written as text")
            return "text"
        if kind == "reference":
            notes.append("a reference to another resource has no REDCap field type")
            return None
        return {
            "string": "text",
            "text": "notes",
            "integer": "text",
            "decimal": "text",
            "date": "text",
            "dateTime": "text",
            "time": "text",
            "boolean": "yesno",
            "display": "descriptive",
            "attachment": "file",
        }.get(kind)

    def validation(self, item: dict, field_type: str, stored: dict[str, str]) -> str:
        kind, validation = item["type"], stored.get("validation", "")
        if field_type in ("dropdown", "radio", "checkbox"):
            return "autocomplete" if _control(item) == "autocomplete" else ""
        if field_type in ("slider", "file"):
            return validation
        if field_type != "text":
            return ""
        allowed = {
            "date": f.DATE_VALIDATIONS,
            "dateTime": f.DATETIME_VALIDATIONS,
            "time": ("time",),
            "integer": ("integer",),
            "decimal": f.NUMBER_VALIDATIONS,
        }.get(kind)
        if allowed is not None:
            return validation if validation in allowed else _DEFAULT_VALIDATION[kind]
        if kind == "quantity":
            return "number"
        regex = _extension(item, EXT_REGEX)
        if regex is not None:
            named = [name for name, pattern in f.PATTERNS.items() if pattern == regex.get("valueString")]
            return named[0] if named else ""
        return validation if validation and validation not in f.PATTERNS else ""

    def choices(
        self,
        item: dict,
        field_type: str,
        stored: dict[str, str],
        form: str,
        calculated: str | None,
        notes: list[str],
    ) -> str:
        if field_type in ("dropdown", "radio", "checkbox"):
            parts = []
            for option in item.get("answerOption", []):
                coding = option.get("valueCoding")
                if coding is not None:
                    parts.append(f"{coding.get('code', '')}, {coding.get('display', coding.get('code', ''))}")
                else:
                    value = next(v for k, v in option.items() if k.startswith("value"))
                    parts.append(f"{value}, {value}")
            if item.get("answerValueSet"):
                notes.append("an answerValueSet is not written (REDCap needs the choices listed)")
            return " | ".join(parts)
        if field_type in ("slider", "sql"):
            return stored.get("sliderLabels", "")
        if field_type == "calc":
            source = stored.get("calculation", "")
            if source and calculated is not None:
                try:
                    if to_fhirpath_value(parse_logic(source), self.kind_of(form, [])) == calculated:
                        return source
                except LogicError:
                    pass
            notes.append("the calculation is FHIRPath without a current REDCap source: not written")
            return ""
        return ""

    def branching(self, item: dict, stored: dict[str, str], form: str, notes: list[str]) -> str:
        enable_when = item.get("enableWhen", [])
        behavior = item.get("enableBehavior")
        expression = _expression(item, EXT_ENABLE_WHEN_EXPRESSION)
        source = stored.get("branchingLogic", "")
        if source:
            try:
                crossed: list[str] = []
                tree = parse_logic(source)
                converted = to_enable_when(tree, self.kind_of(form, crossed))
                if converted is not None and not crossed:
                    if expression is None and converted == (enable_when, behavior):
                        return source
                elif not enable_when and to_fhirpath_condition(tree, self.kind_of(form, [])) == expression:
                    return source
            except LogicError:
                pass
        if expression is not None:
            notes.append("the enableWhenExpression has no current REDCap source: not written")
            return ""
        if not enable_when:
            return ""
        return enable_when_to_logic(enable_when, behavior, lambda name: self.kinds.get(name, ("", ""))[1])

    def annotation(self, item: dict, field_type: str, stored: dict[str, str]) -> str:
        hidden_ext = _extension(item, EXT_HIDDEN)
        hidden = bool(hidden_ext and hidden_ext.get("valueBoolean"))
        read_only = bool(item.get("readOnly")) and field_type != "calc"
        default = ""
        for option in item.get("answerOption", []):
            if option.get("initialSelected") and "valueCoding" in option:
                default = option["valueCoding"].get("code", "")
        for initial in item.get("initial", []):
            for key, value in initial.items():
                if key == "valueBoolean":
                    default = "1" if value else "0"
                elif key.startswith("value"):
                    default = number_text(value) if isinstance(value, int | float) else str(value)
        source = stored.get("annotation", "")
        tags = action_tags(source)
        if (("HIDDEN" in tags), ("READONLY" in tags), tags.get("DEFAULT") or "") == (
            hidden,
            read_only,
            default,
        ):
            return source
        kept = source
        for tag in ("HIDDEN", "READONLY", "DEFAULT"):
            kept = _remove_tag(kept, tag)
        written = [*(["@HIDDEN"] if hidden else []), *([f'@DEFAULT="{default}"'] if default else [])]
        written += ["@READONLY"] if read_only else []
        return " ".join(part for part in [*written, kept.strip()] if part)


def _remove_tag(text: str, tag: str) -> str:
    return re.sub(rf"@{tag}(?:=(\"[^\"]*\"|'[^']*'|[^\s@]+))?", "", text)


def questionnaires_to_dictionary(questionnaires: Sequence[dict]) -> DictionaryExport:
    """A REDCap data dictionary of these Questionnaires (one REDCap form each), with a report per item."""
    return _Exporter(questionnaires).export()
