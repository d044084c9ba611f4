"""The analysis operations and their results as versioned, typed messages (hub <-> site).

Every request is `{"v": 1, "op": ..., "project": ..., "analyst": ..., "data": ..., "where": [...], ...}`
with the operation's own fields; `parse_request` checks every field and type and returns a frozen
value, or raises `MessageError` naming the field. Nothing in a message is evaluated: formulas arrive as
`ModelSpec`s (parsed on the hub), subsets as typed conditions, numbers as numbers.

A site's answer is `{"v": 1, "ok": true, "result": {...}}` or `{"v": 1, "ok": false, "error": {...}}`
where an error names `code`, `rule`, `threshold` and has `message_en` and `message_de`, never a value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from datenraum.analysis.formula import FormulaError, ModelSpec, Var
from datenraum.analysis.variables import VariableError, parse_definitions

__all__ = [
    "OPERATIONS",
    "VERSION",
    "Assign",
    "ByGroup",
    "Condition",
    "Cor",
    "CoxPh",
    "CoxStep",
    "DataRef",
    "Describe",
    "GlmLocal",
    "GlmPrepare",
    "GlmStep",
    "Km",
    "Lexis",
    "MessageError",
    "Quantiles",
    "Request",
    "Summary",
    "Table",
    "error_result",
    "ok_result",
    "parse_request",
]

VERSION = 1
MAX_TEXT = 200
MAX_VARIABLES = 50
MAX_PARAMETERS = 200
MAX_PROBS = 50
COMPARATORS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "not_null")


class MessageError(ValueError):
    """A message that does not follow the protocol: `field` says where."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def to_json(self) -> dict[str, Any]:
        return {
            "code": "bad_request",
            "rule": None,
            "threshold": None,
            "field": self.field,
            "message_en": f"invalid request: {self.field}: {self.problem}",
            "message_de": f"ungültige Anfrage: {self.field}: {self.problem}",
        }


def _text(body: dict, key: str, where: str, *, required: bool = True, maximum: int = MAX_TEXT) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= maximum:
        raise MessageError(f"{where}.{key}", f"expected a text of 1 to {maximum} characters")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MessageError(where, "expected a finite number")
    return float(value)


def _names(value: Any, where: str, minimum: int = 1, maximum: int = MAX_VARIABLES) -> tuple[str, ...]:
    if not isinstance(value, list) or not minimum <= len(value) <= maximum:
        raise MessageError(where, f"expected a list of {minimum} to {maximum} variable names")
    for item in value:
        if not isinstance(item, str) or not 0 < len(item) <= 80:
            raise MessageError(where, "expected variable names of 1 to 80 characters")
    if len(set(value)) != len(value):
        raise MessageError(where, "a variable is named twice")
    return tuple(value)


def _var(value: Any, where: str) -> Var:
    try:
        return Var.from_json(value)
    except FormulaError as error:
        raise MessageError(where, str(error)) from None


@dataclass(frozen=True)
class Lexis:
    """Split the rows at bins of `bin_width` days of `time` (with `event`): the piecewise-exponential
    model's rows (`datenraum.site.analysis.lexis`)."""

    time: str
    event: str
    bin_width: float

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "event": self.event, "bin_width": self.bin_width}

    @classmethod
    def from_json(cls, body: Any) -> Lexis:
        if not isinstance(body, dict) or set(body) != {"time", "event", "bin_width"}:
            raise MessageError("data.lexis", "expected {time, event, bin_width}")
        width = _number(body["bin_width"], "data.lexis.bin_width")
        if width <= 0:
            raise MessageError("data.lexis.bin_width", "expected a positive bin width")
        return cls(
            _text(body, "time", "data.lexis", maximum=80),
            _text(body, "event", "data.lexis", maximum=80),
            width,
        )


