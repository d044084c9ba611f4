"""The engines that answer the query model.

- `sql`: the compiler of a structured query into one SQL statement, for DuckDB, Spark or PostgreSQL.
- `reference`: the independent in-memory evaluator over raw FHIR resources.
"""
