"""FHIR R4 Questionnaires (the SDC subset study forms use) as frozen values.

`parse_questionnaire` reads a Questionnaire's JSON and refuses what a form must not be: an unknown item
type, a duplicate linkId, an enableWhen on a question that does not exist, an expression that does not
compile (`datenraum.studies.fhirpath`), a value of the wrong type. Every refusal is a `FormError` with the
JSON path of the offending element, e.g. `$.item[3].item[0].enableWhen[0].question`.

Extensions other than the ones below are left alone (they stay in the stored JSON, which is the form's
definition; these values are what the server checks responses against).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from datenraum.studies.fhirpath import FHIRPATH, CompiledExpression, ExpressionError, compile_expression

SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/"
CORE = "http://hl7.org/fhir/StructureDefinition/"
EXT_HIDDEN = CORE + "questionnaire-hidden"
EXT_ITEM_CONTROL = CORE + "questionnaire-itemControl"
EXT_UNIT_OPTION = CORE + "questionnaire-unitOption"
EXT_UNIT = CORE + "questionnaire-unit"
EXT_MIN_VALUE = CORE + "minValue"
EXT_MAX_VALUE = CORE + "maxValue"
EXT_REGEX = CORE + "regex"
EXT_VARIABLE = CORE + "variable"
EXT_ENABLE_WHEN_EXPRESSION = SDC + "sdc-questionnaire-enableWhenExpression"
EXT_CALCULATED_EXPRESSION = SDC + "sdc-questionnaire-calculatedExpression"
EXT_INITIAL_EXPRESSION = SDC + "sdc-questionnaire-initialExpression"
EXT_OBSERVATION_EXTRACT = SDC + "sdc-questionnaire-observationExtract"
# Ours: a REDCap field marked "Identifier? y" (identifying data, removed by exports that de-identify).
EXT_IDENTIFIER = "https://datenraum.de/fhir/StructureDefinition/study-identifier-item"
# Ours: a hidden item holding the value of an item of another form (valueCanonical: that form's url; the
# linkId is the same) that an expression of this form reads; whoever builds the response fills it from
# the same participant's and visit's response to that form (see datenraum/studies/redcap/fields.py).
EXT_COPIED_FROM = "https://datenraum.de/fhir/StructureDefinition/study-item-copied-from"

# The R4 item types (http://hl7.org/fhir/R4/valueset-item-type.html) without the abstract "question".
ITEM_TYPES = frozenset(
    {
        "group",
        "display",
        "boolean",
        "decimal",
        "integer",
        "date",
        "dateTime",
        "time",
        "string",
        "text",
        "url",
        "choice",
        "open-choice",
        "attachment",
        "reference",
        "quantity",
    }
)
OPERATORS = frozenset({"exists", "=", "!=", ">", "<", ">=", "<="})
# The value[x] kinds of answers and their JSON shape (a Python type check).
_VALUE_KINDS: dict[str, tuple[type, ...]] = {
    "Boolean": (bool,),
    "Decimal": (int, float),
    "Integer": (int,),
    "Date": (str,),
    "DateTime": (str,),
    "Time": (str,),
    "String": (str,),
    "Uri": (str,),
    "Coding": (dict,),
    "Quantity": (dict,),
    "Reference": (dict,),
    "Attachment": (dict,),
}
# Which value kind an answer of each item type has (open-choice: a Coding or a String).
ANSWER_KINDS: dict[str, frozenset[str]] = {
    "boolean": frozenset({"Boolean"}),
    "decimal": frozenset({"Decimal"}),
    "integer": frozenset({"Integer"}),
    "date": frozenset({"Date"}),
    "dateTime": frozenset({"DateTime"}),
    "time": frozenset({"Time"}),
    "string": frozenset({"String"}),
    "text": frozenset({"String"}),
    "url": frozenset({"Uri"}),
    "choice": frozenset({"Coding"}),
    "open-choice": frozenset({"Coding", "String"}),
    "attachment": frozenset({"Attachment"}),
    "reference": frozenset({"Reference"}),
    "quantity": frozenset({"Quantity"}),
}
MAX_ITEMS = 20_000
MAX_DEPTH = 32


class FormError(ValueError):
    """A Questionnaire that is not a valid form: `path` is the JSON path, `message` says what is wrong."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class Coding:
    system: str | None
    code: str | None
    display: str | None

    def matches(self, other: Coding) -> bool:
        """Same concept: equal code, and equal system where both name one."""
        return self.code == other.code and (
            self.system is None or other.system is None or self.system == other.system
        )


