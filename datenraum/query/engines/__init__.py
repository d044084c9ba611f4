"""The engines that answer the query model, and the one interface they share.

- `base`: the `Engine` protocol (`patient_ids`, `count`; an engine is bound to its data when built).
- `sql`: the compiler of a structured query into one SQL statement, for DuckDB, Spark or PostgreSQL.
- `reference`: the independent in-memory evaluator over raw FHIR resources, and `ReferenceEngine`.

The store-backed engine runs the compiled SQL at the site (`datenraum.site.feasibility.StoreEngine`),
since `query` imports nothing from `site` or `hub`.
"""
