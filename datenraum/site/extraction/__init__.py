"""Extraction on the site store: a CRTDL in, TORCH-compatible NDJSON and analysis tables out.

- `source`: the one module that reads the store (plain SQL over the `resource` table);
- `job`: the job (validation first, cohort, batches, consent, references, redaction), resumable;
- `output`: the job folder, reports and the per-group Parquet/CSV tables with their data dictionary;
- `http`: the TORCH operation `POST /fhir/$extract-data` and its status polling, site-local.

The rules that need no store (CRTDL, profiles, redaction, consent) are `datenraum.extraction`.
"""

from datenraum.site.extraction.job import ExtractionError, ExtractionOutOfMemory, JobOptions, run_extraction

__all__ = ["ExtractionError", "ExtractionOutOfMemory", "JobOptions", "run_extraction"]