@dataclass(frozen=True)
class DataRef:
    """Which rows: a table of the site (development, tests: a CSV/Parquet file) or a cohort of the store
    (a CCDL query) with variable definitions."""

    table: str | None = None
    cohort: dict | None = None
    variables: dict | None = None
    subset: str | None = None  # a subset of the analyst's workspace at the site (op "assign")
    lexis: Lexis | None = None  # the rows split at bins of survival time

    def to_json(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in (
                ("table", self.table),
                ("cohort", self.cohort),
                ("variables", self.variables),
                ("subset", self.subset),
                ("lexis", self.lexis.to_json() if self.lexis else None),
            )
            if v is not None
        }

    @classmethod
    def from_json(cls, body: Any) -> DataRef:
        if not isinstance(body, dict) or set(body) - {"table", "cohort", "variables", "subset", "lexis"}:
            raise MessageError("data", "expected {table} or {cohort, variables}, and optionally a subset")
        lexis = Lexis.from_json(body["lexis"]) if "lexis" in body else None
        body = {k: v for k, v in body.items() if k != "lexis"}
        subset = None
        if "subset" in body:
            subset = _text(body, "subset", "data", maximum=40)
            body = {k: v for k, v in body.items() if k != "subset"}
        if "table" in body:
            if set(body) != {"table"}:
                raise MessageError("data", "a table needs no cohort or variables")
            return cls(table=_text(body, "table", "data"), subset=subset, lexis=lexis)
        cohort, variables = body.get("cohort"), body.get("variables")
        if not isinstance(cohort, dict) or not isinstance(variables, dict) or not variables:
            raise MessageError("data", "expected {cohort: <CCDL query>, variables: {name: definition}}")
        try:
            parse_definitions(variables)
        except VariableError as error:
            raise MessageError("data." + str(error).split(":")[0], str(error).split(": ", 1)[-1]) from None
        return cls(cohort=cohort, variables=variables, subset=subset, lexis=lexis)


@dataclass(frozen=True)
class Condition:
    """One row filter of a subset: `variable comparator value` (conditions of a request are ANDed)."""

    variable: str
    comparator: str
    value: Any = None

    def to_json(self) -> dict[str, Any]:
        return {"variable": self.variable, "comparator": self.comparator, "value": self.value}

    @classmethod
    def from_json(cls, body: Any, where: str) -> Condition:
        if not isinstance(body, dict) or set(body) - {"variable", "comparator", "value"}:
            raise MessageError(where, "expected {variable, comparator, value}")
        variable = _text(body, "variable", where, maximum=80)
        comparator = body.get("comparator")
        if comparator not in COMPARATORS:
            raise MessageError(f"{where}.comparator", f"expected one of {', '.join(COMPARATORS)}")
        value = body.get("value")
        if comparator == "in":
            if not isinstance(value, list) or not 0 < len(value) <= 100:
                raise MessageError(f"{where}.value", "expected a list of 1 to 100 values")
            for item in value:
                if not isinstance(item, str):
                    _number(item, f"{where}.value")
        elif comparator == "not_null":
            if value is not None:
                raise MessageError(f"{where}.value", "not_null takes no value")
        elif not isinstance(value, str) or len(value) > 200:
            value = _number(value, f"{where}.value")
        return cls(variable, comparator, value)


@dataclass(frozen=True)
class Request:
    op: str
    project: str
    analyst: str
    data: DataRef
    where: tuple[Condition, ...] = ()

    def common_json(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "op": self.op,
            "project": self.project,
            "analyst": self.analyst,
            "data": self.data.to_json(),
            "where": [c.to_json() for c in self.where],
        }


@dataclass(frozen=True)
class Summary(Request):
    variables: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**self.common_json(), "variables": list(self.variables)}


@dataclass(frozen=True)
class Quantiles(Request):
    variable: str = ""
    probs: tuple[float, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**self.common_json(), "variable": self.variable, "probs": list(self.probs)}


@dataclass(frozen=True)
class Table(Request):
    variables: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**self.common_json(), "variables": list(self.variables)}


@dataclass(frozen=True)
class Cor(Request):
    variables: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**self.common_json(), "variables": list(self.variables)}