@dataclass(frozen=True)
class Quantity:
    value: float | None
    unit: str | None
    system: str | None
    code: str | None


@dataclass(frozen=True)
class Value:
    """A FHIR value[x]: `kind` is the suffix ("Integer", "Coding", ...); `value` the JSON primitive, or a
    Coding / Quantity, or (Reference, Attachment) the JSON object as sorted (key, value) pairs."""

    kind: str
    value: Any

    @property
    def number(self) -> float | None:
        """The number of a Decimal, Integer or Quantity value (None otherwise)."""
        if self.kind in ("Decimal", "Integer"):
            return float(self.value)
        if self.kind == "Quantity":
            return self.value.value
        return None


@dataclass(frozen=True)
class Expression:
    """An SDC Expression (FHIRPath only: lforms evaluates nothing else). `name` is set for variables."""

    expression: str
    name: str | None
    description: str | None
    compiled: CompiledExpression = field(compare=False, repr=False)


@dataclass(frozen=True)
class EnableWhen:
    question: str
    operator: str
    answer: Value


@dataclass(frozen=True)
class AnswerOption:
    value: Value
    initial_selected: bool


@dataclass(frozen=True)
class Item:
    link_id: str
    type: str
    path: str  # the item's JSON path in the Questionnaire, for messages
    text: str | None
    prefix: str | None
    definition: str | None
    code: tuple[Coding, ...]
    required: bool
    repeats: bool
    read_only: bool
    max_length: int | None
    enable_when: tuple[EnableWhen, ...]
    enable_behavior: str | None  # "all" | "any"; required by R4 when there is more than one enableWhen
    enable_when_expression: Expression | None
    calculated_expression: Expression | None
    initial_expression: Expression | None
    variables: tuple[Expression, ...]
    hidden: bool
    item_control: str | None
    units: tuple[Coding, ...]  # unitOption (or the single questionnaire-unit)
    min_value: Value | None
    max_value: Value | None
    regex: str | None
    answer_options: tuple[AnswerOption, ...]
    answer_value_set: str | None
    value_set_codings: tuple[Coding, ...] | None  # the expansion of a contained answerValueSet
    initial: tuple[Value, ...]
    observation_extract: bool
    identifier: bool
    copied_from: str | None  # the canonical url of the form this item's value is copied from
    items: tuple[Item, ...]

    def walk(self) -> Iterator[Item]:
        """This item and every item below it, depth first."""
        yield self
        for child in self.items:
            yield from child.walk()


@dataclass(frozen=True)
class Questionnaire:
    url: str | None
    version: str | None
    name: str | None
    title: str | None
    status: str
    variables: tuple[Expression, ...]
    items: tuple[Item, ...]
    items_by_link_id: Mapping[str, Item] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        found = {item.link_id: item for top in self.items for item in top.walk()}
        object.__setattr__(self, "items_by_link_id", MappingProxyType(found))

    @property
    def canonical(self) -> str | None:
        """`url|version`, the reference a QuestionnaireResponse carries."""
        if self.url is None:
            return None
        return f"{self.url}|{self.version}" if self.version else self.url

    def walk(self) -> Iterator[Item]:
        for item in self.items:
            yield from item.walk()


# --- reading ---------------------------------------------------------------------------------------

_DATE = re.compile(r"[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?\Z")
_DATETIME = re.compile(
    r"[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01])(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)"
    r"(\.[0-9]+)?(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?\Z"
)
_TIME = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?\Z")
PRIMITIVE_PATTERNS: dict[str, re.Pattern[str]] = {"Date": _DATE, "DateTime": _DATETIME, "Time": _TIME}
MAX_STRING = 1_000_000


