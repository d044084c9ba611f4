"""The one walk over a path's steps, shared by every engine, and what the engines share besides.

A normalised path (model.py) is a tuple of steps: Member, Extension, Where, ReferenceKey, First,
Exists, and Evaluate (an expression beyond the other steps, which every engine hands to evaluate.py). Each engine does something different at each step: the interpreter reads a parsed resource
with checks, the two code generators emit Python that reads a dict or a decoded struct, the shape
builder adds elements to a msgspec shape. `StepVisitor` is the part they share: `walk(steps, at)`
hands the first step, the steps after it and the engine's position `at` to the method named for the
step's type, and that method decides whether and from where to walk on. A new FHIRPath function is a
new step type, one entry in `_METHODS` and one method per engine; an engine that lacks it fails when
the class is defined, not when a view first uses it.

Also here: the code-generation helpers both compilers use (`CodeSource`), and the rule for references
that every reader shares (`plain_reference_test`, `PATIENT_ELEMENTS`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from datenraum.fhir.viewdef.fhirpath import (
    Evaluate,
    Exists,
    Extension,
    First,
    Member,
    ReferenceKey,
    Step,
    Where,
)
from datenraum.fhir.viewdef.model import ViewDefinitionError

__all__ = [
    "PATIENT_ELEMENTS",
    "CodeSource",
    "Resolver",
    "StepVisitor",
    "plain_reference_test",
]

# Resolves a Reference element to the id of a resource of the given type, or None.
Resolver = Callable[[Any, str], str | None]

# Where a resource of the patient compartment names its patient: the first of these it has.
PATIENT_ELEMENTS = ("subject", "patient")

At = TypeVar("At")  # where an engine is, e.g. (variable, indent) for a code generator
R = TypeVar("R")  # what its walk gives back

# The method of a StepVisitor for each step type. OfType is not here: load_view() folds it into Member.
_METHODS: dict[type, str] = {
    Member: "member",
    Extension: "extension",
    Where: "where",
    ReferenceKey: "reference_key",
    First: "first",
    Exists: "exists",
    Evaluate: "evaluate",
}
# Steps whose meaning is the same in every engine; StepVisitor implements them once.
_DEFAULTS = frozenset({"first", "exists"})


class StepVisitor(Generic[At, R]):
    """A walk over the steps of one path. Subclasses implement `end` (the path has yielded a value at
    `at`) and one method per step type; `first` and `exists` have the meaning every engine gives them."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        required = ("end", *(name for name in _METHODS.values() if name not in _DEFAULTS))
        missing = [name for name in required if getattr(cls, name) is getattr(StepVisitor, name)]
        if missing:
            raise TypeError(f"{cls.__name__} does not say what to do at {', '.join(missing)}")

    def walk(self, steps: tuple[Step, ...], at: At) -> R:
        if not steps:
            return self.end(at)
        step = steps[0]
        method = _METHODS.get(type(step))
        if method is None:  # pragma: no cover - load_view() admits no other steps
            raise ViewDefinitionError(f"cannot walk step {step!r}")
        return getattr(self, method)(step, steps[1:], at)

    def end(self, at: At) -> R:
        raise NotImplementedError

    def member(self, step: Member, rest: tuple[Step, ...], at: At) -> R:
        raise NotImplementedError

    def extension(self, step: Extension, rest: tuple[Step, ...], at: At) -> R:
        raise NotImplementedError

    def where(self, step: Where, rest: tuple[Step, ...], at: At) -> R:
        raise NotImplementedError

    def reference_key(self, step: ReferenceKey, rest: tuple[Step, ...], at: At) -> R:
        raise NotImplementedError

    def evaluate(self, step: Evaluate, rest: tuple[Step, ...], at: At) -> R:
        raise NotImplementedError

    def first(self, step: First, rest: tuple[Step, ...], at: At) -> R:
        # A column takes the first value anyway, and a forEach cuts its list after the walk (takes_first).
        return self.walk(rest, at)

    def exists(self, step: Exists, rest: tuple[Step, ...], at: At) -> R:
        # exists() ends a path (load_view checks): the value it tests is where the path ends.
        return self.end(at)


def plain_reference_test(text: str, key: str, resource_type: str) -> str:
    """Python code testing that the str in `text` is a plain relative reference `Type/id`, binding the
    id to `key`. Such a reference means the same to every resolver, so the generated code reads it
    itself and leaves the rest (absolute, `urn:uuid:`, conditional, logical) to the resolver."""
    prefix = f"{resource_type}/"
    return (
        f"{text}.startswith({prefix!r}) and ({key} := {text}[{len(prefix)}:]) "
        f"and '/' not in {key} and '?' not in {key}"
    )


class CodeSource:
    """Python source being generated: unique names, constants the code refers to, lines to compile."""

    def __init__(self, constants: dict[str, Any] | None = None) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = dict(constants or {})
        self.counter = 0

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def constant(self, value: Any) -> str:
        name = self.name("_k")
        self.constants[name] = value
        return name

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def function(self, name: str, label: str) -> Callable:
        """Compile the source and return the function `name` it defines."""
        namespace = dict(self.constants)
        try:
            exec(compile("\n".join(self.lines), f"<{label}>", "exec"), namespace)
        except SyntaxError as error:  # nesting too deep for Python
            raise ViewDefinitionError(f"{label} cannot be compiled: {error.msg}") from None
        return namespace[name]
