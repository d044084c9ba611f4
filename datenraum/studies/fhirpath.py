"""FHIRPath for study forms: strict compilation and evaluation with the forms' one convention.

fhirpathpy's own parser recovers from syntax errors silently ("1 +* 2" compiles), so `compile_expression`
parses the text a second time against the grammar's `entireExpression` (expression, then end of input)
with a listener that raises, and refuses functions fhirpathpy does not implement and `%variables` that are
not in scope, so that a form that would fail at evaluation time is refused when it is loaded.

The convention every producer of expressions here uses (the REDCap converter, the form designer, the site
EDC): `%resource` is the QuestionnaireResponse, and the answer of linkId X is
`%resource.repeat(item).where(linkId='X').answer.value`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from antlr4 import CommonTokenStream, InputStream
from antlr4.error.ErrorListener import ErrorListener
from fhirpathpy import apply_parsed_path
from fhirpathpy.engine.invocations import invocation_registry
from fhirpathpy.models import models
from fhirpathpy.parser import parse
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

FHIRPATH = "text/fhirpath"
# Variables every form expression may use: fhirpathpy's own two and the response itself.
BUILT_IN_VARIABLES = frozenset({"resource", "context", "ucum", "questionnaire"})
MAX_EXPRESSION_LENGTH = 20_000
_R4 = models["r4"]


class ExpressionError(ValueError):
    """An expression that does not compile; the message says why (position, function, variable)."""


class _Raise(ErrorListener):
    # antlr calls this by its Java-style name.
    def syntaxError(self, recognizer, offendingSymbol, line, column, msg, e):
        raise ExpressionError(f"syntax error at character {column + 1}: {msg}")


def answer_path(link_id: str) -> str:
    """The FHIRPath of the answers of `link_id` in the response (the convention above)."""
    quoted = link_id.replace("\\", "\\\\").replace("'", "\\'")
    return f"%resource.repeat(item).where(linkId='{quoted}').answer.value"


@dataclass(frozen=True)
class CompiledExpression:
    """A FHIRPath expression that parsed, with the `%variables` it reads."""

    text: str
    variables: frozenset[str]
    _tree: Any = field(compare=False, repr=False)

    def evaluate(self, response: Mapping[str, Any], variables: Mapping[str, Any]) -> list[Any]:
        """The result collection on `response` (as `%resource`) with the given variables. Raises
        ExpressionError when evaluation fails (e.g. a string added to a number in a hostile response)."""
        context = {**variables, "resource": response}
        try:
            return apply_parsed_path(response, self._tree, context, _R4)
        except RecursionError:
            raise ExpressionError(f"{self.text!r} nests too deeply to evaluate") from None
        except Exception as error:  # fhirpathpy raises bare Exceptions for type errors
            raise ExpressionError(f"{self.text!r} failed: {error}") from None


def _strict_parse(text: str) -> None:
    lexer = FHIRPathLexer(InputStream(text))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_Raise())
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(_Raise())
    parser.entireExpression()


def _walk(node: Any) -> Iterable[dict]:
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            yield current
            stack.extend(current.get("children", ()))


def _identifier(node: dict) -> str:
    """The name of a function call or `%constant` node: its first child is the Identifier."""
    for child in node.get("children", ()):
        if isinstance(child, dict) and child.get("type") == "Identifier":
            return str(child.get("text", "")).strip("`")
    return ""


def compile_expression(text: str, in_scope: Iterable[str] = ()) -> CompiledExpression:
    """Compile `text`; `in_scope` are the names of the `variable` extensions visible where it stands."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("the expression is empty")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(f"the expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        _strict_parse(text)
        tree = parse(text)
    except ExpressionError:
        raise
    except RecursionError:
        raise ExpressionError("the expression nests too deeply") from None
    except Exception as error:  # antlr's lexer raises its own exception types on a bad character
        raise ExpressionError(f"syntax error: {error}") from None
    used: set[str] = set()
    for node in _walk(tree):
        kind = node.get("type")
        if kind == "ExternalConstant":
            used.add(_identifier(node))
        elif kind == "Functn":
            name = _identifier(node)
            if name not in invocation_registry:
                raise ExpressionError(f"unknown function {name}()")
    unknown = sorted(used - BUILT_IN_VARIABLES - set(in_scope))
    if unknown:
        raise ExpressionError(f"unknown variable %{unknown[0]}")
    return CompiledExpression(text, frozenset(used), tree)
