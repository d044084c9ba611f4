"""ViewDefinitions, arranged as a query model and the engines that read it (as ehrQL arranges its own).

The model:
    fhirpath.py        the FHIRPath subset the views use, parsed into frozen step dataclasses
    model.py           ViewDefinition / Select / Column, `load_view` (parses and normalises every path,
                       so a path no engine can read fails when the view is loaded), the standard views
    steps.py           `StepVisitor`, the one walk over a path's steps that every engine below
                       subclasses; `CodeSource` for the two code generators; the reference rule all
                       readers share (`plain_reference_test`, `PATIENT_ELEMENTS`, `Resolver`)

The engines, each a StepVisitor:
    interpret.py       the checked walk over parsed JSON, the reference: `explain` says which element
                       a compiled view cannot read, and why
    compile_json.py    codegen over parsed JSON dicts: `CompiledView`, `standard_views`, `patient_of`;
                       run by the row-by-row reader (site/ingest/rows.py)
    compile_shaped.py  codegen over resources decoded by msgspec into their shape, without checks;
                       `NeedsRowReader` hands back what only the row-by-row reader can read. The ingest's
                       hot path, run by the strict reader (site/ingest/strict.py)
    shapes.py          the msgspec shape of each resource type, built from the views' paths and
                       `elements.json` (FHIR's types and cardinalities of the elements they read)

The views themselves are data: `datenraum/fhir/views/*.json`. tests/test_views.py states the view
semantics once and runs them on both compilers.
"""
