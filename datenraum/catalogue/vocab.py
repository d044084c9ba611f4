"""The vocabularies of the catalogue: namespaces and the controlled-vocabulary (NAL) terms it uses.

Only terms that the HealthDCAT-AP R8 and DCAT-AP 3.0.1 validators accept with the vocabulary background
we ship (`shapes/background-minimal.ttl`) are used; see `shapes/SOURCE.md`.
"""

from __future__ import annotations

from rdflib import Namespace
from rdflib.namespace import DCAT, DCTERMS, FOAF, PROV, RDF, RDFS, SKOS, XSD

__all__ = [
    "ACCESS_RIGHT",
    "ADMS",
    "AVAILABILITY",
    "CODING_SYSTEM",
    "CODING_SYSTEMS",
    "COUNTRY",
    "CSVW",
    "CV",
    "DATASET_TYPE",
    "DATA_THEME",
    "DCAT",
    "DCATAP",
    "DCTERMS",
    "DPV",
    "DPVPD",
    "EHDS",
    "ELI",
    "FILE_TYPE",
    "FOAF",
    "FREQUENCY",
    "GEODCATAP",
    "HEALTH",
    "HEALTH_ACTIVITY",
    "HEALTH_CATEGORY",
    "HYDRA",
    "LANGUAGE",
    "LICENCE_CC_BY",
    "MEDIA_TYPE",
    "PREFIXES",
    "PROV",
    "PUBLISHER_TYPE",
    "RDF",
    "RDFS",
    "SKOS",
    "STANDARD",
    "VCARD",
    "XSD",
]

ADMS = Namespace("http://www.w3.org/ns/adms#")
CSVW = Namespace("http://www.w3.org/ns/csvw#")
CV = Namespace("http://data.europa.eu/m8g/")
DCATAP = Namespace("http://data.europa.eu/r5r/")
DPV = Namespace("https://w3id.org/dpv#")
DPVPD = Namespace("https://w3id.org/dpv/dpv-pd#")
ELI = Namespace("http://data.europa.eu/eli/ontology#")
GEODCATAP = Namespace("http://data.europa.eu/930/")
# "To be changed when the HealthDCAT-AP namespace is created" (R8 non-public-shapes.ttl)
HEALTH = Namespace("http://healthdataportal.eu/ns/health#")
HYDRA = Namespace("http://www.w3.org/ns/hydra/core#")
VCARD = Namespace("http://www.w3.org/2006/vcard/ns#")

_EU = "http://publications.europa.eu/resource/authority/"
_HDEU = "https://hdeu-dcat.data.health.europa.eu/resource/authority/"
ACCESS_RIGHT = Namespace(_EU + "access-right/")
AVAILABILITY = Namespace(_EU + "planned-availability/")
COUNTRY = Namespace(_EU + "country/")
DATA_THEME = Namespace(_EU + "data-theme/")
DATASET_TYPE = Namespace(_EU + "dataset-type/")
FILE_TYPE = Namespace(_EU + "file-type/")
FREQUENCY = Namespace(_EU + "frequency/")
LANGUAGE = Namespace(_EU + "language/")
HEALTH_CATEGORY = Namespace(_HDEU + "healthcategories/")
HEALTH_ACTIVITY = Namespace(_HDEU + "health-activity/")
CODING_SYSTEM = Namespace(_HDEU + "coding-system/")
STANDARD = Namespace(_HDEU + "standard/")
PUBLISHER_TYPE = Namespace(_HDEU + "publisher-type/")
MEDIA_TYPE = Namespace("http://www.iana.org/assignments/media-types/")
LICENCE_CC_BY = "https://creativecommons.org/licenses/by/4.0/"

# The European Health Data Space regulation (EU) 2025/327, the legislation every resource applies.
EHDS = "http://data.europa.eu/eli/reg/2025/327/oj"

# The code systems of FHIR data as the coding-system NAL names them. ICD-10-GM is a national
# modification of ICD-10; OPS, ATC and the rest have no term in the vocabulary we can validate against
# yet (R8 lists placeholders), so they are named in the description only.
CODING_SYSTEMS: dict[str, str] = {
    "http://fhir.de/CodeSystem/bfarm/icd-10-gm": "ICD-10",
    "http://fhir.de/CodeSystem/dimdi/icd-10-gm": "ICD-10",
    "http://hl7.org/fhir/sid/icd-10": "ICD-10",
    "http://loinc.org": "LOINC",
    "http://snomed.info/sct": "SNOMED-CT",
}

PREFIXES = {
    "adms": ADMS,
    "csvw": CSVW,
    "cv": CV,
    "dcat": DCAT,
    "dcatap": DCATAP,
    "dct": DCTERMS,
    "dpv": DPV,
    "dpv-pd": DPVPD,
    "eli": ELI,
    "foaf": FOAF,
    "geodcatap": GEODCATAP,
    "healthdcatap": HEALTH,
    "hydra": HYDRA,
    "prov": PROV,
    "skos": SKOS,
    "vcard": VCARD,
    "xsd": XSD,
}
