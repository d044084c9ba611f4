"""`datenraum demo`: several synthetic hospitals on this machine, each with its own site store, and a
feasibility query answered at every site.

The sites differ the way real ones do: size, seed, and case mix (see `datenraum.synth` profiles). The
demo is idempotent: a site whose store already holds the data of its recipe is reused, so a second run
starts in seconds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from datenraum.query.model import StructuredQuery, parse_query

__all__ = ["DEMO_QUERY", "DEMO_SITES", "DemoSite", "prepare_sites"]


@dataclass(frozen=True)
class DemoSite:
    name: str
    patients: int
    seed: int
    profile: int


DEMO_SITES = (
    DemoSite("Universitätsklinikum Nord", 4000, 11, 0),
    DemoSite("Universitätsklinikum Süd", 2500, 22, 1),
    DemoSite("Universitätsmedizin West", 1500, 33, 2),
)

# "Women over 50 with type 2 diabetes and HbA1c above 6.5 %, without any cancer diagnosis."
DEMO_QUERY: StructuredQuery = parse_query(
    {
        "version": "https://medizininformatik-initiative.de/fdpg/StructuredQuery/v3/schema",
        "display": "Frauen über 50 mit Typ-2-Diabetes und HbA1c > 6,5 %, ohne Krebsdiagnose",
        "inclusionCriteria": [
            [
                {
                    "context": {"system": "fdpg.mii.cds", "code": "Patient", "display": "Patient"},
                    "termCodes": [
                        {"system": "http://snomed.info/sct", "code": "263495000", "display": "Geschlecht"}
                    ],
                    "valueFilter": {
                        "type": "concept",
                        "selectedConcepts": [
                            {
                                "system": "http://hl7.org/fhir/administrative-gender",
                                "code": "female",
                                "display": "Female",
                            }
                        ],
                    },
                }
            ],
            [
                {
                    "context": {"system": "fdpg.mii.cds", "code": "Patient", "display": "Patient"},
                    "termCodes": [
                        {"system": "http://snomed.info/sct", "code": "424144002", "display": "Alter"}
                    ],
                    "valueFilter": {
                        "type": "quantity-comparator",
                        "comparator": "gt",
                        "value": 50,
                        "unit": {"code": "a", "display": "Jahre"},
                    },
                }
            ],
            [
                {
                    "context": {"system": "fdpg.mii.cds", "code": "Diagnose", "display": "Diagnose"},
                    "termCodes": [
                        {
                            "system": "http://fhir.de/CodeSystem/bfarm/icd-10-gm",
                            "code": "E11",
                            "display": "Diabetes mellitus, Typ 2",
                        }
                    ],
                }
            ],
            [
                {
                    "context": {
                        "system": "fdpg.mii.cds",
                        "code": "Laboruntersuchung",
                        "display": "Laboruntersuchung",
                    },
                    "termCodes": [{"system": "http://loinc.org", "code": "4548-4", "display": "HbA1c"}],
                    "valueFilter": {
                        "type": "quantity-comparator",
                        "comparator": "gt",
                        "value": 6.5,
                        "unit": {"code": "%", "display": "%"},
                    },
                }
            ],
        ],
        "exclusionCriteria": [
            [
                {
                    "context": {"system": "fdpg.mii.cds", "code": "Diagnose", "display": "Diagnose"},
                    "termCodes": [
                        {
                            "system": "http://fhir.de/CodeSystem/bfarm/icd-10-gm",
                            "code": "C00-C97",
                            "display": "Bösartige Neubildungen",
                        }
                    ],
                }
            ],
        ],
    }
)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def prepare_sites(
    workdir: Path, sites: tuple[DemoSite, ...] = DEMO_SITES, say: Callable[[str], None] = print
) -> dict[str, Path]:
    """Generate and ingest each site's data unless its store already holds exactly that recipe."""
    from datenraum.site.ingest import ingest
    from datenraum.synth import generate

    stores = {}
    for site in sites:
        folder = workdir / _slug(site.name)
        recipe = {"patients": site.patients, "seed": site.seed, "profile": site.profile}
        marker = folder / "recipe.json"
        store = folder / "store"
        if not (marker.exists() and orjson.loads(marker.read_bytes()) == recipe):
            say(
                f"{site.name}: generating {site.patients} patients (seed {site.seed}, profile {site.profile})"
            )
            data = folder / "data"
            generate(data, site.patients, site.seed, site_profile=site.profile)
            report = ingest(store, [data])
            say(f"{site.name}: loaded {report.total('added')} resources in {report.seconds:.1f} s")
            marker.write_bytes(orjson.dumps(recipe))
        stores[site.name] = store
    return stores


def run(workdir: Path, say: Callable[[str], None] = print) -> dict[str, int]:
    """Prepare the demo sites and answer the demo query at each one (exact site-local counts)."""
    from datenraum.site.feasibility import count
    from datenraum.site.store import Store

    stores = prepare_sites(workdir, say=say)
    counts = {}
    say(f"\nQuery: {DEMO_QUERY.display}")
    for name, path in stores.items():
        with Store(path).snapshot() as snapshot:
            counts[name] = count(snapshot, DEMO_QUERY, today=dt.date.today())
        say(f"  {name:<30} {counts[name]:>6} patients")
    say(f"  {'all sites':<30} {sum(counts.values()):>6} patients")
    return counts
