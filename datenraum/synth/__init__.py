"""Synthetic FHIR R4 data of the MII core data set, for testing and benchmarking a Datenraum site.

``generate(out_dir, patients, seed, site_profile=..., workers=...)`` writes one site's patients as
NDJSON files (one compact resource per line): Patient, Encounter, Condition (ICD-10-GM), laboratory
Observation (LOINC/UCUM), Procedure (OPS), MedicationStatement and MedicationAdministration referencing a
shared Medication catalogue (ATC/PZN), MII broad Consent and biobank Specimen. Diagnoses depend on age,
sex and each other; laboratory values, procedures and medication follow the diagnoses. The site profiles
(different case mixes and reporting habits) are described in ``datenraum.synth.profiles``.
With ``biobanks=True`` the specimens are a biobank's (``datenraum.synth.biobank``: collections, aliquot
groups and aliquots, storage history), and the site's biobank Organizations are written beside them.

Ids start with ``s<seed>.<site_profile>-`` so that the outputs of several sites can be merged; only the
Medication catalogue (``med-<ATC>``) is identical at every site, by design.
"""

from .profiles import SITE_PROFILES, SiteProfile
from .writer import SHARD_SIZE, GenerationSummary, generate

__all__ = ["SHARD_SIZE", "SITE_PROFILES", "GenerationSummary", "SiteProfile", "generate"]
