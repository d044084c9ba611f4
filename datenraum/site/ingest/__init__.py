"""`datenraum ingest`: load FHIR NDJSON and Bundles into a site store, all or nothing per load."""

from datenraum.site.ingest.commit import CHUNK_BYTES, IngestError, LoadReport, ingest

__all__ = ["CHUNK_BYTES", "IngestError", "LoadReport", "ingest"]
