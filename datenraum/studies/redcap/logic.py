"""REDCap's logic language (branching logic and calculations) parsed once and translated two ways:
into R4 `enableWhen` where a condition is a plain list of comparisons joined by only `and` or only `or`,
and otherwise into FHIRPath (`enableWhenExpression`, `calculatedExpression`) following the forms'
answer convention (`datenraum.studies.fhirpath.answer_path`).

REDCap semantics kept in the FHIRPath:
- a blank field makes a calculation blank (FHIRPath's empty propagates); `"NaN"` is blank (`{}`);
- `[x] <> "v"` holds when x is blank (written `iif(x = v, false, true)`, since `{} != v` is empty);
- `[x] = ""` / `[x] <> ""` test blankness (`exists()`);
- codes of dropdown/radio fields are strings, and numbers in arithmetic (`toDecimal()`);
- `sum`, `mean`, `min`, `max` ignore blank arguments, and are blank when all are;
- `datediff(d1, d2, unit[, format][, signed])` is d2 - d1 in days (civil-day arithmetic on the date's
  text, identical in fhirpathpy and fhirpath.js), divided as REDCap does: "y" 365.2425 days, "M" 30.44
  days, "d", "h", "m", "s"; unsigned (absolute) unless the last argument is true.
Anything else (other functions, event-qualified fields `[event][field]`, smart variables) raises
`LogicError` saying what, so the caller reports the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from datenraum.studies.fhirpath import answer_path

# The kinds of fields a logic expression refers to (the dictionary's types after mapping).
CHOICE, CHECKBOX, BOOLEAN, INTEGER, DECIMAL, DATE, DATETIME, TIME, STRING = (
    "choice",
    "checkbox",
    "boolean",
    "integer",
    "decimal",
    "date",
    "dateTime",
    "time",
    "string",
)
MAX_LOGIC = 20_000


class LogicError(ValueError):
    """Logic that cannot be parsed or translated; the message says what (and where, as a character)."""


@dataclass(frozen=True)
class Field:
    name: str
    code: str | None  # a checkbox option: [field(code)]


@dataclass(frozen=True)
class Number:
    text: str


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Binary:
    op: str  # = <> < > <= >= + - * / ^
    left: Any
    right: Any


@dataclass(frozen=True)
class Negate:
    operand: Any


@dataclass(frozen=True)
class Logic:
    op: str  # and | or
    operands: tuple[Any, ...]


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<event>\[[A-Za-z0-9_-]+\]\s*(?=\[))
    | \[(?P<field>[A-Za-z][A-Za-z0-9_]*)(?:\((?P<code>[A-Za-z0-9_.-]+)\))?\]
    | (?P<number>\d+(?:\.\d+)?|\.\d+)
    | "(?P<dq>[^"]*)"
    | '(?P<sq>[^']*)'
    | (?P<op><>|!=|<=|>=|==|=|<|>|\+|-|\*|/|\^|,|\(|\))
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)


def _tokens(text: str) -> list[tuple[str, str, int]]:
    found = []
    position = 0
    stripped = text.rstrip()
    while position < len(stripped):
        match = _TOKEN.match(stripped, position)
        if match is None or match.end() == position:
            raise LogicError(
                f"cannot read {stripped[position : position + 20]!r} at character {position + 1}"
            )
        at = match.start() + len(match.group(0)) - len(match.group(0).lstrip()) + 1
        kind = match.lastgroup
        if kind == "event":
            raise LogicError(f"an event-qualified field {match.group('event').strip()} at character {at}")
        if kind == "code":
            kind = "field"
        if kind == "field":
            value = match.group("field") + ("(" + match.group("code") + ")" if match.group("code") else "")
        elif kind in ("dq", "sq"):
            kind, value = "text", match.group(kind)
        else:
            value = match.group(kind)
        if kind == "word" and value.lower() in ("and", "or"):
            kind, value = "op", value.lower()
        found.append((kind, value, at))
        position = match.end()
    return found


class _Parser:
    def __init__(self, text: str) -> None:
        if len(text) > MAX_LOGIC:
            raise LogicError(f"longer than {MAX_LOGIC} characters")
        self.tokens = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            raise LogicError("unexpected end" + (f", expected {value!r}" if value else ""))
        if value is not None and token[1] != value:
            raise LogicError(f"expected {value!r} at character {token[2]}, found {token[1]!r}")
        self.i += 1
        return token

    def parse(self) -> Any:
        node = self.logic("or")
        token = self.peek()
        if token is not None:
            raise LogicError(f"unexpected {token[1]!r} at character {token[2]}")
        return node

    def logic(self, op: str) -> Any:
        parts = [self.logic("and") if op == "or" else self.comparison()]
        while (token := self.peek()) is not None and token[1] == op:
            self.take()
            parts.append(self.logic("and") if op == "or" else self.comparison())
        if len(parts) == 1:
            return parts[0]
        flat: list[Any] = []
        for part in parts:
            flat.extend(part.operands if isinstance(part, Logic) and part.op == op else (part,))
        return Logic(op, tuple(flat))

    def comparison(self) -> Any:
        left = self.additive()
        token = self.peek()
        if (
            token is not None
            and token[0] == "op"
            and token[1] in ("=", "==", "<>", "!=", "<", ">", "<=", ">=")
        ):
            self.take()
            op = {"==": "=", "!=": "<>"}.get(token[1], token[1])
            return Binary(op, left, self.additive())
        return left

    def additive(self) -> Any:
        node = self.multiplicative()
        while (token := self.peek()) is not None and token[1] in ("+", "-"):
            self.take()
            node = Binary(token[1], node, self.multiplicative())
        return node

    def multiplicative(self) -> Any:
        node = self.power()
        while (token := self.peek()) is not None and token[1] in ("*", "/"):
            self.take()
            node = Binary(token[1], node, self.power())
        return node

    def power(self) -> Any:
        node = self.unary()
        if (token := self.peek()) is not None and token[1] == "^":
            self.take()
            return Binary("^", node, self.power())
        return node

    def unary(self) -> Any:
        token = self.peek()
        if token is not None and token[1] == "-":
            self.take()
            return Negate(self.unary())
        return self.primary()

    def primary(self) -> Any:
        kind, value, at = self.take()
        if kind == "field":
            name, _, code = value.partition("(")
            return Field(name, code[:-1] or None)
        if kind == "number":
            return Number(value)
        if kind == "text":
            return Text(value)
        if value == "(":
            node = self.logic("or")
            self.take(")")
            return node
        if kind == "word":
            if (token := self.peek()) is not None and token[1] == "(":
                self.take("(")
                args = []
                if (token := self.peek()) is not None and token[1] == ")":
                    self.take(")")
                    return Call(value.lower(), ())
                while True:
                    args.append(self.logic("or"))
                    if self.take()[1] == ")":
                        return Call(value.lower(), tuple(args))
            if value.lower() in ("true", "false"):
                return Text("1" if value.lower() == "true" else "0")
            raise LogicError(f"unknown name {value!r} at character {at}")
        raise LogicError(f"unexpected {value!r} at character {at}")


def parse_logic(text: str) -> Any:
    """The syntax tree of a REDCap branching logic or calculation."""
    if not text.strip():
        raise LogicError("empty logic")
    try:
        return _Parser(text).parse()
    except RecursionError:
        raise LogicError("nests too deeply") from None


def fields_of(node: Any) -> set[str]:
    """The field names a tree refers to."""
    if isinstance(node, Field):
        return {node.name}
    found: set[str] = set()
    for child in _children(node):
        found |= fields_of(child)
    return found


def _children(node: Any) -> tuple[Any, ...]:
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Negate):
        return (node.operand,)
    if isinstance(node, Logic):
        return node.operands
    if isinstance(node, Call):
        return node.args
    return ()


# --- enableWhen ------------------------------------------------------------------------------------

KindOf = Callable[[str], str]  # field name -> one of the kinds above; raises LogicError for an unknown field
_SWAP = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "=": "=", "<>": "<>"}
_DATE_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}\Z")


def to_enable_when(node: Any, kind_of: KindOf) -> tuple[list[dict], str | None] | None:
    """(enableWhen JSON list, enableBehavior or None), or None when enableWhen cannot say it."""
    operands = node.operands if isinstance(node, Logic) else (node,)
    if any(isinstance(part, Logic) for part in operands):
        return None  # `and` inside `or` (or the reverse): no single enableBehavior says it
    conditions = []
    for part in operands:
        condition = _condition(part, kind_of)
        if condition is None:
            return None
        conditions.append(condition)
    behavior = None if len(conditions) == 1 else ("all" if node.op == "and" else "any")
    return conditions, behavior


def _condition(node: Any, kind_of: KindOf) -> dict | None:
    if not isinstance(node, Binary) or node.op not in _SWAP:
        return None
    field, literal, op = node.left, node.right, node.op
    if isinstance(literal, Field) and not isinstance(field, Field):
        field, literal, op = literal, field, _SWAP[op]
    if not isinstance(field, Field) or not isinstance(literal, Number | Text):
        return None
    kind = kind_of(field.name)
    value = literal.text
    if value == "" and op in ("=", "<>") and field.code is None:
        return {"question": field.name, "operator": "exists", "answerBoolean": op == "<>"}
    if kind == CHECKBOX and field.code is not None and value in ("0", "1") and op in ("=", "<>"):
        checked = (value == "1") == (op == "=")
        return {
            "question": field.name,
            "operator": "=" if checked else "!=",
            "answerCoding": {"code": field.code},
        }
    if field.code is not None:
        return None
    fhir_op = "!=" if op == "<>" else op
    if kind == CHOICE and op in ("=", "<>"):
        return {"question": field.name, "operator": fhir_op, "answerCoding": {"code": value}}
    if kind == BOOLEAN and value in ("0", "1") and op in ("=", "<>"):
        return {"question": field.name, "operator": fhir_op, "answerBoolean": value == "1"}
    if kind == INTEGER and re.fullmatch(r"-?\d+", value):
        return {"question": field.name, "operator": fhir_op, "answerInteger": int(value)}
    if kind == DECIMAL and re.fullmatch(r"-?\d+(\.\d+)?", value):
        return {"question": field.name, "operator": fhir_op, "answerDecimal": float(value)}
    if kind == DATE and _DATE_TEXT.match(value):
        return {"question": field.name, "operator": fhir_op, "answerDate": value}
    if kind == STRING and op in ("=", "<>"):
        return {"question": field.name, "operator": fhir_op, "answerString": value}
    return None


def enable_when_to_logic(conditions: list[dict], behavior: str | None, kind_of: KindOf) -> str:
    """REDCap branching logic saying the same as an enableWhen list (the export direction)."""
    parts = []
    for condition in conditions:
        question, op = condition["question"], condition["operator"]
        answer_key = next(key for key in condition if key.startswith("answer"))
        answer = condition[answer_key]
        if op == "exists":
            parts.append(f'[{question}] {"<>" if answer else "="} ""')
            continue
        redcap_op = "<>" if op == "!=" else op
        if answer_key == "answerCoding":
            code = answer.get("code", "")
            if kind_of(question) == CHECKBOX:
                parts.append(f'[{question}({code})] = "{"1" if op == "=" else "0"}"')
            else:
                parts.append(f'[{question}] {redcap_op} "{code}"')
        elif answer_key == "answerBoolean":
            parts.append(f'[{question}] {redcap_op} "{1 if answer else 0}"')
        elif answer_key in ("answerInteger", "answerDecimal"):
            parts.append(f"[{question}] {redcap_op} {number_text(answer)}")
        else:
            parts.append(f'[{question}] {redcap_op} "{answer}"')
    return f" {'or' if behavior == 'any' else 'and'} ".join(parts)


def number_text(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --- FHIRPath --------------------------------------------------------------------------------------

NUMBER, CODE, STRING_T, DATE_T, LOGICAL, EMPTY = "number", "code", "string", "date", "logical", "empty"
_UNITS = {"y": " / 365.2425", "M": " / 30.44", "d": "", "h": " * 24", "m": " * 1440", "s": " * 86400"}

# Days since 1970-01-01 of the date text in $this (Howard Hinnant's days_from_civil, integer arithmetic
# only), plus the time of day as a fraction when the text has one ("YYYY-MM-DDThh:mm[:ss]").
_Y = "$this.substring(0, 4).toInteger()"
_M = "$this.substring(5, 2).toInteger()"
_D = "$this.substring(8, 2).toInteger()"
_YA = f"({_Y} - iif({_M} <= 2, 1, 0))"
_ERA = f"({_YA} div 400)"
_YOE = f"({_YA} - {_ERA} * 400)"
_DOY = f"((153 * iif({_M} > 2, {_M} - 3, {_M} + 9) + 2) div 5 + {_D} - 1)"
_DOE = f"({_YOE} * 365 + {_YOE} div 4 - {_YOE} div 100 + {_DOY})"
_TIME = (
    "iif($this.length() >= 16, ($this.substring(11, 2).toInteger() * 60 + $this.substring(14, 2).toInteger())"
    " / 1440 + iif($this.length() >= 19, $this.substring(17, 2).toInteger() / 86400, 0), 0)"
)
_DAYS = f"{_ERA} * 146097 + {_DOE} - 719468 + {_TIME}"


class _FhirPath:
    def __init__(self, kind_of: KindOf) -> None:
        self.kind_of = kind_of

    def condition(self, node: Any) -> str:
        text, kind = self.expr(node)
        if kind != LOGICAL:
            raise LogicError("the logic is not a condition (no comparison)")
        return text

    def expr(self, node: Any) -> tuple[str, str]:
        if isinstance(node, Field):
            return self.field(node)
        if isinstance(node, Number):
            return node.text, NUMBER
        if isinstance(node, Text):
            if node.text == "NaN":
                return "{}", EMPTY
            return _string_literal(node.text), STRING_T
        if isinstance(node, Negate):
            return f"(-{self.number(node.operand)})", NUMBER
        if isinstance(node, Logic):
            return "(" + f" {node.op} ".join(self.condition(part) for part in node.operands) + ")", LOGICAL
        if isinstance(node, Binary):
            if node.op in _SWAP:
                return self.compare(node), LOGICAL
            if node.op == "^":
                return f"({self.number(node.left)}).power({self.number(node.right)})", NUMBER
            return f"({self.number(node.left)} {node.op} {self.number(node.right)})", NUMBER
        if isinstance(node, Call):
            return self.call(node)
        raise LogicError(f"cannot translate {node!r}")

    def field(self, node: Field) -> tuple[str, str]:
        kind = self.kind_of(node.name)
        path = answer_path(node.name)
        if node.code is not None:
            if kind != CHECKBOX:
                raise LogicError(
                    f"[{node.name}({node.code})] names an option of a field that is not a checkbox"
                )
            return f"iif({path}.code contains {_string_literal(node.code)}, 1, 0)", NUMBER
        if kind in (CHOICE, CHECKBOX):
            return f"{path}.code", CODE
        if kind == BOOLEAN:
            return f"{path}.select(iif($this, 1, 0))", NUMBER
        if kind in (INTEGER, DECIMAL):
            return path, NUMBER
        if kind in (DATE, DATETIME):
            return path, DATE_T
        return path, STRING_T

    def number(self, node: Any) -> str:
        text, kind = self.expr(node)
        if kind in (NUMBER, EMPTY):
            return text
        if kind in (CODE, STRING_T):
            if isinstance(node, Text):
                if not re.fullmatch(r"-?\d+(\.\d+)?", node.text):
                    raise LogicError(f"{node.text!r} is not a number")
                return node.text
            return f"{text}.toDecimal()"
        raise LogicError(f"a {kind} is used as a number")

    def compare(self, node: Binary) -> str:
        left, right = node.left, node.right
        if (isinstance(right, Text) and right.text == "") or (isinstance(left, Text) and left.text == ""):
            other = left if isinstance(right, Text) and right.text == "" else right
            text, _ = self.expr(other)
            if node.op == "=":
                return f"{text}.exists().not()"
            if node.op == "<>":
                return f"{text}.exists()"
            raise LogicError(f"{node.op} with an empty text")
        (ltext, lkind), (rtext, rkind) = self.expr(left), self.expr(right)
        if NUMBER in (lkind, rkind) or node.op in ("<", ">", "<=", ">="):
            if DATE_T in (lkind, rkind):
                ltext, rtext = self.date_text(left, ltext, lkind), self.date_text(right, rtext, rkind)
            else:
                ltext, rtext = self.number(left), self.number(right)
        elif DATE_T in (lkind, rkind):
            ltext, rtext = self.date_text(left, ltext, lkind), self.date_text(right, rtext, rkind)
        elif CODE in (lkind, rkind):
            ltext = _string_literal(left.text) if isinstance(left, Number) else ltext
            rtext = _string_literal(right.text) if isinstance(right, Number) else rtext
        op = {"=": "=", "<>": "!="}.get(node.op, node.op)
        if op == "!=":
            return f"iif({ltext} = {rtext}, false, true)"
        return f"({ltext} {op} {rtext})"

    def date_text(self, node: Any, text: str, kind: str) -> str:
        if kind == DATE_T:
            return f"{text}.toString().substring(0, 10)" if not isinstance(node, Call) else text
        if isinstance(node, Text) and _DATE_TEXT.match(node.text):
            return _string_literal(node.text)
        raise LogicError("a date is compared with something that is not a date")

    def date(self, node: Any) -> str:
        if isinstance(node, Text) and node.text.lower() in ("today", "now"):
            return "today()" if node.text.lower() == "today" else "now()"
        text, kind = self.expr(node)
        if kind != DATE_T:
            raise LogicError("datediff() takes dates")
        return text

    def call(self, node: Call) -> tuple[str, str]:
        name, args = node.name, node.args

        def arity(low: int, high: int) -> None:
            if not low <= len(args) <= high:
                raise LogicError(
                    f"{name}() takes {low}" + (f" to {high}" if high != low else "") + " arguments"
                )

        if name == "if":
            arity(3, 3)
            condition = self.condition(args[0])
            (a, akind), (b, bkind) = self.expr(args[1]), self.expr(args[2])
            kind = akind if akind != EMPTY else bkind
            return f"iif({condition}, {a}, {b})", kind
        if name in ("round", "roundup", "rounddown"):
            arity(1, 2)
            places = 0
            if len(args) == 2:
                if not isinstance(args[1], Number) or not args[1].text.isdigit():
                    raise LogicError(f"{name}() takes a whole number of decimal places")
                places = int(args[1].text)
            value = self.number(args[0])
            scale = 10**places
            if name == "round":
                # Not FHIRPath's round(): fhirpathpy rounds half to even, fhirpath.js (and REDCap, and the
                # FHIRPath specification) half up; floor(x + 0.5) is the same in both.
                if places == 0:
                    return f"({value} + 0.5).floor()", NUMBER
                return f"(({value} * {scale} + 0.5).floor() / {scale})", NUMBER
            function = "ceiling" if name == "roundup" else "floor"
            if places == 0:
                return f"({value}).{function}()", NUMBER
            return f"(({value} * {scale}).{function}() / {scale})", NUMBER
        if name in ("abs", "sqrt"):
            arity(1, 1)
            return f"({self.number(args[0])}).{name}()", NUMBER
        if name in ("sum", "mean", "min", "max"):
            arity(1, 100)
            # toDecimal(): fhirpathpy's aggregates cannot add answer nodes, only plain numbers.
            combined = f"({self.number(args[0])}).toDecimal()"
            for arg in args[1:]:
                combined = f"{combined}.combine(({self.number(arg)}).toDecimal())"
            if name == "sum":
                return f"iif({combined}.exists(), {combined}.sum(), {{}})", NUMBER
            return f"{combined}.{'avg' if name == 'mean' else name}()", NUMBER
        if name == "datediff":
            arity(3, 5)
            unit = args[2]
            if not isinstance(unit, Text) or unit.text not in _UNITS:
                raise LogicError('datediff() takes the unit "y", "M", "d", "h", "m" or "s"')
            signed = (
                len(args) > 3
                and isinstance(args[-1], Text | Number)
                and args[-1].text.lower() in ("1", "true")
            )
            first, second = self.date(args[0]), self.date(args[1])
            difference = f"({_days(second)} - {_days(first)}){_UNITS[unit.text]}"
            return (f"({difference})" if signed else f"({difference}).abs()"), NUMBER
        raise LogicError(f"the function {name}() is not converted")


def _days(date: str) -> str:
    return f"{date}.toString().select({_DAYS})"


def _string_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def to_fhirpath_condition(node: Any, kind_of: KindOf) -> str:
    """A FHIRPath condition (for enableWhenExpression) saying what the branching logic says."""
    return _FhirPath(kind_of).condition(node)


def to_fhirpath_value(node: Any, kind_of: KindOf) -> str:
    """A FHIRPath value (for calculatedExpression) computing what the REDCap calculation computes."""
    text, kind = _FhirPath(kind_of).expr(node)
    if kind == LOGICAL:
        return f"iif({text}, 1, 0)"
    return text
