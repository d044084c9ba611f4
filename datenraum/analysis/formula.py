"""Model formulas (`y ~ x1 + factor(x2) + x1:x3`) parsed into a `ModelSpec`, without `eval`.

The hub parses the formula; only the spec travels to the sites, which build the design matrix from it
(`datenraum.analysis.design`). Grammar (R's, the part that analyses need):

    formula  := response "~" sum
    sum      := product (("+" | "-") product)*
    product  := inter ("*" inter)*            a*b = a + b + a:b
    inter    := atom (":" atom)*              a:b = the product of a and b (an interaction)
    atom     := NAME | TRANSFORM "(" NAME ")" | "(" sum ")" | "1" | "0" | "offset(" atom ")"

`- 1` or `+ 0` drops the intercept, `- a` drops a term. Names are `[A-Za-z_.][A-Za-z0-9_.]*` or quoted
in backticks. TRANSFORMS is the whole whitelist; anything else is a `FormulaError` naming the position.
As in R, terms are ordered by degree (main effects, then two-way interactions, ...), each once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["TRANSFORMS", "FormulaError", "ModelSpec", "Term", "Var", "parse_formula", "parse_variable"]

#: Transforms a formula (and a variable reference) may apply; `factor` marks a categorical variable.
TRANSFORMS = ("log", "log1p", "log2", "log10", "exp", "sqrt", "abs", "square", "factor")
MAX_NAME = 80
MAX_FORMULA = 2000
MAX_TERMS = 200


class FormulaError(ValueError):
    """A formula or model spec that cannot be used; the text says where and why."""


@dataclass(frozen=True, order=True)
class Var:
    """A variable of the analysis table, optionally through one whitelisted transform."""

    name: str
    transform: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not 0 < len(self.name) <= MAX_NAME or "\n" in self.name:
            raise FormulaError(f"variable name must be 1 to {MAX_NAME} characters on one line")
        if self.transform is not None and self.transform not in TRANSFORMS:
            raise FormulaError(
                f"transform {self.transform!r} is not allowed (allowed: {', '.join(TRANSFORMS)})"
            )

    @property
    def is_factor(self) -> bool:
        return self.transform == "factor"

    @property
    def label(self) -> str:
        return self.name if self.transform is None else f"{self.transform}({self.name})"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "transform": self.transform}

    @classmethod
    def from_json(cls, body: Any) -> Var:
        if not isinstance(body, dict) or set(body) - {"name", "transform"}:
            raise FormulaError("variable: expected {name, transform}")
        return cls(body.get("name"), body.get("transform"))


Term = tuple[Var, ...]  # the variables multiplied in one term (one variable: a main effect)


@dataclass(frozen=True)
class ModelSpec:
    response: Var
    terms: tuple[Term, ...]
    intercept: bool = True
    offset: Var | None = None

    def __post_init__(self) -> None:
        if self.response.is_factor:
            raise FormulaError("the response cannot be a factor")
        if self.offset is not None and self.offset.is_factor:
            raise FormulaError("an offset cannot be a factor")
        if len(self.terms) > MAX_TERMS:
            raise FormulaError(f"at most {MAX_TERMS} terms")
        if not self.terms and not self.intercept:
            raise FormulaError("the model has no terms and no intercept")

    def variables(self) -> list[Var]:
        """Every variable the model reads (response, terms, offset), each once, in order."""
        seen: dict[Var, None] = {self.response: None}
        for term in self.terms:
            seen.update(dict.fromkeys(term))
        if self.offset is not None:
            seen[self.offset] = None
        return list(seen)

    def factors(self) -> list[str]:
        return sorted({v.name for term in self.terms for v in term if v.is_factor})

    def to_json(self) -> dict[str, Any]:
        return {
            "response": self.response.to_json(),
            "terms": [[v.to_json() for v in term] for term in self.terms],
            "intercept": self.intercept,
            "offset": self.offset.to_json() if self.offset else None,
        }

    @classmethod
    def from_json(cls, body: Any) -> ModelSpec:
        if not isinstance(body, dict) or set(body) - {"response", "terms", "intercept", "offset"}:
            raise FormulaError("model: expected {response, terms, intercept, offset}")
        terms = body.get("terms")
        if not isinstance(terms, list) or len(terms) > MAX_TERMS:
            raise FormulaError(f"model.terms: expected a list of at most {MAX_TERMS} terms")
        parsed = []
        for term in terms:
            if not isinstance(term, list) or not 0 < len(term) <= 4:
                raise FormulaError("model.terms: each term is a list of 1 to 4 variables")
            parsed.append(tuple(Var.from_json(v) for v in term))
        intercept = body.get("intercept", True)
        if not isinstance(intercept, bool):
            raise FormulaError("model.intercept: expected true or false")
        offset = body.get("offset")
        return cls(
            Var.from_json(body.get("response")),
            tuple(parsed),
            intercept,
            Var.from_json(offset) if offset is not None else None,
        )

    def formula(self) -> str:
        rhs = [":".join(v.label for v in term) for term in self.terms]
        if self.offset is not None:
            rhs.append(f"offset({self.offset.label})")
        if not self.intercept:
            rhs.append("0")
        return f"{self.response.label} ~ {' + '.join(rhs) or '1'}"


_TOKEN = re.compile(
    r"\s*(?:(?P<name>[A-Za-z_.][A-Za-z0-9_.]*)|`(?P<quoted>[^`\n]+)`|(?P<num>\d+)|(?P<op>[~+\-*:()]))"
)


def _tokens(text: str) -> list[tuple[str, str, int]]:
    tokens, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:
            raise FormulaError(f"formula: unexpected character {text[position:].strip()[0]!r} at {position}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        tokens.append(("name" if kind == "quoted" else kind, value, match.start(kind)))
        position = match.end()
    tokens.append(("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0
        self.offset: Var | None = None

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i]

    def take(self, value: str | None = None) -> tuple[str, str, int]:
        token = self.tokens[self.i]
        if value is not None and token[1] != value:
            shown = token[1] or "the end"
            raise FormulaError(f"formula: expected {value!r} at {token[2]}, found {shown!r}")
        self.i += 1
        return token

    def variable(self) -> Var:
        kind, value, at = self.take()
        if kind != "name":
            raise FormulaError(f"formula: expected a variable at {at}, found {value or 'the end'!r}")
        if self.peek()[1] != "(":
            return Var(value)
        if value not in TRANSFORMS:
            raise FormulaError(
                f"formula: {value!r} at {at} is not an allowed transform (allowed: {', '.join(TRANSFORMS)})"
            )
        self.take("(")
        inner_kind, inner, inner_at = self.take()
        if inner_kind != "name" or self.peek()[1] == "(":
            raise FormulaError(f"formula: {value}() at {at} takes one variable name (at {inner_at})")
        self.take(")")
        return Var(inner, value)

    # Each expression is (terms, intercept change): terms as an ordered dict of frozenset -> Term.
    def sum(self) -> tuple[dict[frozenset, Term], bool | None]:
        terms, intercept = self.product()
        while self.peek()[1] in ("+", "-"):
            sign = self.take()[1]
            more, more_intercept = self.product()
            if sign == "+":
                terms.update({k: v for k, v in more.items() if k not in terms})
                intercept = more_intercept if more_intercept is not None else intercept
            else:
                for key in more:
                    terms.pop(key, None)
                if more_intercept is not None:
                    intercept = not more_intercept
        return terms, intercept

    def product(self) -> tuple[dict[frozenset, Term], bool | None]:
        terms, intercept = self.inter()
        while self.peek()[1] == "*":
            at = self.take()[2]
            more, more_intercept = self.inter()
            if intercept is not None or more_intercept is not None:
                raise FormulaError(f"formula: '*' at {at} cannot take 0 or 1")
            crossed = dict(terms)
            crossed.update({k: v for k, v in more.items() if k not in crossed})
            for a in terms.values():
                for b in more.values():
                    key = frozenset(a) | frozenset(b)
                    crossed.setdefault(key, tuple(dict.fromkeys(a + b)))
            terms = crossed
        return terms, intercept

    def inter(self) -> tuple[dict[frozenset, Term], bool | None]:
        terms, intercept = self.atom()
        while self.peek()[1] == ":":
            at = self.take()[2]
            more, more_intercept = self.atom()
            if intercept is not None or more_intercept is not None:
                raise FormulaError(f"formula: ':' at {at} cannot take 0 or 1")
            terms = {
                frozenset(a) | frozenset(b): tuple(dict.fromkeys(a + b))
                for a in terms.values()
                for b in more.values()
            }
        return terms, intercept

    def atom(self) -> tuple[dict[frozenset, Term], bool | None]:
        kind, value, at = self.peek()
        if kind == "num":
            self.take()
            if value not in ("0", "1"):
                raise FormulaError(f"formula: only 0 or 1 may stand alone (at {at})")
            return {}, value == "1"
        if value == "(":
            self.take()
            inner = self.sum()
            self.take(")")
            return inner
        if kind == "name" and value == "offset" and self.tokens[self.i + 1][1] == "(":
            self.take()
            self.take("(")
            variable = self.variable()
            self.take(")")
            if self.offset is not None:
                raise FormulaError(f"formula: a second offset at {at}")
            self.offset = variable
            return {}, None
        variable = self.variable()
        return {frozenset([variable]): (variable,)}, None


def parse_variable(text: str) -> Var:
    """One variable reference (`age`, `log(dose)`), as in a formula; for weights and offsets."""
    parser = _Parser(text)
    variable = parser.variable()
    parser.take("")
    return variable


def parse_formula(text: str) -> ModelSpec:
    if not isinstance(text, str) or len(text) > MAX_FORMULA:
        raise FormulaError(f"formula: expected a text of at most {MAX_FORMULA} characters")
    parser = _Parser(text)
    response = parser.variable()
    parser.take("~")
    terms, intercept = parser.sum()
    if parser.peek()[0] != "end":
        _, value, at = parser.peek()
        raise FormulaError(f"formula: unexpected {value!r} at {at}")
    for term in terms.values():
        if len({v.name for v in term}) != len(term):
            raise FormulaError(f"formula: term {':'.join(v.label for v in term)} uses one variable twice")
        if response.name in {v.name for v in term}:
            raise FormulaError(f"formula: the response {response.name} is also a predictor")
    ordered = sorted(terms.values(), key=len)  # stable: by degree, then as written (R's order)
    return ModelSpec(response, tuple(ordered), intercept is not False, parser.offset)