@dataclass(frozen=True)
class GlmPrepare(Request):
    model: ModelSpec | None = None
    family: str = "gaussian"
    link: str = "identity"
    weights: Var | None = None

    def model_json(self) -> dict[str, Any]:
        return {
            "model": self.model.to_json() if self.model else None,
            "family": self.family,
            "link": self.link,
            "weights": self.weights.to_json() if self.weights else None,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.common_json(), **self.model_json()}


@dataclass(frozen=True)
class GlmStep(GlmPrepare):
    levels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    beta: tuple[float, ...] = ()
    null_eta: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.common_json(),
            **self.model_json(),
            "levels": {k: list(v) for k, v in self.levels.items()},
            "beta": list(self.beta),
            "null_eta": self.null_eta,
        }


@dataclass(frozen=True)
class Describe(Request):
    variables: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**self.common_json(), "variables": list(self.variables)}


@dataclass(frozen=True)
class ByGroup(Request):
    variables: tuple[str, ...] = ()
    group: str = ""

    def to_json(self) -> dict[str, Any]:
        return {**self.common_json(), "variables": list(self.variables), "group": self.group}


@dataclass(frozen=True)
class GlmLocal(GlmPrepare):
    """A site's own fit of the model (study-level meta-analysis): coefficients and their covariance."""

    levels: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.common_json(),
            **self.model_json(),
            "levels": {k: list(v) for k, v in self.levels.items()},
        }


@dataclass(frozen=True)
class Assign(Request):
    """Keep a derived variable (`derive`: a whitelisted transform of a variable) or a subset (`subset`:
    conditions) under `name` in the analyst's workspace at the site, for the workspace's time to live."""

    name: str = ""
    derive: Var | None = None
    subset: tuple[Condition, ...] = ()

    def to_json(self) -> dict[str, Any]:
        body = {**self.common_json(), "name": self.name}
        if self.derive is not None:
            body["derive"] = self.derive.to_json()
        else:
            body["subset"] = [c.to_json() for c in self.subset]
        return body


@dataclass(frozen=True)
class Km(Request):
    """Per time bin (of `bin_width`, at least the site's own minimum): at risk at the bin's start,
    events and censorings, optionally per level of `group` (Kaplan–Meier, log-rank)."""

    time: str = ""
    event: str = ""
    bin_width: float = 30.0
    group: str | None = None

    def survival_json(self) -> dict[str, Any]:
        return {"time": self.time, "event": self.event, "bin_width": self.bin_width}

    def to_json(self) -> dict[str, Any]:
        body = {**self.common_json(), **self.survival_json()}
        if self.group is not None:
            body["group"] = self.group
        return body


TIES = ("breslow", "efron")


@dataclass(frozen=True)
class CoxStep(Request):
    """At `beta`: per time bin the risk-set sums of exp(x beta), x exp(x beta), x x' exp(x beta) (and for
    Efron's ties the same over the bin's events), the events per bin and the sum of x over events."""

    time: str = ""
    event: str = ""
    bin_width: float = 30.0
    covariates: tuple[str, ...] = ()
    beta: tuple[float, ...] = ()
    ties: str = "efron"

    def to_json(self) -> dict[str, Any]:
        return {
            **self.common_json(),
            "time": self.time,
            "event": self.event,
            "bin_width": self.bin_width,
            "covariates": list(self.covariates),
            "beta": list(self.beta),
            "ties": self.ties,
        }


PH_TRANSFORMS = ("identity", "km")


@dataclass(frozen=True)
class CoxPh(CoxStep):
    """At the pooled `beta`: this site's scaled Schoenfeld residual test of proportional hazards per
    covariate (Grambsch–Therneau, as lifelines' `proportional_hazard_test`) against `transform` of the
    binned time; only the test statistics and p-values are answered."""

    transform: str = "km"

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "transform": self.transform}


