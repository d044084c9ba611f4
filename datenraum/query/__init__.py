"""The query model shared by every part, the engines that answer it, and the catalogue to build it from.

- `model`: MII structured queries (CCDL) as frozen values, parsed and written as the portal's JSON.
- `check`: rejects what the mapping cannot answer, before any engine runs (both engines call it).
- `mapping` (`mapping.json`): where each criterion context lives, as store tables and as FHIR elements.
- `terminology`, `units`: code hierarchies (ICD-10-GM, OPS, ATC) and UCUM unit conversion.
- `engines/`: the `Engine` interface (`base`), the SQL compiler for any dialect (`sql`) and the
  in-memory reference evaluator (`reference`).
- `catalogue/`: the concept catalogue of the query builder (`load`, `build`, `search`, `data/`).

Imports nothing from `site` or `hub`.
"""
