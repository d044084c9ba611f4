"""The view compilers: which FHIRPath they admit, how they flatten resources, and how failures are explained.

The flattening tests run on both compilers through the `engine` fixture: the dict compiler (the
row-by-row reader's) and the shaped one (the strict reader's), which reads the resource decoded into
its msgspec shape. Where the shaped one hands a resource back to the row-by-row reader, the test says
so with `engine.handed_back()`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator

import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datenraum.fhir.primitives import ElementTypeError, parse_date, parse_datetime
from datenraum.fhir.references import resolve_reference
from datenraum.fhir.viewdef import fhirpath
from datenraum.fhir.viewdef.compile_json import CompiledView, standard_views
from datenraum.fhir.viewdef.compile_shaped import NeedsRowReader, compile_for_shape
from datenraum.fhir.viewdef.fhirpath import (
    Evaluate,
    Exists,
    Extension,
    First,
    Member,
    OfType,
    ReferenceKey,
    Where,
)
from datenraum.fhir.viewdef.model import ViewDefinitionError, load_view
from datenraum.fhir.viewdef.shapes import resource_shapes, shape_for


def compile_view(*selects: dict, resource: str = "Observation") -> CompiledView:
    return CompiledView(load_view({"name": "t", "resource": resource, "select": list(selects)}))


def rows(view: CompiledView, resource: dict) -> list[tuple]:
    return view.rows(resource, resolve_reference)


class DictEngine:
    """The dict compiler, as the row-by-row reader runs it on parsed JSON."""

    name = "dict"

    def compile(self, *selects: dict, resource: str = "Observation") -> CompiledView:
        return compile_view(*selects, resource=resource)

    def rows(self, view: CompiledView, resource: dict) -> list[tuple]:
        return rows(view, resource)

    def handed_back(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


class ShapedEngine:
    """The shaped compiler, as the strict reader runs it: the resource decoded into its shape first,
    dates and times converted from the integers it hands to Arrow."""

    name = "shaped"

    def compile(self, *selects: dict, resource: str = "Observation") -> CompiledView:
        view = compile_view(*selects, resource=resource)
        shape = shape_for(resource, [view])
        view.shaped = shape, compile_for_shape(view, shape)  # type: ignore[attr-defined]
        return view

    def rows(self, view: CompiledView, resource: dict) -> list[tuple]:
        shape, function = view.shaped  # type: ignore[attr-defined]
        out: list[tuple] = []
        function(shape.decoder.decode(orjson.dumps(resource)), out.append, -1)
        assert all(row[-1] == -1 for row in out)
        if not out:
            return []
        columns = zip(*(row[:-1] for row in out), strict=True)
        arrays = [_arrow(column, field.type) for column, field in zip(columns, view.schema, strict=True)]
        return list(zip(*(array.to_pylist() for array in arrays), strict=True))

    @contextlib.contextmanager
    def handed_back(self) -> Iterator[None]:
        with pytest.raises(NeedsRowReader):
            yield


def _arrow(values: tuple, arrow_type: pa.DataType) -> pa.Array:
    """As the strict reader makes its columns: dates and times come as the integers Arrow stores."""
    if pa.types.is_timestamp(arrow_type):
        return pa.array(values, pa.int64()).view(arrow_type)
    if pa.types.is_date32(arrow_type):
        return pa.array(values, pa.int32()).view(arrow_type)
    return pa.array(values, arrow_type)


@pytest.fixture(params=[DictEngine(), ShapedEngine()], ids=lambda engine: engine.name)
def engine(request) -> DictEngine | ShapedEngine:
    return request.param


# --- the FHIRPath subset --------------------------------------------------------------------------


def test_a_dotted_path_parses_into_member_steps():
    assert fhirpath.parse("code.coding.system").alternatives[0].steps == (
        Member("code"),
        Member("coding"),
        Member("system"),
    )


def test_every_supported_function_parses_into_its_step():
    path = "a.ofType(Quantity).where(system = 'x\\'y').extension('http://e').getReferenceKey(Patient).first()"
    assert fhirpath.parse(path).alternatives[0].steps == (
        Member("a"),
        OfType("Quantity"),
        Where("system", "x'y"),
        Extension("http://e"),
        ReferenceKey("Patient"),
        First(),
    )
    assert fhirpath.parse("deceased.exists()").alternatives[0].steps == (Member("deceased"), Exists())


@pytest.mark.parametrize(
    "text",
    ["code.coding.count()", "where(system = 1)", "code + 1", "name.first().given", "name[0].family", "'A'"],
)
def test_fhirpath_beyond_the_steps_is_one_evaluate_step(text):
    (path,) = fhirpath.parse(text).alternatives
    assert len(path.steps) == 1 and isinstance(path.steps[0], Evaluate)


def test_the_union_operator_gives_alternatives_in_order():
    union = fhirpath.parse("effective.ofType(dateTime) | effective.ofType(Period).start")
    assert [len(path.steps) for path in union.alternatives] == [2, 3]


@pytest.mark.parametrize(
    "text",
    [
        "code.coding.nonsense()",  # unknown function
        "code..coding",  # empty step
        "code.coding)",  # trailing garbage
        "first(1)",  # too many arguments
        "ofType('x')",  # a type name, not a string
        "@@",
        "",
    ],
)
def test_fhirpath_outside_the_subset_is_rejected_when_parsed(text):
    with pytest.raises(fhirpath.PathSyntaxError):
        fhirpath.parse(text)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("code.nonsense()", "not supported"),
        ("code.nonsense(", "expected an expression"),
        ("%undefined", "constant %undefined is not defined"),
    ],
)
def test_a_view_with_an_unusable_path_fails_to_load_and_names_the_column(path, message):
    with pytest.raises(ViewDefinitionError, match=r"select\[0\]\.column\[0\]") as error:
        load_view(
            {"name": "t", "resource": "Observation", "select": [{"column": [{"name": "c", "path": path}]}]}
        )
    assert message in str(error.value)


def test_a_view_with_an_unknown_column_type_fails_to_load():
    with pytest.raises(ViewDefinitionError, match="unknown type 'float'"):
        compile_view({"column": [{"name": "c", "path": "x", "type": "float"}]})


def test_a_view_with_duplicate_column_names_fails_to_load():
    with pytest.raises(ViewDefinitionError, match="duplicate column names"):
        compile_view(
            {"column": [{"name": "c", "path": "x"}]}, {"forEach": "y", "column": [{"name": "c", "path": "z"}]}
        )


def test_a_view_without_name_or_resource_fails_to_load():
    with pytest.raises(ViewDefinitionError, match="needs name and resource"):
        load_view({"select": []})


# --- flattening -----------------------------------------------------------------------------------


def test_choice_elements_are_read_through_oftype(engine):
    view = engine.compile(
        {
            "column": [
                {"name": "q", "path": "value.ofType(Quantity).value", "type": "decimal"},
                {"name": "s", "path": "value.ofType(string)"},
                {"name": "b", "path": "value.ofType(boolean)", "type": "boolean"},
            ]
        }
    )
    assert engine.rows(view, {"valueQuantity": {"value": 7}}) == [(7.0, None, None)]
    assert engine.rows(view, {"valueString": "positive"}) == [(None, "positive", None)]
    assert engine.rows(view, {"valueBoolean": False}) == [(None, None, False)]


def test_a_union_takes_the_first_alternative_that_has_a_value(engine):
    view = engine.compile(
        {
            "column": [
                {
                    "name": "t",
                    "path": "effective.ofType(dateTime) | effective.ofType(Period).start",
                    "type": "dateTime",
                }
            ]
        }
    )
    assert engine.rows(view, {"effectivePeriod": {"start": "2020-01-01"}}) == [(dt.datetime(2020, 1, 1),)]
    both = {"effectiveDateTime": "2021-02-03", "effectivePeriod": {"start": "2020-01-01"}}
    assert engine.rows(view, both) == [(dt.datetime(2021, 2, 3),)]
    assert engine.rows(view, {}) == [(None,)]


def test_a_column_takes_the_first_of_several_values(engine):
    view = engine.compile({"column": [{"name": "code", "path": "category.coding.code"}]})
    resource = {"category": [{"coding": [{"system": "x"}, {"code": "a"}]}, {"coding": [{"code": "b"}]}]}
    assert engine.rows(view, resource) == [("a",)]


def test_foreach_gives_one_row_per_item_and_none_when_there_are_no_items(engine):
    view = engine.compile(
        {"column": [{"name": "id", "path": "id"}]},
        {"forEach": "code.coding", "column": [{"name": "code", "path": "code"}]},
    )
    assert engine.rows(view, {"id": "1", "code": {"coding": [{"code": "a"}, {"code": "b"}]}}) == [
        ("1", "a"),
        ("1", "b"),
    ]
    assert engine.rows(view, {"id": "1", "code": {"coding": []}}) == []
    assert engine.rows(view, {"id": "1"}) == []


def test_foreachornull_gives_one_row_of_nulls_when_there_are_no_items(engine):
    view = engine.compile(
        {"column": [{"name": "id", "path": "id"}]},
        {"forEachOrNull": "code.coding", "column": [{"name": "code", "path": "code"}]},
    )
    assert engine.rows(view, {"id": "1"}) == [("1", None)]
    assert engine.rows(view, {"id": "1", "code": {"coding": [{"code": "a"}]}}) == [("1", "a")]


def test_nested_selects_multiply_out_per_focus(engine):
    view = engine.compile(
        {"column": [{"name": "id", "path": "id"}]},
        {
            "forEach": "component",
            "column": [{"name": "v", "path": "value.ofType(integer)", "type": "integer"}],
            "select": [{"forEachOrNull": "code.coding", "column": [{"name": "code", "path": "code"}]}],
        },
    )
    resource = {
        "id": "1",
        "component": [
            {"valueInteger": 1, "code": {"coding": [{"code": "a"}, {"code": "b"}]}},
            {"valueInteger": 2},
        ],
    }
    assert engine.rows(view, resource) == [("1", 1, "a"), ("1", 1, "b"), ("1", 2, None)]


def test_two_sibling_foreach_selects_give_their_cross_product():
    # Dict compiler only: `a`, `b` and `x` are no FHIR elements, so no shape has them; the twin below
    # runs on both compilers.
    view = compile_view(
        {"forEach": "a", "column": [{"name": "a", "path": "x"}]},
        {"forEach": "b", "column": [{"name": "b", "path": "x"}]},
    )
    assert rows(view, {"a": [{"x": "1"}, {"x": "2"}], "b": [{"x": "3"}, {"x": "4"}]}) == [
        ("1", "3"),
        ("1", "4"),
        ("2", "3"),
        ("2", "4"),
    ]


def test_two_sibling_foreach_selects_of_fhir_elements_give_their_cross_product(engine):
    view = engine.compile(
        {"forEach": "category", "column": [{"name": "a", "path": "text"}]},
        {"forEach": "component", "column": [{"name": "b", "path": "code.text"}]},
    )
    resource = {
        "category": [{"text": "1"}, {"text": "2"}],
        "component": [{"code": {"text": "3"}}, {"code": {"text": "4"}}],
    }
    assert engine.rows(view, resource) == [("1", "3"), ("1", "4"), ("2", "3"), ("2", "4")]
    assert engine.rows(view, {**resource, "component": []}) == []


def test_where_filters_items_by_an_element_value(engine):
    view = engine.compile(
        {"column": [{"name": "mrn", "path": "identifier.where(system = 'urn:mrn').value"}]},
        resource="Patient",
    )
    resource = {"identifier": [{"system": "urn:other", "value": "x"}, {"system": "urn:mrn", "value": "42"}]}
    assert engine.rows(view, resource) == [("42",)]
    assert engine.rows(view, {"identifier": [{"system": "urn:other", "value": "x"}]}) == [(None,)]


def test_extension_selects_extensions_by_url(engine):
    view = engine.compile(
        {
            "forEach": "code.coding",
            "column": [{"name": "certainty", "path": "extension('http://x/certainty').valueCoding.code"}],
        }
    )
    coding = {
        "extension": [
            {"url": "http://x/other", "valueCoding": {"code": "no"}},
            {"url": "http://x/certainty", "valueCoding": {"code": "G"}},
        ]
    }
    assert engine.rows(view, {"code": {"coding": [coding]}}) == [("G",)]


def test_exists_is_true_when_the_path_has_a_value_and_false_otherwise(engine):
    view = engine.compile(
        {
            "column": [
                {"name": "deceased", "path": "deceasedBoolean | deceasedDateTime.exists()", "type": "boolean"}
            ]
        },
        resource="Patient",
    )
    assert engine.rows(view, {"deceasedDateTime": "2020-01-01"}) == [(True,)]
    assert engine.rows(view, {"deceasedBoolean": False}) == [(False,)]
    assert engine.rows(view, {}) == [(False,)]


def test_getreferencekey_gives_the_id_of_a_reference_of_the_named_type_only(engine):
    view = engine.compile({"column": [{"name": "p", "path": "subject.getReferenceKey(Patient)"}]})
    assert engine.rows(view, {"subject": {"reference": "Patient/123"}}) == [("123",)]
    # Anything but a plain `Type/id` is the resolver's to read, which only the row-by-row reader has.
    with engine.handed_back():
        assert engine.rows(
            view, {"subject": {"reference": "https://fhir.example.org/fhir/Patient/9/_history/2"}}
        ) == [("9",)]
    with engine.handed_back():
        assert engine.rows(view, {"subject": {"reference": "Group/123"}}) == [(None,)]
    with engine.handed_back():
        assert engine.rows(view, {"subject": {"identifier": {"value": "x"}}}) == [("?identifier=|x",)]
    assert engine.rows(view, {"subject": {"display": "no reference at all"}}) == [(None,)]


def test_the_resolver_decides_what_a_reference_key_is():
    # Dict compiler only: the shaped one has no resolver, it hands such references back (test above).
    view = compile_view({"column": [{"name": "p", "path": "subject.getReferenceKey(Patient)"}]})
    resolver = {"urn:uuid:1": "p-1"}
    assert view.rows(
        {"subject": {"reference": "urn:uuid:1"}}, lambda e, _t: resolver.get(e["reference"])
    ) == [("p-1",)]


def test_datetimes_are_stored_as_naive_utc_and_partial_dates_as_their_first_instant():
    assert parse_datetime("2024-01-02T03:04:05+01:00") == dt.datetime(2024, 1, 2, 2, 4, 5)
    assert parse_datetime("2024-01-02T03:04:05Z") == dt.datetime(2024, 1, 2, 3, 4, 5)
    assert parse_datetime("2024-01-02T03:04:05.123456789") == dt.datetime(2024, 1, 2, 3, 4, 5, 123456)
    assert parse_datetime("2024-01") == dt.datetime(2024, 1, 1)
    assert parse_datetime("2024") == dt.datetime(2024, 1, 1)
    assert parse_date("1968-07") == dt.date(1968, 7, 1)


@pytest.mark.parametrize(
    "value",
    [
        "2024-13-01",
        "2024-02-30",
        "24-01-01",
        "2024-01-02T25:00:00Z",
        "today",
        2024,
        "2024-01-02T03:04+01:00x",
        "2024-01-02 03:04:05",
    ],
)
def test_a_malformed_datetime_is_an_element_type_error(value):
    with pytest.raises(ElementTypeError):
        parse_datetime(value)


def test_every_standard_view_compiles_with_a_typed_arrow_schema():
    views = standard_views()
    assert {"patient", "condition", "observation", "encounter", "procedure"} <= set(views)
    for name, view in views.items():
        assert view.schema.names[0] == "id", name
        assert all(isinstance(field.type, pa.DataType) for field in view.schema)


def test_every_standard_view_compiles_for_its_shape():
    shapes = resource_shapes()
    for view in standard_views().values():
        assert callable(compile_for_shape(view, shapes[view.resource])), view.name


# --- explaining what is wrong ---------------------------------------------------------------------

PATIENT_1 = {"reference": "Patient/1"}


def explain_standard(table: str, resource: dict) -> str:
    view = standard_views()[table]
    with pytest.raises((ElementTypeError, AttributeError, TypeError)):
        view.rows(resource, resolve_reference)
    return view.explain(resource, resolve_reference)


def test_explain_names_a_primitive_of_the_wrong_json_type():
    message = explain_standard("patient", {"resourceType": "Patient", "id": "1", "birthDate": 1980})
    assert message.startswith("Patient.birthDate: expected a FHIR date")
    assert "number" in message


def test_explain_names_a_string_where_a_reference_object_belongs():
    message = explain_standard(
        "observation", {"resourceType": "Observation", "id": "o", "subject": "Patient/1"}
    )
    assert message.startswith("Observation.subject: ")
    assert "Reference" in message or "object" in message


def test_explain_names_a_string_where_a_foreach_expects_objects():
    resource = {"resourceType": "Observation", "id": "o", "subject": PATIENT_1, "code": {"coding": "x"}}
    assert explain_standard("observation", resource).startswith("Observation.code.coding: expected an object")


def test_explain_names_a_quantity_value_given_as_a_string():
    resource = {
        "resourceType": "Observation",
        "id": "o",
        "subject": PATIENT_1,
        "valueQuantity": {"value": "12"},
    }
    message = explain_standard("observation", resource)
    assert message == "Observation.valueQuantity.value: expected a number, got string '12'"


def test_explain_names_the_item_of_a_foreach_that_is_wrong():
    resource = {
        "resourceType": "Observation",
        "id": "o",
        "subject": PATIENT_1,
        "component": [
            {"code": {"coding": [{"code": "a"}]}, "valueQuantity": {"value": 1}},
            {"code": {"coding": [{"code": "b"}]}, "valueQuantity": {"value": "12"}},
        ],
    }
    message = explain_standard("observation_component", resource)
    assert message == "Observation.component[1].valueQuantity.value: expected a number, got string '12'"


def test_explain_looks_into_nested_selects():
    resource = {
        "resourceType": "Consent",
        "id": "c",
        "patient": PATIENT_1,
        "provision": {
            "provision": [
                {"type": "permit", "code": [{"coding": [{"code": "2.16.840.1.113883.3.1937.777.24.5.3.8"}]}]},
                {"type": "permit", "code": [{"coding": [{"code": 8}]}]},
            ]
        },
    }
    assert explain_standard("consent", resource) == (
        "Consent.provision.provision[1].code[0].coding[0].code: expected a string, got number '8'"
    )


def test_explain_names_a_choice_element_by_its_json_key():
    resource = {"resourceType": "Condition", "id": "c", "subject": PATIENT_1, "onsetPeriod": {"start": True}}
    assert explain_standard("condition", resource).startswith(
        "Condition.onsetPeriod.start: expected a FHIR dateTime"
    )


# Values that JSON can hold, to put where a view expects something else.
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["", "x", "2020-01-01", "Patient/1"]),
    lambda children: (
        st.lists(children, max_size=2)
        | st.dictionaries(
            st.sampled_from(["coding", "code", "system", "value", "reference", "start", "valueQuantity"]),
            children,
            max_size=3,
        )
    ),
    max_leaves=6,
)
_observation_elements = st.dictionaries(
    st.sampled_from(
        [
            "subject",
            "code",
            "category",
            "effectiveDateTime",
            "effectivePeriod",
            "valueQuantity",
            "valueCodeableConcept",
            "component",
            "issued",
            "encounter",
            "specimen",
            "valueBoolean",
        ]
    ),
    _json_values,
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(_observation_elements)
def test_every_resource_a_view_cannot_flatten_gets_an_explanation_naming_an_element(elements):
    resource = {"resourceType": "Observation", "id": "o", **elements}
    for view in (standard_views()["observation"], standard_views()["observation_component"]):
        try:
            view.rows(resource, resolve_reference)
        except Exception:
            message = view.explain(resource, resolve_reference)
            assert message.startswith("Observation.") and ": " in message, message
            assert "unexpected structure" not in message


@settings(max_examples=300, deadline=None)
@given(_observation_elements)
def test_the_shaped_compiler_reads_what_its_shape_accepts_as_the_dict_compiler_does(elements):
    resource = {"resourceType": "Observation", "id": "o", **elements}
    dict_engine, shaped_engine = DictEngine(), ShapedEngine()
    for name in ("observation", "observation_component"):
        view = standard_views()[name]
        shape = resource_shapes()["Observation"]
        view_for_shape = CompiledView(view.view)
        view_for_shape.shaped = shape, compile_for_shape(view, shape)  # type: ignore[attr-defined]
        try:
            shaped = shaped_engine.rows(view_for_shape, resource)
        except Exception:  # NeedsRowReader, a line its shape refuses, a date it refuses: as the strict
            continue  # reader does, it leaves these to the row-by-row reader
        assert dict_engine.rows(view, resource) == shaped
