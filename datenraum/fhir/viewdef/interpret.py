"""The checked walk: a view read step by step from parsed JSON, with every structure checked.

This is the reference reading of a view. The compilers (compile_json.py, compile_shaped.py) generate
code that navigates without checks, because flattening runs for every one of tens of millions of
resources; when that code fails on a resource (an element of the wrong JSON type), `explain` walks the
same paths here, slowly, to say which element is wrong and why.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from datenraum.fhir.primitives import CONVERTERS, ElementTypeError
from datenraum.fhir.viewdef.evaluate import run
from datenraum.fhir.viewdef.fhirpath import Evaluate, Extension, Member, ReferenceKey, Step, Union, Where
from datenraum.fhir.viewdef.model import Select, ViewDefinition, ends_in_exists, takes_first
from datenraum.fhir.viewdef.steps import Resolver, StepVisitor

__all__ = ["explain"]

# Where the walk is: the JSON path of a value (for the message) and the value.
_At = tuple[str, Any]


def explain(view: ViewDefinition, resource: dict, resolve: Resolver) -> str:
    """Why the compiled view fails for this resource: the element, its JSON path, and what was wrong."""
    try:
        _check_select(view.select, resource, "", resolve)
    except ElementTypeError as error:
        return f"{view.resource}.{error.json_path}: {error}"
    return f"{view.resource}: an element has an unexpected structure"


def _check_select(select: Select, node: Any, json_path: str, resolve: Resolver) -> None:
    """Raise ElementTypeError, with its json_path set, at the first element the compiled view cannot read."""
    if select.for_each is None:
        foci = [(json_path, node)]
    else:
        foci = _collect_union(select.for_each, node, resolve, json_path)
    values = _Values(resolve)
    for focus_path, focus in foci:
        for column in select.columns:
            for path in column.path.alternatives:
                found = next(values.walk(path.steps, (focus_path, focus)), None)
                if found is None:
                    continue
                if not ends_in_exists(path):
                    try:
                        CONVERTERS[column.type](found[1])
                    except ElementTypeError as error:
                        error.json_path = found[0]
                        raise
                break
        for child in (*select.selects, *select.union_all):
            _check_select(child, focus, focus_path, resolve)


def _collect_union(union: Union, node: Any, resolve: Resolver, json_path: str) -> list[_At]:
    values = _Values(resolve)
    for path in union.alternatives:
        found = list(values.walk(path.steps, (json_path, node)))
        if found:
            return found[:1] if takes_first(path) else found
    return []


class _Values(StepVisitor[_At, Iterator[_At]]):
    """Every value a path yields, with its JSON path, checking structure on the way."""

    def __init__(self, resolve: Resolver) -> None:
        self.resolve = resolve

    def end(self, at: _At) -> Iterator[_At]:
        yield at

    def evaluate(self, step: Evaluate, rest: tuple[Step, ...], at: _At) -> Iterator[_At]:
        json_path, node = at
        for value in run(step.expr, node, node, 0, self.resolve):
            yield from self.walk(rest, (json_path, value))

    def member(self, step: Member, rest: tuple[Step, ...], at: _At) -> Iterator[_At]:
        return self._items(step.name, None, rest, at)

    def extension(self, step: Extension, rest: tuple[Step, ...], at: _At) -> Iterator[_At]:
        return self._items("extension", step.url, rest, at)

    def where(self, step: Where, rest: tuple[Step, ...], at: _At) -> Iterator[_At]:
        if _object(at).get(step.element) == step.literal:
            yield from self.walk(rest, at)

    def reference_key(self, step: ReferenceKey, rest: tuple[Step, ...], at: _At) -> Iterator[_At]:
        json_path, node = at[0], _object(at)
        try:
            key = self.resolve(node, step.resource_type)
        except ElementTypeError as error:
            error.json_path = json_path
            raise
        if key is not None:
            yield from self.walk(rest, (json_path, key))

    def _items(self, key: str, url: str | None, rest: tuple[Step, ...], at: _At) -> Iterator[_At]:
        """The values of member `key` (a list's items one by one); with `url`, only extensions of it."""
        json_path = at[0]
        value = _object(at).get(key)
        if value is None:
            return
        child_path = f"{json_path}.{key}" if json_path else key
        items = value if type(value) is list else [value]
        for index, item in enumerate(items):
            item_path = f"{child_path}[{index}]" if type(value) is list else child_path
            if url is not None:
                if not isinstance(item, dict):
                    error = ElementTypeError(f"expected an Extension object, got {_json_kind(item)}")
                    error.json_path = item_path
                    raise error
                if item.get("url") != url:
                    continue
            yield from self.walk(rest, (item_path, item))


def _object(at: _At) -> dict:
    """The value at `at`, which a step into it needs to be an object."""
    json_path, node = at
    if not isinstance(node, dict):
        error = ElementTypeError(f"expected an object, got {_json_kind(node)}")
        error.json_path = json_path or "(resource)"
        raise error
    return node


def _json_kind(value: Any) -> str:
    kinds = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}
    return kinds.get(type(value), type(value).__name__)
