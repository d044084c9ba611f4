"""The sample terminology: fine sample types (SNOMED CT, MIABIS) onto the Sample Locator's coarse
categories, and storage temperature ranges onto MIABIS' temperature classes.

A specimen's category comes from the most specific coding it carries: a MIABIS detailed type first (it
tells frozen from fixed tissue, which the SNOMED types of the MII value set do not), then SNOMED CT, else
`Unknown`. The shipped table (`sample_types.tsv`) lists where each code comes from; `SOURCE.md` names the
sources and their licences. A code missing from the table is `Unknown`, never guessed from its display.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "CATEGORIES",
    "MIABIS_SAMPLE_TYPE",
    "MIABIS_STORAGE_TEMPERATURE",
    "SNOMED",
    "TEMPERATURE_CLASSES",
    "UNKNOWN",
    "Category",
    "TemperatureClass",
    "category_of",
    "sample_types",
    "temperature_class",
]

SNOMED = "http://snomed.info/sct"
MIABIS_SAMPLE_TYPE = "https://fhir.bbmri-eric.eu/fhir/CodeSystem/miabis-detailed-samply-type-cs"
MIABIS_STORAGE_TEMPERATURE = "https://fhir.bbmri-eric.eu/fhir/CodeSystem/miabis-storage-temperature-cs"
UNKNOWN = "Unknown"


@dataclass(frozen=True)
class Category:
    """A coarse sample category of the Sample Locator, in its group of the search's type tree."""

    code: str
    group: str
    label_en: str
    label_de: str


CATEGORIES: tuple[Category, ...] = (
    Category("whole-blood", "blood", "Whole blood", "Vollblut"),
    Category("blood-plasma", "blood", "Plasma", "Plasma"),
    Category("blood-serum", "blood", "Serum", "Serum"),
    Category("buffy-coat", "blood", "Buffy coat", "Buffy Coat"),
    Category("dna", "nucleic-acids", "DNA", "DNA"),
    Category("rna", "nucleic-acids", "RNA", "RNA"),
    Category("tissue-ffpe", "tissue", "Tissue, FFPE", "Gewebe, FFPE"),
    Category("tissue-frozen", "tissue", "Tissue, frozen", "Gewebe, tiefgefroren"),
    Category("tissue-other", "tissue", "Tissue, other", "Gewebe, sonstiges"),
    Category("urine", "liquids", "Urine", "Urin"),
    Category("csf-liquor", "liquids", "Cerebrospinal fluid", "Liquor"),
    Category("saliva", "liquids", "Saliva", "Speichel"),
    Category("stool-faeces", "liquids", "Stool", "Stuhl"),
    Category("swab", "liquids", "Swab", "Abstrich"),
    Category("bone-marrow", "liquids", "Bone marrow", "Knochenmark"),
    Category("ascites", "liquids", "Ascites", "Aszites"),
    Category("liquid-other", "liquids", "Other body fluid", "Sonstige Körperflüssigkeit"),
    Category("derivative-other", "other", "Other derivative", "Sonstiges Derivat"),
    Category(UNKNOWN, "other", "Unknown", "Unbekannt"),
)
_CATEGORY_CODES = frozenset(category.code for category in CATEGORIES)


@dataclass(frozen=True)
class TemperatureClass:
    """A MIABIS storage temperature class: its code and the range (°C) a storage step must lie in."""

    code: str
    low: float | None
    high: float | None
    label_en: str


TEMPERATURE_CLASSES: tuple[TemperatureClass, ...] = (
    TemperatureClass("RT", 15, 25, "Room temperature"),
    TemperatureClass("2to10", 2, 10, "2 to 10 °C"),
    TemperatureClass("-18to-35", -35, -18, "-18 to -35 °C"),
    TemperatureClass("-60to-85", -85, -60, "-60 to -85 °C"),
    TemperatureClass("LN", -196, -150, "Liquid nitrogen, -150 to -196 °C"),
    TemperatureClass("Other", None, None, "Other temperature"),
    TemperatureClass(UNKNOWN, None, None, "No storage information"),
)
_TEMPERATURE_CODES = frozenset(t.code for t in TEMPERATURE_CLASSES)
_CELSIUS = frozenset({"Cel", None})


@functools.cache
def sample_types() -> Mapping[tuple[str, str], str]:
    """The shipped table: (system, code) of a fine sample type -> its coarse category."""
    text = importlib.resources.files(__package__).joinpath("sample_types.tsv").read_text("utf-8")
    table: dict[tuple[str, str], str] = {}
    for line, row in enumerate(csv.DictReader(text.splitlines(), delimiter="\t"), start=2):
        if row["category"] not in _CATEGORY_CODES:
            raise ValueError(f"sample_types.tsv, line {line}: unknown category {row['category']!r}")
        table[(row["system"], row["code"])] = row["category"]
    return MappingProxyType(table)


def category_of(codings: Iterable[tuple[str | None, str | None]]) -> str:
    """The coarse category of a specimen with these type codings (system, code): MIABIS before SNOMED CT."""
    table = sample_types()
    by_system: dict[str, str] = {}
    for system, code in codings:
        if system is not None and code is not None and (system, code) in table:
            by_system.setdefault(system, table[(system, code)])
    return by_system.get(MIABIS_SAMPLE_TYPE) or by_system.get(SNOMED) or UNKNOWN


def temperature_class(
    low: float | None, high: float | None, unit: str | None = "Cel", miabis_code: str | None = None
) -> str:
    """The class of one storage step: its MIABIS code where it names one, else the class whose range holds
    the step's whole temperature range (`Other` when none does, or the unit is not degrees Celsius), and
    `Unknown` for a step without any temperature."""
    if miabis_code in _TEMPERATURE_CODES:
        return miabis_code
    if low is None and high is None:
        return UNKNOWN
    if unit not in _CELSIUS:
        return "Other"
    low = high if low is None else low
    high = low if high is None else high
    for candidate in TEMPERATURE_CLASSES:
        if candidate.low is not None and candidate.low <= low and high <= candidate.high:
            return candidate.code
    return "Other"
