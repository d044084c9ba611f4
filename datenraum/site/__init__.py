"""The site node: a hospital's FHIR data in a store of its own, loaded, compacted, and asked only by the
hub's tasks, through an agent that connects outward. May import `fhir`, `query`, `privacy` and
`protocol`; never `hub`.

- `store`: the site store: immutable Parquet segments (`Segment`) published atomically through numbered
  manifests (`Manifest`), read through a `Snapshot`.
- `ingest/`: `datenraum ingest`, loading FHIR NDJSON and Bundles into the store, all or nothing per load
  (plan, read in worker processes by the strict and the row-by-row reader, commit; see its docstring).
- `compact`: `datenraum compact`, merging a store's segments into one, sorted for queries.
- `feasibility`: counting the patients a structured query selects, on a snapshot.
- `agent/`: `datenraum site serve`, the site agent: long-polls the hub, answers its tasks with
  obfuscated counts, journals every answer (loop, config, state).
"""
