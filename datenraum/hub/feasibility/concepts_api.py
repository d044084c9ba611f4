"""Criteria search for the query builder (`/api/v1/concepts`), over the concept catalogue of
`datenraum.query.catalogue`.

A concept goes to the builder with everything it needs to offer its filters: the term code and the
context as the structured query writes them, displays in the reader's language, and the value filter,
attribute filters and time restriction the sites can answer for it. `resolve` does the same for the
criteria of an existing query (a saved or imported one), so that it can be edited like a new one.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from datenraum.hub.runtime import QueryUser
from datenraum.query.catalogue.load import (
    LANGUAGES,
    AgeOption,
    Concept,
    ConceptOption,
    QuantityOption,
    ValueConcept,
    load_catalogue,
)
from datenraum.query.catalogue.search import MAX_SEARCH_LENGTH, concept_index
from datenraum.query.model import TermCode

__all__ = ["concept_json", "router"]

router = APIRouter(prefix="/api/v1", tags=["workspace"])

Language = Annotated[str, Query(pattern="^(de|en)$", description="Language of the displays")]


def _term_json(term: TermCode) -> dict[str, str]:
    body = {"system": term.system, "code": term.code, "display": term.display}
    if term.version is not None:
        body["version"] = term.version
    return body


def _value_json(value: ValueConcept, language: str) -> dict[str, str]:
    return {"system": value.system, "code": value.code, "display": value.display(language)}


def _value_filter_json(concept: Concept, language: str) -> dict[str, Any] | None:
    option = concept.value_filter
    if isinstance(option, ConceptOption):
        return {"type": "concept", "concepts": [_value_json(v, language) for v in option.concepts]}
    if isinstance(option, QuantityOption | AgeOption):
        return {
            "type": "age" if isinstance(option, AgeOption) else "quantity",
            "units": [{"code": unit, "display": unit} for unit in option.units],
            "defaultUnit": option.default_unit,
        }
    return None


def concept_json(concept: Concept, language: str) -> dict[str, Any]:
    """A concept as the builder's script takes it."""
    return {
        "termCode": _term_json(concept.term),
        "context": _term_json(concept.context),
        "display": concept.display(language),
        "contextDisplay": concept.context_display(language),
        "systemLabel": concept.system_label,
        "kind": concept.kind,
        "valueFilter": _value_filter_json(concept, language),
        "attributes": [
            {
                "code": _term_json(attribute.code),
                "display": attribute.display(language),
                "values": [_value_json(v, language) for v in attribute.values],
            }
            for attribute in concept.attributes
            if attribute.kind == "concept" and attribute.values
        ],
        "timeRestriction": concept.time_restriction,
    }


@functools.cache
def _by_context_and_system() -> dict[tuple[str, str], Concept]:
    """One catalogue concept per context and code system: the pattern for codes the catalogue lacks."""
    patterns: dict[tuple[str, str], Concept] = {}
    for concept in load_catalogue():
        patterns.setdefault((concept.context.code, concept.term.system), concept)
    return patterns


def _resolve(criterion: Any, index: int, language: str) -> dict[str, Any]:
    """The concept of one criterion of a query: the catalogue's, or for a code the catalogue does not
    list (a site may know more codes than we ship), one offering what its context and system offer."""
    where = f"criteria[{index}]"
    if not isinstance(criterion, dict):
        raise HTTPException(422, f"{where}: must be an object")
    context, terms = criterion.get("context"), criterion.get("termCodes")
    if (
        not isinstance(context, dict)
        or not isinstance(terms, list)
        or not terms
        or not isinstance(terms[0], dict)
    ):
        raise HTTPException(422, f"{where}: needs a context and termCodes")
    term = terms[0]
    system, code, context_code = term.get("system"), term.get("code"), context.get("code")
    if not all(isinstance(value, str) for value in (system, code, context_code)):
        raise HTTPException(422, f"{where}: context.code, termCodes[0].system and .code must be strings")
    try:
        return concept_json(concept_index().concept(context_code, system, code), language)
    except LookupError:
        pass
    pattern = _by_context_and_system().get((context_code, system))
    if pattern is None:
        raise HTTPException(
            422, f"{where}: no criterion of context {context_code!r} with codes of {system!r}"
        )
    display = term.get("display") if isinstance(term.get("display"), str) else ""
    body = concept_json(pattern, language)
    body["termCode"] = {"system": system, "code": code, "display": display or code}
    body["display"] = display or code
    value_filter = criterion.get("valueFilter")
    unit = value_filter.get("unit") if isinstance(value_filter, dict) else None
    if body["valueFilter"] and body["valueFilter"]["type"] == "quantity" and isinstance(unit, dict):
        unit_code = str(unit.get("code", ""))
        body["valueFilter"] = {
            "type": "quantity",
            "units": [{"code": unit_code, "display": unit_code}],
            "defaultUnit": unit_code,
        }
    return body


class Criteria(BaseModel):
    model_config = ConfigDict(extra="forbid")

    criteria: list[Any] = Field(max_length=1000, description="Criteria of a structured query, in any order")


@router.get("/concepts")
async def search_concepts(
    user: QueryUser,
    q: Annotated[str, Query(max_length=MAX_SEARCH_LENGTH, description="What the person typed")] = "",
    lang: Language = LANGUAGES[0],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    kind: Annotated[list[str] | None, Query(description="Only concepts of these kinds")] = None,
) -> dict[str, Any]:
    """Concepts matching a few letters of a term or a code, best first."""
    try:
        found = concept_index().search(q, language=lang, limit=limit, kinds=kind)
    except ValueError as error:
        raise HTTPException(422, str(error)) from None
    return {"concepts": [concept_json(concept, lang) for concept in found]}


@router.post("/concepts/resolve")
async def resolve_concepts(user: QueryUser, body: Criteria, lang: Language = LANGUAGES[0]) -> dict[str, Any]:
    """The concept of each criterion (in the order given), to edit a saved or imported query."""
    return {"concepts": [_resolve(criterion, i, lang) for i, criterion in enumerate(body.criteria)]}
