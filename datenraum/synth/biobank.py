"""The biobank of a synthetic site (`datenraum synth --biobanks`), after the MII KDS biobank module.

The site has one biobank (a BBMRI-ERIC id made from the site's prefix) with two collections, liquid and
tissue. Every specimen the patient simulation draws becomes a primary sample of its collection (level
PRIMÄRPROBE, a tube of 10 ml or 0.5 g, a storage history: some minutes at room temperature, then the long
term temperature). Most primary blood samples are processed into a plasma aliquot group (4 to 8 declared
aliquots of 0.5 ml at -80 °C, not stored one by one) and a buffy coat aliquot group whose 2 aliquots are
stored (in liquid nitrogen; one in four of them has been used). Tissue is fresh frozen (liquid nitrogen)
or fixed (FFPE, room temperature), as its MIABIS type says. Derivatives share their primary sample's
availability: a withdrawn consent destroys them all.

Off by default, and with the flag the patient's own random numbers are not touched: each specimen is
processed with a generator seeded by its id, so the patient's other resources and its primary samples are
drawn exactly as without the flag (tests/test_samples.py compares the two).
"""

from __future__ import annotations

from collections.abc import Callable
from random import Random
from typing import Any

from .timeline import timestamp

__all__ = ["organizations", "process"]

Resource = dict[str, Any]
BB = "https://www.medizininformatik-initiative.de/fhir/ext/modul-biobank"
_SD = f"{BB}/StructureDefinition"
_LEVELS = f"{BB}/CodeSystem/mii-cs-biobank-probenebene"
_MIABIS_TYPE = "https://fhir.bbmri-eric.eu/fhir/CodeSystem/miabis-detailed-samply-type-cs"
_MIABIS_TEMPERATURE = (
    "https://fhir.bbmri-eric.eu/fhir/StructureDefinition/miabis-sample-storage-temperature-extension"
)
_MIABIS_TEMPERATURES = "https://fhir.bbmri-eric.eu/fhir/CodeSystem/miabis-storage-temperature-cs"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
_PROFILE = {"profile": [f"{_SD}/Specimen"]}
_STORAGE = {
    "coding": [{"system": SNOMED, "code": "1186936003", "display": "Storage of specimen (procedure)"}]
}
_TUBE = {"coding": [{"system": SNOMED, "code": "83059008", "display": "Tube, device (physical object)"}]}
# Whole blood types of the generator (codes.BLOOD_SPECIMENS) that a biobank separates into derivatives.
_WHOLE_BLOOD = frozenset({"445295009", "122555007", "258580003", "119297000"})
_PLASMA = {"system": SNOMED, "code": "119361006", "display": "Plasma specimen (specimen)"}
_BUFFY_COAT = {"system": SNOMED, "code": "258587000", "display": "Buffy coat (specimen)"}
_TEMPERATURES = {"RT": (15, 25), "-60to-85": (-85, -75), "LN": (-196, -150)}


def biobank_id(prefix: str) -> str:
    return f"{prefix}-biobank"


def collection_id(prefix: str, kind: str) -> str:
    return f"{prefix}-collection-{kind}"


def organizations(prefix: str) -> list[Resource]:
    """The site's biobank and its two collections (Organizations of the module's profile)."""
    profile = {"profile": [f"{_SD}/Organization"]}
    bbmri = f"DE_{prefix.upper().replace('.', '_')}"
    biobank = {
        "resourceType": "Organization",
        "id": biobank_id(prefix),
        "meta": profile,
        "identifier": [{"system": "http://www.bbmri-eric.eu/", "value": bbmri}],
        "name": f"Zentrale Biobank {prefix}",
        "contact": [
            {
                "purpose": {"coding": [{"system": f"{BB}/CodeSystem/ContactType", "code": "RESEARCH"}]},
                "name": {"family": "Biobank", "given": ["Anfragen"]},
                "telecom": [{"system": "email", "value": f"biobank@{prefix}.synth.example"}],
            }
        ],
    }
    collections = [
        {
            "resourceType": "Organization",
            "id": collection_id(prefix, kind),
            "meta": profile,
            "identifier": [{"system": "http://www.bbmri-eric.eu/", "value": f"{bbmri}:collection:{kind}"}],
            "name": name,
            "partOf": {"reference": f"Organization/{biobank_id(prefix)}"},
        }
        for kind, name in (("liquid", "Flüssigproben"), ("tissue", "Gewebeproben"))
    ]
    return [biobank, *collections]