def value_error(kind: str, raw: Any) -> str | None:
    """Why `raw` is not a valid JSON value of the value[x] kind `kind` (None when it is)."""
    shape = _VALUE_KINDS.get(kind)
    if shape is None:
        return f"value{kind} is not a value type of Questionnaire answers"
    if isinstance(raw, bool) and bool not in shape:
        return f"value{kind} must be {_describe(kind)}, not a boolean"
    if not isinstance(raw, shape):
        return f"value{kind} must be {_describe(kind)}, not {type(raw).__name__}"
    if isinstance(raw, str):
        if len(raw) > MAX_STRING:
            return f"value{kind} is longer than {MAX_STRING} characters"
        pattern = PRIMITIVE_PATTERNS.get(kind)
        if pattern is not None and not pattern.match(raw):
            return f"value{kind} {raw[:40]!r} is not a FHIR {kind[0].lower() + kind[1:]}"
        if not raw.strip():
            return f"value{kind} is empty"
    if kind == "Coding" and not isinstance(raw.get("code"), str | None):
        return "valueCoding.code must be a string"
    if kind == "Quantity" and not isinstance(raw.get("value"), int | float | None):
        return "valueQuantity.value must be a number"
    if kind == "Quantity" and isinstance(raw.get("value"), bool):
        return "valueQuantity.value must be a number"
    return None


def _describe(kind: str) -> str:
    return {
        "Boolean": "true or false",
        "Decimal": "a number",
        "Integer": "a whole number",
        "Coding": "an object (Coding)",
        "Quantity": "an object (Quantity)",
        "Reference": "an object (Reference)",
        "Attachment": "an object (Attachment)",
    }.get(kind, "a string")


def make_value(kind: str, raw: Any) -> Value:
    """A Value from JSON already checked by `value_error`."""
    if kind == "Coding":
        return Value(kind, _coding(raw))
    if kind == "Quantity":
        number = raw.get("value")
        return Value(
            kind,
            Quantity(
                None if number is None else float(number), raw.get("unit"), raw.get("system"), raw.get("code")
            ),
        )
    if kind in ("Reference", "Attachment"):
        return Value(kind, tuple(sorted((k, str(v)) for k, v in raw.items())))
    if kind == "Decimal":
        return Value(kind, float(raw))
    return Value(kind, raw)


def _coding(raw: Mapping[str, Any]) -> Coding:
    def text(name: str) -> str | None:
        value = raw.get(name)
        return value if isinstance(value, str) else None

    return Coding(text("system"), text("code"), text("display"))


def value_of(element: Mapping[str, Any], prefix: str, path: str) -> Value | None:
    """The one `<prefix>[x]` of `element` (e.g. answerCoding, valueInteger) or None; two are an error."""
    found = [key for key in element if key.startswith(prefix) and key[len(prefix) :][:1].isupper()]
    if not found:
        return None
    if len(found) > 1:
        raise FormError(f"{path}", f"more than one {prefix}[x]: {', '.join(sorted(found))}")
    key = found[0]
    kind = key[len(prefix) :]
    problem = value_error(kind, element[key])
    if problem is not None:
        raise FormError(f"{path}.{key}", problem.replace(f"value{kind}", key, 1))
    return make_value(kind, element[key])