OPERATIONS = (
    "summary",
    "describe",
    "by_group",
    "quantiles",
    "table",
    "cor",
    "glm.prepare",
    "glm.step",
    "glm.local",
    "assign",
    "km",
    "cox.step",
    "cox.ph",
)
_FIELDS = {
    "km": {"time", "event", "bin_width", "group"},
    "cox.step": {"time", "event", "bin_width", "covariates", "beta", "ties"},
    "cox.ph": {"time", "event", "bin_width", "covariates", "beta", "ties", "transform"},
    "describe": {"variables"},
    "by_group": {"variables", "group"},
    "glm.local": {"model", "family", "link", "weights", "levels"},
    "assign": {"name", "derive", "subset"},
    "summary": {"variables"},
    "quantiles": {"variable", "probs"},
    "table": {"variables"},
    "cor": {"variables"},
    "glm.prepare": {"model", "family", "link", "weights"},
    "glm.step": {"model", "family", "link", "weights", "levels", "beta", "null_eta"},
}
_COMMON = {"v", "op", "project", "analyst", "data", "where"}


def parse_request(body: Any) -> Request:
    """The typed request of a JSON body; MessageError naming the field otherwise."""
    from datenraum.analysis.families import family as make_family

    if not isinstance(body, dict):
        raise MessageError("request", "expected an object")
    if body.get("v") != VERSION:
        raise MessageError("v", f"expected protocol version {VERSION}")
    op = body.get("op")
    if op not in OPERATIONS:
        raise MessageError("op", f"expected one of {', '.join(OPERATIONS)}")
    unknown = set(body) - _COMMON - _FIELDS[op]
    if unknown:
        raise MessageError("request", f"unknown fields for {op}: {', '.join(sorted(map(str, unknown)))}")
    where = body.get("where", [])
    if not isinstance(where, list) or len(where) > 20:
        raise MessageError("where", "expected a list of at most 20 conditions")
    common = {
        "op": op,
        "project": _text(body, "project", "request"),
        "analyst": _text(body, "analyst", "request"),
        "data": DataRef.from_json(body.get("data")),
        "where": tuple(Condition.from_json(c, f"where[{i}]") for i, c in enumerate(where)),
    }
    if op == "describe":
        return Describe(**common, variables=_names(body.get("variables"), "variables"))
    if op == "by_group":
        variables = _names(body.get("variables"), "variables", 1, 20)
        group = _text(body, "group", "request", maximum=80)
        if group in variables:
            raise MessageError("group", "the group variable cannot be summarised by itself")
        return ByGroup(**common, variables=variables, group=group)
    if op == "assign":
        name = _text(body, "name", "request", maximum=40)
        if not name.isidentifier():
            raise MessageError("name", "expected a name of letters, digits and _")
        if ("derive" in body) == ("subset" in body):
            raise MessageError("assign", "expected either derive or subset")
        if "derive" in body:
            derive = _var(body["derive"], "derive")
            if derive.transform is None or derive.is_factor:
                raise MessageError("derive", "expected a transform of a variable (log, sqrt, ...)")
            return Assign(**common, name=name, derive=derive)
        subset = body["subset"]
        if not isinstance(subset, list) or not 1 <= len(subset) <= 20:
            raise MessageError("subset", "expected a list of 1 to 20 conditions")
        conditions = tuple(Condition.from_json(c, f"subset[{i}]") for i, c in enumerate(subset))
        return Assign(**common, name=name, subset=conditions)
    if op in ("km", "cox.step", "cox.ph"):
        survival = {
            "time": _text(body, "time", "request", maximum=80),
            "event": _text(body, "event", "request", maximum=80),
            "bin_width": _number(body.get("bin_width"), "bin_width"),
        }
        if survival["bin_width"] <= 0:
            raise MessageError("bin_width", "expected a positive bin width")
        if op == "km":
            group = _text(body, "group", "request", required=False, maximum=80)
            return Km(**common, **survival, group=group)
        covariates = _names(body.get("covariates"), "covariates", 1, 20)
        beta = body.get("beta")
        if not isinstance(beta, list) or len(beta) != len(covariates):
            raise MessageError("beta", "expected one number per covariate")
        ties = body.get("ties")
        if ties not in TIES:
            raise MessageError("ties", f"expected one of {', '.join(TIES)}")
        step = {
            **common,
            **survival,
            "covariates": covariates,
            "beta": tuple(_number(b, "beta") for b in beta),
            "ties": ties,
        }
        if op == "cox.step":
            return CoxStep(**step)
        transform = body.get("transform")
        if transform not in PH_TRANSFORMS:
            raise MessageError("transform", f"expected one of {', '.join(PH_TRANSFORMS)}")
        return CoxPh(**step, transform=transform)
    if op in ("summary", "table", "cor"):
        maximum = 3 if op == "table" else (20 if op == "cor" else MAX_VARIABLES)
        minimum = 2 if op == "cor" else 1
        variables = _names(body.get("variables"), "variables", minimum, maximum)
        return {"summary": Summary, "table": Table, "cor": Cor}[op](**common, variables=variables)
    if op == "quantiles":
        variable = _text(body, "variable", "request", maximum=80)
        probs = body.get("probs")
        if not isinstance(probs, list) or not 0 < len(probs) <= MAX_PROBS:
            raise MessageError("probs", f"expected a list of 1 to {MAX_PROBS} probabilities")
        values = tuple(_number(p, "probs") for p in probs)
        if any(not 0 < p < 1 for p in values):
            raise MessageError("probs", "each probability must lie strictly between 0 and 1 (no min/max)")
        return Quantiles(**common, variable=variable, probs=values)
    try:
        model = ModelSpec.from_json(body.get("model"))
    except FormulaError as error:
        raise MessageError("model", str(error)) from None
    family_name, link = body.get("family"), body.get("link")
    if not isinstance(family_name, str) or not isinstance(link, str):
        raise MessageError("family", "expected a family and a link name")
    try:
        make_family(family_name, link)
    except ValueError as error:
        raise MessageError("family", str(error)) from None
    weights = _var(body["weights"], "weights") if body.get("weights") is not None else None
    if weights is not None and weights.is_factor:
        raise MessageError("weights", "weights cannot be a factor")
    glm = {"model": model, "family": family_name, "link": link, "weights": weights}
    if op == "glm.prepare":
        return GlmPrepare(**common, **glm)
    parsed_levels = _levels(body.get("levels"), model)
    if op == "glm.local":
        return GlmLocal(**common, **glm, levels=parsed_levels)
    beta = body.get("beta")
    if not isinstance(beta, list) or len(beta) > MAX_PARAMETERS:
        raise MessageError("beta", f"expected a list of at most {MAX_PARAMETERS} numbers")
    null_eta = body.get("null_eta")
    return GlmStep(
        **common,
        **glm,
        levels=parsed_levels,
        beta=tuple(_number(b, "beta") for b in beta),
        null_eta=None if null_eta is None else _number(null_eta, "null_eta"),
    )


def _levels(levels: Any, model: ModelSpec) -> dict[str, tuple[str, ...]]:
    if not isinstance(levels, dict) or set(levels) != set(model.factors()):
        raise MessageError("levels", "expected the global levels of every factor of the model")
    parsed_levels = {}
    for name, values in levels.items():
        if (
            not isinstance(values, list)
            or not 1 <= len(values) <= 1000
            or not all(isinstance(v, str) for v in values)
        ):
            raise MessageError(f"levels.{name}", "expected a list of level labels")
        if len(set(values)) != len(values):
            raise MessageError(f"levels.{name}", "a level is named twice")
        parsed_levels[name] = tuple(values)
    return parsed_levels


def ok_result(result: dict[str, Any]) -> dict[str, Any]:
    return {"v": VERSION, "ok": True, "result": result}


def error_result(error: dict[str, Any]) -> dict[str, Any]:
    return {"v": VERSION, "ok": False, "error": error}