def _storage(day: int, start: int, end: int | None, temperature: str) -> Resource:
    low, high = _TEMPERATURES[temperature]
    period = {"start": timestamp(day, start)} | ({"end": timestamp(day, end)} if end is not None else {})
    return {
        "extension": [
            {
                "url": f"{_SD}/Temperaturbedingungen",
                "valueRange": {
                    "low": {"value": low, "unit": "°C", "system": UCUM, "code": "Cel"},
                    "high": {"value": high, "unit": "°C", "system": UCUM, "code": "Cel"},
                },
            },
            {
                "url": _MIABIS_TEMPERATURE,
                "valueCodeableConcept": {"coding": [{"system": _MIABIS_TEMPERATURES, "code": temperature}]},
            },
        ],
        "procedure": _STORAGE,
        "timePeriod": period,
    }


def _managed(resource: Resource, prefix: str, kind: str, level: str, aliquots: int | None = None) -> None:
    extensions = [
        {
            "url": f"{_SD}/VerwaltendeOrganisation",
            "valueReference": {"reference": f"Organization/{collection_id(prefix, kind)}"},
        },
        {"url": f"{_SD}/mii-ex-biobank-ebene", "valueCoding": {"system": _LEVELS, "code": level}},
    ]
    if aliquots is not None:
        extensions.append({"url": f"{_SD}/mii-ex-biobank-anzahl-aliquots", "valueInteger": aliquots})
    resource["extension"] = [*resource.get("extension", []), *extensions]


def _container(amount: float, unit: str) -> list[Resource]:
    return [
        {"type": _TUBE, "specimenQuantity": {"value": amount, "unit": unit, "system": UCUM, "code": unit}}
    ]


def process(
    primary: Resource, moment: tuple[int, int], prefix: str, rng: Random, next_id: Callable[[], str]
) -> list[Resource]:
    """Make `primary` (as the patient simulation drew it) a biobank primary sample, and return the
    derivatives the biobank made of it."""
    day, minute = moment
    stored = min(minute + 20 + int(rng.random() * 60), 1438)
    sct = primary["type"]["coding"][0]["code"]
    tissue = sct == "119376003"
    if tissue:
        frozen = rng.random() < 0.7
        miabis = "TissueFreshFrozen" if frozen else "TissueFixed"
        primary["type"] = {"coding": [*primary["type"]["coding"], {"system": _MIABIS_TYPE, "code": miabis}]}
        _managed(primary, prefix, "tissue", "PRIMÄRPROBE")
        primary["container"] = _container(0.5, "g")
        long_term = "LN" if frozen else "RT"
        primary["processing"] = [_storage(day, minute, stored, "RT"), _storage(day, stored, None, long_term)]
        return []
    _managed(primary, prefix, "liquid", "PRIMÄRPROBE")
    primary["container"] = _container(10, "ml")
    if sct not in _WHOLE_BLOOD or rng.random() >= 0.7:
        primary["processing"] = [_storage(day, minute, stored, "RT"), _storage(day, stored, None, "-60to-85")]
        return []
    # Separated at once: what is left of the tube is the derivatives.
    primary["container"] = _container(1, "ml")
    primary["processing"] = [_storage(day, minute, stored, "RT")]
    parent = [{"reference": f"Specimen/{primary['id']}"}]

    def derivative(kind: dict, level: str, amount: float, temperature: str, **fields: Any) -> Resource:
        resource = {
            "resourceType": "Specimen",
            "id": next_id(),
            "meta": _PROFILE,
            "status": fields.pop("status", primary["status"]),
            "type": {"coding": [kind]},
            "subject": primary["subject"],
            "parent": fields.pop("parent", parent),
            "collection": {"collectedDateTime": primary["collection"]["collectedDateTime"]},
            "container": _container(amount, "ml"),
            "processing": [_storage(day, stored, None, temperature)],
        }
        _managed(resource, prefix, "liquid", level, fields.pop("aliquots", None))
        return resource

    plasma_aliquots = 4 + int(rng.random() * 5)
    plasma = derivative(_PLASMA, "ALIQUOTGRUPPE", 0.5 * plasma_aliquots, "-60to-85", aliquots=plasma_aliquots)
    buffy = derivative(_BUFFY_COAT, "ALIQUOTGRUPPE", 0.1, "LN", aliquots=2)
    aliquots = [
        derivative(
            _BUFFY_COAT,
            "ALIQUOT",
            0.05,
            "LN",
            parent=[{"reference": f"Specimen/{buffy['id']}"}],
            status="unavailable" if rng.random() < 0.25 else primary["status"],
        )
        for _ in range(2)
    ]
    return [plasma, buffy, *aliquots]
