"""A REDCap data dictionary (CSV, 18 columns) -> one FHIR Questionnaire per REDCap form, with a
conversion report per field.

What cannot be read at all (broken CSV, a wrong header, a row with the wrong number of cells, a missing,
invalid or duplicate field name, unreadable choices) is a `RedcapError` naming file, line and column.
What can be read but not fully converted (an unknown field type or validation, logic outside the
supported subset, an unknown action tag) is converted as far as it goes and said in the field's
`FieldReport`. Field types: text (with its validation), notes, dropdown, radio, checkbox, yesno,
truefalse, calc, descriptive, slider, file, sql; see `fields.py` for the extensions we define.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from datenraum.studies.fhirpath import ExpressionError, compile_expression
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
    FormError,
    parse_questionnaire,
)
from datenraum.studies.redcap import fields as f
from datenraum.studies.redcap.csvtext import RedcapError, Row, read_rows
from datenraum.studies.redcap.logic import (
    LogicError,
    parse_logic,
    to_enable_when,
    to_fhirpath_condition,
    to_fhirpath_value,
)

CONVERTED, PARTIAL, NOT_CONVERTED = "converted", "partial", "not converted"
_ACTION_TAG = re.compile(r"@([A-Z][A-Z0-9_-]*)(?:=(\"[^\"]*\"|'[^']*'|[^\s@]+))?")


@dataclass(frozen=True)
class FieldReport:
    """How one dictionary field was converted: `status` converted | partial | not converted, the item
    type it became (None: no item), and a note per thing not (fully) converted."""

    field: str
    form: str
    line: int
    status: str
    item_type: str | None
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "form": self.form,
            "line": self.line,
            "status": self.status,
            "itemType": self.item_type,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class DictionaryConversion:
    questionnaires: tuple[dict, ...]  # Questionnaire JSON, one per form, in the dictionary's order
    report: tuple[FieldReport, ...]  # one per field, in the dictionary's order


@dataclass(frozen=True)
class _Field:
    name: str
    form: str
    row: Row
    item_type: str | None
    repeats: bool


def _header(rows: list[Row], source: str) -> None:
    if not rows:
        raise RedcapError(source, None, None, "the file is empty: a data dictionary has a header row")
    header = rows[0]
    for index, expected in enumerate(f.COLUMNS):
        if index >= len(header.cells):
            raise RedcapError(
                source, header.line, None, f"the header has {len(header.cells)} columns, not 18"
            )
        cell = header.cells[index]
        if " ".join(cell.text.split()).lower() != expected.lower():
            raise RedcapError(
                source,
                cell.line,
                cell.column,
                f"column {index + 1} is {cell.text[:60]!r}, expected {expected!r}",
            )
    if len(header.cells) != len(f.COLUMNS):
        extra = header.cells[len(f.COLUMNS)]
        raise RedcapError(
            source, extra.line, extra.column, f"the header has {len(header.cells)} columns, not 18"
        )


def _item_type(row: Row) -> tuple[str | None, bool]:
    kind, validation = row.values[f.TYPE], row.values[f.VALIDATION]
    if kind == "text":
        if validation in f.DATE_VALIDATIONS:
            return "date", False
        if validation in f.DATETIME_VALIDATIONS:
            return "dateTime", False
        if validation == "time":
            return "time", False
        if validation == "integer":
            return "integer", False
        if validation in f.NUMBER_VALIDATIONS:
            return "decimal", False
        return "string", False
    return {
        "notes": ("text", False),
        "dropdown": ("choice", False),
        "radio": ("choice", False),
        "checkbox": ("choice", True),
        "yesno": ("boolean", False),
        "truefalse": ("boolean", False),
        "calc": ("decimal", False),
        "descriptive": ("display", False),
        "slider": ("integer", False),
        "file": ("attachment", False),
        "sql": ("string", False),
    }.get(kind, (None, False))


def _choices(row: Row, source: str) -> list[tuple[str, str]]:
    cell = row.cells[f.CHOICES]
    if not cell.text.strip():
        raise RedcapError(
            source, cell.line, cell.column, f"a {row.values[f.TYPE]} field needs choices 'code, label | ...'"
        )
    options = []
    for part in cell.text.split("|"):
        code, comma, label = part.partition(",")
        if not comma or not code.strip():
            raise RedcapError(
                source, cell.line, cell.column, f"the choice {part.strip()[:40]!r} is not 'code, label'"
            )
        code = code.strip()
        if not re.fullmatch(r"[A-Za-z0-9._-]+", code):
            raise RedcapError(
                source, cell.line, cell.column, f"the choice code {code[:40]!r} has characters REDCap refuses"
            )
        if any(code == seen for seen, _ in options):
            raise RedcapError(source, cell.line, cell.column, f"the choice code {code!r} occurs twice")
        options.append((code, label.strip()))
    return options


def action_tags(annotation: str) -> dict[str, str | None]:
    tags: dict[str, str | None] = {}
    for match in _ACTION_TAG.finditer(annotation):
        value = match.group(2)
        if value is not None and value[:1] in ('"', "'"):
            value = value[1:-1]
        tags[match.group(1)] = value
    return tags


def _sub(name: str, value: str) -> dict:
    return {"url": name, "valueString": value}


def _control(code: str) -> dict:
    return {
        "url": EXT_ITEM_CONTROL,
        "valueCodeableConcept": {"coding": [{"system": f.ITEM_CONTROL_SYSTEM, "code": code}]},
    }


class _Converter:
    def __init__(self, rows: list[Row], source: str, base_url: str) -> None:
        self.source = source
        self.base_url = base_url
        self.fields: dict[str, _Field] = {}
        self.forms: dict[str, list[_Field]] = {}
        for row in rows:
            self.read_row(row)

    def error(self, row: Row, column: int, message: str) -> RedcapError:
        cell = row.cells[column]
        return RedcapError(self.source, cell.line, cell.column, message)

    def read_row(self, row: Row) -> None:
        if len(row.cells) != len(f.COLUMNS):
            raise RedcapError(self.source, row.line, None, f"the row has {len(row.cells)} cells, not 18")
        name, form = row.values[f.FIELD].strip(), row.values[f.FORM].strip()
        if not f.FIELD_NAME.match(name):
            raise self.error(row, f.FIELD, f"{name[:60]!r} is not a REDCap variable name (a-z, 0-9, _)")
        if name in self.fields:
            other = self.fields[name].row.line
            raise self.error(row, f.FIELD, f"the field {name!r} is defined twice (also on line {other})")
        if not f.FORM_NAME.match(form):
            raise self.error(row, f.FORM, f"{form[:60]!r} is not a REDCap form name (a-z, 0-9, _)")
        item_type, repeats = _item_type(row)
        field = _Field(name, form, row, item_type, repeats)
        self.fields[name] = field
        self.forms.setdefault(form, []).append(field)

    def kind_of(self, form: str, copies: dict[str, _Field]) -> Any:
        def kind(name: str) -> str:
            field = self.fields.get(name)
            if field is None:
                raise LogicError(f"[{name}] is not a field of this dictionary")
            if field.item_type is None or field.item_type == "display":
                raise LogicError(f"[{name}] has no value")
            if field.form != form:
                copies[name] = field
            return f.logic_kind(field.item_type, field.repeats)

        return kind

    def convert(self) -> DictionaryConversion:
        questionnaires, reports = [], []
        for form, members in self.forms.items():
            copies: dict[str, _Field] = {}
            items: list[dict] = []
            for field in members:
                notes: list[str] = []
                item = self.item(field, copies, notes)
                section = field.row.values[f.SECTION].strip()
                if section:
                    items.append(
                        {"linkId": field.name + f.SECTION_SUFFIX, "type": "display", "text": section}
                    )
                status = CONVERTED
                if item is None:
                    status = NOT_CONVERTED
                else:
                    items.append(item)
                    status = PARTIAL if notes else CONVERTED
                reports.append(
                    FieldReport(field.name, form, field.row.line, status, item and item["type"], tuple(notes))
                )
            for field in copies.values():
                copy = self.item(field, {}, [], copy=True)
                assert copy is not None
                items.append(copy)
            questionnaire = {
                "resourceType": "Questionnaire",
                "id": form.replace("_", "-")[:64],
                "url": self.base_url + form,
                "version": "1",
                "name": form,
                "title": form.replace("_", " ").capitalize(),
                "status": "draft",
                "item": items,
            }
            try:
                parse_questionnaire(questionnaire)
            except FormError as error:  # a converter fault, not the dictionary's: say which form
                raise RedcapError(
                    self.source, None, None, f"form {form}: the converted Questionnaire is invalid: {error}"
                ) from None
            questionnaires.append(questionnaire)
        return DictionaryConversion(tuple(questionnaires), tuple(reports))

    def item(
        self, field: _Field, copies: dict[str, _Field], notes: list[str], copy: bool = False
    ) -> dict | None:
        row, values = field.row, field.row.values
        redcap_type = values[f.TYPE]
        if field.item_type is None:
            notes.append(f"the field type {redcap_type!r} has no Questionnaire equivalent")
            return None
        item: dict[str, Any] = {"linkId": field.name, "type": field.item_type}
        label = values[f.LABEL]
        if label.strip():
            item["text"] = label
        extensions: list[dict] = []
        redcap: list[dict] = [_sub("fieldType", redcap_type)]
        validation = values[f.VALIDATION].strip()
        if copy:
            other_form = self.base_url + field.form
            item.pop("text", None)
            item["text"] = f"{label.strip() or field.name} (from the form {field.form})"
            item["readOnly"] = True
            item["extension"] = [
                {"url": EXT_HIDDEN, "valueBoolean": True},
                {"url": EXT_COPIED_FROM, "valueCanonical": other_form},
            ]
            if field.repeats:
                item["repeats"] = True
            if redcap_type in f.CHOICE_TYPES:
                item["answerOption"] = [
                    {"valueCoding": {"code": code, "display": label}}
                    for code, label in _choices(row, self.source)
                ]
            return item
        if field.repeats:
            item["repeats"] = True
        if redcap_type in f.CHOICE_TYPES:
            item["answerOption"] = [
                {"valueCoding": {"code": code, "display": label}}
                for code, label in _choices(row, self.source)
            ]
            control = "autocomplete" if validation == "autocomplete" else f.ITEM_CONTROLS[redcap_type]
            extensions.append(_control(control))
        if redcap_type == "slider":
            extensions.append(_control("slider"))
            if values[f.CHOICES].strip():
                redcap.append(_sub("sliderLabels", values[f.CHOICES]))
        if redcap_type == "sql":
            notes.append("a sql field's choices come from a database query: it became a text item")
            redcap.append(_sub("sliderLabels", values[f.CHOICES]))
        if validation:
            redcap.append(_sub("validation", validation))
            self.validation(field, item, extensions, validation, notes)
        self.bounds(field, extensions, notes)
        note = values[f.NOTE]
        if note.strip():
            extensions.append({"url": f.EXT_ENTRY_FORMAT, "valueString": note})
        if values[f.IDENTIFIER].strip().lower() == "y":
            extensions.append({"url": EXT_IDENTIFIER, "valueBoolean": True})
        if values[f.REQUIRED].strip().lower() == "y":
            item["required"] = True
        for column, name in (
            (f.ALIGNMENT, "alignment"),
            (f.QUESTION_NUMBER, "questionNumber"),
            (f.MATRIX_GROUP, "matrixGroup"),
            (f.MATRIX_RANKING, "matrixRanking"),
        ):
            if values[column].strip():
                redcap.append(_sub(name, values[column]))
        if values[f.MATRIX_GROUP].strip():
            notes.append("matrix groups are not rendered as a matrix (kept for the export)")
        if redcap_type == "calc":
            item["readOnly"] = True
            source = values[f.CHOICES]
            redcap.append(_sub("calculation", source))
            expression = self.logic(field, source, copies, notes, "calculation", condition=False)
            if expression is not None:
                extensions.append(
                    {
                        "url": EXT_CALCULATED_EXPRESSION,
                        "valueExpression": {
                            "language": "text/fhirpath",
                            "expression": expression,
                            "description": f"REDCap: {source.strip()}",
                        },
                    }
                )
        branching = values[f.BRANCHING]
        if branching.strip():
            redcap.append(_sub("branchingLogic", branching))
            self.branching(field, item, extensions, branching, copies, notes)
        annotation = values[f.ANNOTATION]
        if annotation.strip():
            redcap.append(_sub("annotation", annotation))
            self.annotation(field, item, extensions, annotation, notes)
        extensions.append({"url": f.EXT_REDCAP_FIELD, "extension": redcap})
        item["extension"] = extensions
        return item

    def validation(
        self, field: _Field, item: dict, extensions: list[dict], validation: str, notes: list[str]
    ) -> None:
        redcap_type = field.row.values[f.TYPE]
        if redcap_type in f.CHOICE_TYPES and validation == "autocomplete":
            return
        if redcap_type == "slider" and validation == "number":
            return  # "show the slider's number": presentation
        if redcap_type == "file" and validation == "signature":
            extensions.append(_control("signature"))
            notes.append(
                "a signature is an attachment (the item control 'signature' is ours, lforms ignores it)"
            )
            return
        if redcap_type != "text":
            notes.append(f"the validation {validation!r} of a {redcap_type} field is not converted")
            return
        if validation in f.PATTERNS:
            extensions.append({"url": EXT_REGEX, "valueString": f.PATTERNS[validation]})
        elif places := f.decimal_places(validation):
            extensions.append({"url": f.EXT_MAX_DECIMAL_PLACES, "valueInteger": places})
        elif (
            validation not in f.DATE_VALIDATIONS + f.DATETIME_VALIDATIONS + f.NUMBER_VALIDATIONS
            and validation not in ("integer", "time")
        ):
            notes.append(f"the validation {validation!r} is not converted: the field takes any text")

    def bounds(self, field: _Field, extensions: list[dict], notes: list[str]) -> None:
        item_type = field.item_type
        values = field.row.values
        for column, url, name in (
            (f.MINIMUM, EXT_MIN_VALUE, "minimum"),
            (f.MAXIMUM, EXT_MAX_VALUE, "maximum"),
        ):
            text = values[column].strip()
            if not text:
                continue
            bound = _bound(item_type, text)
            if values[f.TYPE] == "slider" and bound is None:
                bound = _bound("integer", text)
            if bound is None:
                notes.append(f"the {name} {text!r} is not converted (not a fixed {item_type} value)")
            else:
                extensions.append({"url": url, **bound})
        if values[f.TYPE] == "slider":
            present = {e["url"] for e in extensions}
            if EXT_MIN_VALUE not in present:
                extensions.append({"url": EXT_MIN_VALUE, "valueInteger": 0})
            if EXT_MAX_VALUE not in present:
                extensions.append({"url": EXT_MAX_VALUE, "valueInteger": 100})

    def logic(
        self,
        field: _Field,
        text: str,
        copies: dict[str, _Field],
        notes: list[str],
        what: str,
        condition: bool,
    ) -> str | None:
        found: dict[str, _Field] = {}
        try:
            tree = parse_logic(text)
            kind_of = self.kind_of(field.form, found)
            expression = (
                to_fhirpath_condition(tree, kind_of) if condition else to_fhirpath_value(tree, kind_of)
            )
            compile_expression(expression)
        except (LogicError, ExpressionError) as error:
            notes.append(f"the {what} is not converted: {error}")
            return None
        copies.update(found)
        if found:
            notes.append(
                f"the {what} reads {', '.join(sorted(found))} of another form: a hidden copy item holds the value"
            )
        return expression

    def branching(
        self,
        field: _Field,
        item: dict,
        extensions: list[dict],
        text: str,
        copies: dict[str, _Field],
        notes: list[str],
    ) -> None:
        found: dict[str, _Field] = {}
        try:
            tree = parse_logic(text)
            converted = to_enable_when(tree, self.kind_of(field.form, found))
        except LogicError as error:
            notes.append(f"the branching logic is not converted: {error}")
            return
        if converted is not None and not found:
            conditions, behavior = converted
            item["enableWhen"] = conditions
            if behavior is not None:
                item["enableBehavior"] = behavior
            return
        expression = self.logic(field, text, copies, notes, "branching logic", condition=True)
        if expression is not None:
            extensions.append(
                {
                    "url": EXT_ENABLE_WHEN_EXPRESSION,
                    "valueExpression": {
                        "language": "text/fhirpath",
                        "expression": expression,
                        "description": f"REDCap: {text.strip()}",
                    },
                }
            )

    def annotation(
        self, field: _Field, item: dict, extensions: list[dict], text: str, notes: list[str]
    ) -> None:
        tags = action_tags(text)
        for tag in tags:
            if tag not in ("HIDDEN", "DEFAULT", "READONLY", "HIDEBUTTON"):
                notes.append(f"the action tag @{tag} is not converted (kept for the export)")
        if "HIDDEN" in tags:
            extensions.append({"url": EXT_HIDDEN, "valueBoolean": True})
        if "READONLY" in tags:
            item["readOnly"] = True
        default = tags.get("DEFAULT")
        if default:
            self.default(field, item, default, notes)

    def default(self, field: _Field, item: dict, default: str, notes: list[str]) -> None:
        if field.row.values[f.TYPE] == "calc":
            notes.append("@DEFAULT on a calculated field is not converted")
            return
        if "answerOption" in item:
            for option in item["answerOption"]:
                if option["valueCoding"]["code"] == default:
                    option["initialSelected"] = True
                    return
            notes.append(f"@DEFAULT={default!r} is not one of the choices")
            return
        initial = _initial(item["type"], field.row.values[f.TYPE], default)
        if initial is None:
            notes.append(f"@DEFAULT={default!r} is not converted (not a fixed {item['type']} value)")
        else:
            item["initial"] = [initial]


def _bound(item_type: str | None, text: str) -> dict | None:
    if item_type == "integer" and re.fullmatch(r"-?\d+", text):
        return {"valueInteger": int(text)}
    if item_type == "decimal" and re.fullmatch(r"-?\d+([.,]\d+)?", text):
        return {"valueDecimal": float(text.replace(",", "."))}
    if item_type == "date" and re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return {"valueDate": text}
    return None


def _initial(item_type: str, redcap_type: str, text: str) -> dict | None:
    if item_type == "boolean" and text in ("0", "1"):
        return {"valueBoolean": text == "1"}
    if item_type in ("string", "text"):
        return {"valueString": text}
    bound = _bound(item_type, text)
    return bound


def dictionary_to_questionnaires(
    text: str, source: str, base_url: str = f.DEFAULT_BASE_URL
) -> DictionaryConversion:
    """Convert a REDCap data dictionary (the CSV's text; `source` names it in errors)."""
    rows = read_rows(text, source)
    _header(rows, source)
    if len(rows) == 1:
        raise RedcapError(source, rows[0].line, None, "the dictionary has no fields")
    return _Converter(rows[1:], source, base_url).convert()


def field_index(questionnaires: Mapping[str, dict]) -> dict[str, tuple[str, dict]]:
    """linkId -> (form name, item JSON) of every field item (not section headers, not copies)."""
    found: dict[str, tuple[str, dict]] = {}
    for form, questionnaire in questionnaires.items():
        for item in questionnaire.get("item", []):
            if item["linkId"].endswith(f.SECTION_SUFFIX) or _is_copy(item):
                continue
            found[item["linkId"]] = (form, item)
    return found


def _is_copy(item: dict) -> bool:
    return any(e.get("url") == EXT_COPIED_FROM for e in item.get("extension", []))
