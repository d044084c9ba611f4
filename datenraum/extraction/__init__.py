"""Extraction rules that need no store: the CRTDL model, MII profiles, selection and redaction, consent.

- `crtdl`: CRTDL v0.1 / v1 as frozen values; strict (v1 schema with format assertion) and legacy (what
  TORCH accepts) reading, every violation with its JSON path; writing v1; group-name slugs.
- `profiles`: the profiles' element model (shipped digests of the MII StructureDefinitions in
  `profiles/`, or a site's own StructureDefinitions), attributeRef compilation to element paths.
- `redact`: copying the selected elements of a resource and redacting the rest to the profile.
- `consent`: the MII broad-consent rules as TORCH applies them, with an explanation record per patient.

The site side (reading the store, jobs, files, HTTP) is `datenraum.site.extraction`.
"""