class _Reader:
    def __init__(self, contained: Mapping[str, tuple[Coding, ...]]) -> None:
        self.contained = contained
        self.seen: dict[str, str] = {}
        self.count = 0

    def items(self, raw: Any, path: str, depth: int, scope: frozenset[str]) -> tuple[Item, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raise FormError(path, "must be a list of items")
        if depth > MAX_DEPTH:
            raise FormError(path, f"items nest deeper than {MAX_DEPTH} levels")
        return tuple(self.item(entry, f"{path}[{i}]", depth, scope) for i, entry in enumerate(raw))

    def item(self, raw: Any, path: str, depth: int, scope: frozenset[str]) -> Item:
        self.count += 1
        if self.count > MAX_ITEMS:
            raise FormError(path, f"the form has more than {MAX_ITEMS} items")
        if not isinstance(raw, dict):
            raise FormError(path, "an item must be an object")
        link_id = _string(raw, "linkId", path, required=True)
        if link_id in self.seen:
            raise FormError(f"{path}.linkId", f"duplicate linkId {link_id!r} (also at {self.seen[link_id]})")
        self.seen[link_id] = path
        kind = _string(raw, "type", path, required=True)
        if kind not in ITEM_TYPES:
            raise FormError(f"{path}.type", f"unknown item type {kind!r}")
        extensions = _extensions(raw, path)
        variables = tuple(
            self.expression(ext, ext_path, scope, variable=True)
            for ext, ext_path in extensions.get(EXT_VARIABLE, ())
        )
        inner = scope | {v.name for v in variables if v.name}
        single = {
            url: _single(url, found)
            for url, found in extensions.items()
            if url != EXT_VARIABLE and url != EXT_UNIT_OPTION
        }

        def expression(url: str) -> Expression | None:
            found = single.get(url)
            return None if found is None else self.expression(found[0], found[1], inner)

        answer_value_set = _string(raw, "answerValueSet", path)
        value_set_codings = None
        if answer_value_set is not None and answer_value_set.startswith("#"):
            value_set_codings = self.contained.get(answer_value_set[1:])
            if value_set_codings is None:
                raise FormError(
                    f"{path}.answerValueSet", f"no contained ValueSet with an expansion {answer_value_set!r}"
                )
        answer_options = tuple(
            self.answer_option(option, f"{path}.answerOption[{i}]")
            for i, option in enumerate(_list(raw, "answerOption", path))
        )
        if answer_options and answer_value_set is not None:
            raise FormError(path, "an item has answerOption or answerValueSet, not both")
        units = [
            self.coding_extension(ext, ext_path) for ext, ext_path in extensions.get(EXT_UNIT_OPTION, ())
        ]
        if EXT_UNIT in single:
            units.append(self.coding_extension(*single[EXT_UNIT]))
        max_length = raw.get("maxLength")
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
        ):
            raise FormError(f"{path}.maxLength", "must be a positive whole number")
        enable_behavior = _string(raw, "enableBehavior", path)
        if enable_behavior not in (None, "all", "any"):
            raise FormError(f"{path}.enableBehavior", f"must be 'all' or 'any', not {enable_behavior!r}")
        enable_when = tuple(
            self.enable_when(entry, f"{path}.enableWhen[{i}]")
            for i, entry in enumerate(_list(raw, "enableWhen", path))
        )
        if len(enable_when) > 1 and enable_behavior is None:
            raise FormError(f"{path}.enableBehavior", "is required when an item has more than one enableWhen")
        regex = None
        if EXT_REGEX in single:
            regex_ext, regex_path = single[EXT_REGEX]
            regex = _extension_value(regex_ext, regex_path, "String")
            try:
                re.compile(regex)
            except re.error as error:
                raise FormError(f"{regex_path}.valueString", f"not a regular expression: {error}") from None
        calculated = expression(EXT_CALCULATED_EXPRESSION)
        initial = tuple(
            value
            for i, entry in enumerate(_list(raw, "initial", path))
            if (value := self.initial(entry, f"{path}.initial[{i}]")) is not None
        )
        if calculated is not None and initial:
            raise FormError(
                f"{path}.initial", "an item with a calculatedExpression has no initial value (SDC)"
            )
        if kind in ("group", "display") and (answer_options or initial or calculated is not None):
            raise FormError(
                path, f"a {kind} item has no answers, so no answerOption, initial or calculatedExpression"
            )
        return Item(
            link_id=link_id,
            type=kind,
            path=path,
            text=_string(raw, "text", path),
            prefix=_string(raw, "prefix", path),
            definition=_string(raw, "definition", path),
            code=tuple(self.coding(c, f"{path}.code[{i}]") for i, c in enumerate(_list(raw, "code", path))),
            required=_boolean(raw, "required", path),
            repeats=_boolean(raw, "repeats", path),
            read_only=_boolean(raw, "readOnly", path),
            max_length=max_length,
            enable_when=enable_when,
            enable_behavior=enable_behavior,
            enable_when_expression=expression(EXT_ENABLE_WHEN_EXPRESSION),
            calculated_expression=calculated,
            initial_expression=expression(EXT_INITIAL_EXPRESSION),
            variables=variables,
            hidden=_boolean_extension(single.get(EXT_HIDDEN)),
            item_control=self.item_control(single.get(EXT_ITEM_CONTROL)),
            units=tuple(units),
            min_value=_bound(single.get(EXT_MIN_VALUE)),
            max_value=_bound(single.get(EXT_MAX_VALUE)),
            regex=regex,
            answer_options=answer_options,
            answer_value_set=answer_value_set,
            value_set_codings=value_set_codings,
            initial=initial,
            observation_extract=_boolean_extension(single.get(EXT_OBSERVATION_EXTRACT)),
            identifier=_boolean_extension(single.get(EXT_IDENTIFIER)),
            copied_from=_canonical_extension(single.get(EXT_COPIED_FROM)),
            items=self.items(raw.get("item"), f"{path}.item", depth + 1, inner),
        )

    def expression(self, ext: dict, path: str, scope: frozenset[str], variable: bool = False) -> Expression:
        raw = ext.get("valueExpression")
        where = f"{path}.valueExpression"
        if not isinstance(raw, dict):
            raise FormError(where, "must be an Expression object")
        language = raw.get("language")
        if language != FHIRPATH:
            raise FormError(f"{where}.language", f"only {FHIRPATH} is evaluated, not {language!r}")
        text = raw.get("expression")
        if not isinstance(text, str):
            raise FormError(f"{where}.expression", "must be a string")
        name = raw.get("name")
        if variable and (not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name)):
            raise FormError(f"{where}.name", "a variable needs a name (letters, digits, _)")
        description = raw.get("description")
        try:
            compiled = compile_expression(text, scope)
        except ExpressionError as error:
            raise FormError(f"{where}.expression", str(error)) from None
        return Expression(
            text,
            name if isinstance(name, str) else None,
            description if isinstance(description, str) else None,
            compiled,
        )

    def enable_when(self, raw: Any, path: str) -> EnableWhen:
        if not isinstance(raw, dict):
            raise FormError(path, "must be an object")
        question = _string(raw, "question", path, required=True)
        operator = _string(raw, "operator", path, required=True)
        if operator not in OPERATORS:
            raise FormError(f"{path}.operator", f"unknown operator {operator!r}")
        answer = value_of(raw, "answer", path)
        if answer is None:
            raise FormError(path, "needs an answer[x]")
        if operator == "exists" and answer.kind != "Boolean":
            raise FormError(path, "operator 'exists' takes answerBoolean")
        return EnableWhen(question, operator, answer)

    def answer_option(self, raw: Any, path: str) -> AnswerOption:
        if not isinstance(raw, dict):
            raise FormError(path, "must be an object")
        value = value_of(raw, "value", path)
        if value is None or value.kind not in ("Integer", "Date", "Time", "String", "Coding", "Reference"):
            raise FormError(
                path, "needs a valueInteger, valueDate, valueTime, valueString, valueCoding or valueReference"
            )
        return AnswerOption(value, _boolean(raw, "initialSelected", path))

    def initial(self, raw: Any, path: str) -> Value | None:
        if not isinstance(raw, dict):
            raise FormError(path, "must be an object")
        value = value_of(raw, "value", path)
        if value is None:
            raise FormError(path, "needs a value[x]")
        return value

    def coding(self, raw: Any, path: str) -> Coding:
        if not isinstance(raw, dict):
            raise FormError(path, "must be a Coding object")
        for name in ("system", "code", "display"):
            _string(raw, name, path)
        return _coding(raw)

    def coding_extension(self, ext: dict, path: str) -> Coding:
        return self.coding(ext.get("valueCoding"), f"{path}.valueCoding")

    def item_control(self, found: tuple[dict, str] | None) -> str | None:
        if found is None:
            return None
        ext, path = found
        concept = ext.get("valueCodeableConcept")
        codings = concept.get("coding") if isinstance(concept, dict) else None
        if not isinstance(codings, list) or not codings:
            raise FormError(f"{path}.valueCodeableConcept", "must have a coding")
        return self.coding(codings[0], f"{path}.valueCodeableConcept.coding[0]").code


