"""The engine's output pinned byte for byte: every Bundle of the MII KDS test data and of the hand-made
identifying job, through both shipped profiles, with what the engine counted (the report's numbers).

The digests are of the engine that prunes to the keep-list, then walks the rules (and of a one-pass
variant, which gave the same bytes): a change made for speed must not change a byte of what a site
delivers. A deliberate change of the profiles' behaviour changes the digest: run this module's `digest`
and say why in the commit."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest
from deidentify_fixtures import core_bundle, patient_bundle

from datenraum.deidentify.engine import Deidentifier
from datenraum.deidentify.keys import ProjectKeys
from datenraum.deidentify.profile import load_profile
from datenraum.deidentify.pseudonyms import PseudonymService

SECRET = bytes.fromhex("11" * 32)


def digest(profile: str, bundles: list[dict], shared: dict | None) -> str:
    engine = Deidentifier(load_profile(profile), ProjectKeys.derive(SECRET, "P1"), PseudonymService(SECRET))
    sha = hashlib.sha256()
    if shared is not None:
        engine.register_shared(shared)
        sha.update(orjson.dumps(engine.bundle(shared, shared=True)) + b"\n")
    for bundle in bundles:
        sha.update(orjson.dumps(engine.bundle(bundle)) + b"\n")
    counted = {
        "stats": engine.stats,
        "in": engine.resources_in,
        "out": engine.resources_out,
        "dropped": engine.dropped,
    }
    sha.update(orjson.dumps(counted, option=orjson.OPT_SORT_KEYS))
    return sha.hexdigest()


def kds_bundles(folder: Path) -> list[dict]:
    return [orjson.loads(p.read_bytes()) for p in sorted(folder.glob("Bundle-*.json"))]


def identifying_bundles() -> list[dict]:
    return [patient_bundle(n, encounters=2, observations=3) for n in range(12)]


KDS = {
    "fdpg": "c5eb75c94e108928e2fe3436f9d39a7c3be8b9931bec3998d4004438f676dc43",
    "fts": "9311d3e148485c1274adf7489ef8ace01160e2bfca42454d5cb83dfd7b2d53d9",
}
IDENTIFYING = {
    "fdpg": "72a079332f799cb825be0e7bef10d6d52c6ccec8ba989e6081b070d8895cfa63",
    "fts": "1f6943816a15fc96646d8bf7f662ae6f088e7b34fe33b51c72d961cef54bbdf9",
}


@pytest.mark.parametrize("profile", sorted(KDS))
def test_the_output_on_the_mii_kds_test_data_is_unchanged_byte_for_byte(profile, mii_kds_testdata):
    assert digest(profile, kds_bundles(mii_kds_testdata), None) == KDS[profile]


@pytest.mark.parametrize("profile", sorted(IDENTIFYING))
def test_the_output_on_identifying_bundles_is_unchanged_byte_for_byte(profile):
    assert digest(profile, identifying_bundles(), core_bundle()) == IDENTIFYING[profile]
