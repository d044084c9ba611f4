"""The probe's averaging and differencing attack (issue 12, P-1) against real agents over HTTP.

The probe asked reordered, duplicated and re-nested variants of one question and averaged the answers,
then took the difference of two pinned counts (E11, and E11 without C00-C97) to recover a count the hub
shows only as "below threshold". With the noise keyed on the cohort, every variant gets the answer of
the first, so the attacker holds one answer per cohort, whatever the number of variants.

The hub's reuse is switched off here (a reuse window of a millisecond), so that every variant reaches the
sites: the sites' answers alone must already be identical. (With reuse on, the hub answers the variants
from its stored result before asking any site: tests/hub/test_hub_api.py.)
"""

from __future__ import annotations

from typing import Any

from datenraum.query.model import parse_query
from datenraum.site.feasibility import count
from datenraum.site.store import Store

ICD = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
# A second site with sharper settings: without rounding, fresh noise would show at once.
SHARP = "[hub]\nwait = 2\nbackoff_initial = 0.1\nbackoff_cap = 0.5\n[obfuscation]\nnoise = 20\nrounding = 1\n"
SITES = ["p1-default", "p1-sharp"]


def dx(code: str) -> dict[str, Any]:
    return {
        "context": {"system": "fdpg.mii.cds", "code": "Diagnose"},
        "termCodes": [{"system": ICD, "code": code}],
    }


E11, CANCER = dx("E11"), dx("C00-C97")
AVERAGING = [  # variants of [[E11], [C00-C97]], as the probe wrote them
    {"inclusionCriteria": [[E11], [CANCER]]},
    {"inclusionCriteria": [[CANCER], [E11]]},
    {"inclusionCriteria": [[E11, E11], [CANCER]]},
    {"inclusionCriteria": [[E11], [CANCER, CANCER, CANCER]]},
    {"inclusionCriteria": [[CANCER, CANCER], [E11, E11, E11]]},
    {"inclusionCriteria": [[E11], [CANCER], [E11, CANCER]]},  # re-nested: an absorbed group
]
WIDE = [
    {"inclusionCriteria": [[E11]]},
    {"inclusionCriteria": [[E11, E11]]},
    {"inclusionCriteria": [[E11], [E11]]},
    {"inclusionCriteria": [[E11]], "exclusionCriteria": [[E11, dx("Z99.9")], [dx("Z99.9"), E11]]},
]
NARROW = [  # E11 without C00-C97: the wide cohort minus the few patients of AVERAGING
    {"inclusionCriteria": [[E11]], "exclusionCriteria": [[CANCER]]},
    {"inclusionCriteria": [[E11]], "exclusionCriteria": [[CANCER], [CANCER]]},
    {"inclusionCriteria": [[E11, E11]], "exclusionCriteria": [[CANCER, CANCER]]},
    {"inclusionCriteria": [[E11], [E11]], "exclusionCriteria": [[CANCER], [CANCER, E11]]},
]


def answers(fed, queries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = []
    for query in queries:
        response = fed.researcher.submit(query, sites=SITES)
        assert response.status_code == 201, response.text  # a new query each time: no reuse here
        ids.append(response.json()["id"])
    results = [fed.researcher.result(query_id, timeout=30) for query_id in ids]
    return [{site["site"]: site["count"] for site in result["sites"]} for result in results]


def test_variants_of_a_question_gain_an_attacker_nothing_beyond_one_answer(start_federation, tmp_path):
    fed = start_federation(reuse_window_seconds="0.001")
    sharp = tmp_path / "sharp.toml"
    sharp.write_text(SHARP)
    for name in SITES:
        fed.add_site(name)
    fed.start_agent(SITES[0])
    fed.processes.start_agent(SITES[1], fed.store, fed.credentials[SITES[1]], config=sharp)
    fed.researcher.wait_for_sites(SITES)

    first = {}
    for name, family in (("both", AVERAGING), ("wide", WIDE), ("narrow", NARROW)):
        seen = answers(fed, family)
        assert all(answer == seen[0] for answer in seen), seen  # every variant: the first answer again
        first[name] = seen[0]

    # The difference the hub hides stays hidden: the attacker has one noisy answer for each of the two
    # cohorts, whose difference is off by up to twice the noise plus rounding, and no way to ask again.
    with Store(fed.store).snapshot() as snapshot:
        exact = {
            name: count(snapshot, parse_query(family[0]))
            for name, family in [("wide", WIDE), ("narrow", NARROW), ("both", AVERAGING)]
        }
    assert exact["wide"] - exact["narrow"] == exact["both"]
    assert exact["both"] < 10  # the store's few patients with both diagnoses: below the threshold
    assert first["both"][SITES[0]] == {"below_threshold": True}