def _string(raw: Mapping[str, Any], name: str, path: str, required: bool = False) -> str | None:
    value = raw.get(name)
    if value is None:
        if required:
            raise FormError(f"{path}.{name}", "is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise FormError(f"{path}.{name}", "must be a non-empty string")
    if len(value) > MAX_STRING:
        raise FormError(f"{path}.{name}", f"is longer than {MAX_STRING} characters")
    return value


def _boolean(raw: Mapping[str, Any], name: str, path: str) -> bool:
    value = raw.get(name, False)
    if not isinstance(value, bool):
        raise FormError(f"{path}.{name}", "must be true or false")
    return value


def _list(raw: Mapping[str, Any], name: str, path: str) -> list[Any]:
    value = raw.get(name, [])
    if not isinstance(value, list):
        raise FormError(f"{path}.{name}", "must be a list")
    return value


def _extensions(raw: Mapping[str, Any], path: str) -> dict[str, list[tuple[dict, str]]]:
    found: dict[str, list[tuple[dict, str]]] = {}
    for i, ext in enumerate(_list(raw, "extension", path)):
        where = f"{path}.extension[{i}]"
        if not isinstance(ext, dict) or not isinstance(ext.get("url"), str):
            raise FormError(where, "an extension is an object with a url")
        found.setdefault(ext["url"], []).append((ext, where))
    return found


def _single(url: str, found: list[tuple[dict, str]]) -> tuple[dict, str]:
    if len(found) > 1:
        raise FormError(found[1][1], f"the extension {url} may occur once")
    return found[0]


def _extension_value(ext: dict, path: str, kind: str) -> Any:
    raw = ext.get(f"value{kind}")
    problem = value_error(kind, raw)
    if problem is not None:
        raise FormError(f"{path}.value{kind}", problem)
    return raw


def _boolean_extension(found: tuple[dict, str] | None) -> bool:
    return False if found is None else bool(_extension_value(found[0], found[1], "Boolean"))


def _canonical_extension(found: tuple[dict, str] | None) -> str | None:
    if found is None:
        return None
    value = found[0].get("valueCanonical")
    if not isinstance(value, str) or not value.strip():
        raise FormError(f"{found[1]}.valueCanonical", "must be the canonical url of a form")
    return value


def _bound(found: tuple[dict, str] | None) -> Value | None:
    if found is None:
        return None
    value = value_of(found[0], "value", found[1])
    if value is None or value.kind not in ("Integer", "Decimal", "Date", "DateTime", "Time", "Quantity"):
        raise FormError(
            found[1],
            "minValue/maxValue take valueInteger, valueDecimal, valueDate, valueDateTime, valueTime or valueQuantity",
        )
    return value


def _contained_expansions(raw: Mapping[str, Any]) -> dict[str, tuple[Coding, ...]]:
    found: dict[str, tuple[Coding, ...]] = {}
    for i, resource in enumerate(_list(raw, "contained", "$")):
        path = f"$.contained[{i}]"
        if not isinstance(resource, dict) or resource.get("resourceType") != "ValueSet":
            continue
        identifier = _string(resource, "id", path, required=True)
        expansion = resource.get("expansion")
        if not isinstance(expansion, dict):
            continue  # lforms needs the expansion; without one the value set cannot be checked here either
        contains = _list(expansion, "contains", f"{path}.expansion")
        codings = []
        for j, entry in enumerate(contains):
            if not isinstance(entry, dict):
                raise FormError(f"{path}.expansion.contains[{j}]", "must be an object")
            codings.append(_Reader({}).coding(entry, f"{path}.expansion.contains[{j}]"))
        found[identifier] = tuple(codings)
    return found


def parse_questionnaire(raw: Any) -> Questionnaire:
    """The form of a Questionnaire's JSON, or FormError(path, message)."""
    if not isinstance(raw, dict):
        raise FormError("$", "a Questionnaire must be a JSON object")
    if raw.get("resourceType") != "Questionnaire":
        raise FormError("$.resourceType", f"must be 'Questionnaire', not {raw.get('resourceType')!r}")
    status = _string(raw, "status", "$", required=True)
    if status not in ("draft", "active", "retired", "unknown"):
        raise FormError("$.status", f"must be draft, active, retired or unknown, not {status!r}")
    reader = _Reader(_contained_expansions(raw))
    extensions = _extensions(raw, "$")
    variables = tuple(
        reader.expression(ext, path, frozenset(), variable=True)
        for ext, path in extensions.get(EXT_VARIABLE, ())
    )
    scope = frozenset(v.name for v in variables if v.name)
    items = reader.items(raw.get("item"), "$.item", 0, scope)
    questionnaire = Questionnaire(
        url=_string(raw, "url", "$"),
        version=_string(raw, "version", "$"),
        name=_string(raw, "name", "$"),
        title=_string(raw, "title", "$"),
        status=status,
        variables=variables,
        items=items,
    )
    for item in questionnaire.walk():
        for i, condition in enumerate(item.enable_when):
            where = f"{item.path}.enableWhen[{i}].question"
            target = questionnaire.items_by_link_id.get(condition.question)
            if target is None:
                raise FormError(where, f"no item has the linkId {condition.question!r}")
            if target.type in ("group", "display"):
                raise FormError(where, f"{condition.question!r} is a {target.type} item, which has no answer")
    return questionnaire
