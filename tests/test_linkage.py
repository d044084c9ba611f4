"""Record linkage (issue 23): normalisation, CLK encoding and hardening, Dice, clustering, accuracy on the
Febrl pair, distinct counts on synthetic multi-site data, and a dictionary attack."""

from __future__ import annotations

import csv
import json
from importlib.resources import files

import numpy as np
import pytest
from shared_data import shared_data_folder

from datenraum.linkage import compare, normalise, synthetic
from datenraum.linkage.encoder import Encoder, from_base64, to_base64
from datenraum.linkage.estimate import calibrate, estimate_distinct
from datenraum.linkage.keys import project_secret
from datenraum.linkage.schema import EXTENSION, SchemaError, clkhash_schema, load_schema, parse_schema

SITE_SECRET = b"0123456789abcdef-shared-by-the-sites-only"
DE_SCHEMA = files("datenraum.linkage") / "schemas" / "de-patient-v3.json"


def _febrl_schema(folder) -> dict:
    raw = json.loads((folder / "febrl_schema_v3_final.json").read_text())
    for f in raw["features"]:
        if f["identifier"] == "postcode":  # as SOURCE.md says: the dirty files have empty postcodes
            f["hashing"]["missingValue"] = {"sentinel": ""}
    return raw


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Müller", "mueller"),
        ("MUELLER", "mueller"),
        ("Strauß", "strauss"),
        ("  José  ", "jose"),
        ("Prof. Dr. Hans-Jürgen von der Müller-Lüdenscheidt", "hans juergen mueller luedenscheidt"),
        ("van der", "van der"),
        ("Zoë O'Brien", "zoe o brien"),
        ("Ｍüller", "mueller"),  # full-width letter (NFKC)
    ],
)
def test_names_normalise(raw, expected):
    assert normalise.name(raw) == expected


def test_places_and_digits_normalise():
    assert normalise.place("Hauptstr. 5") == normalise.place("Hauptstraße 5") == "hauptstrasse 5"
    assert normalise.place("Frankfurt a. M.") == "frankfurt a m"
    assert normalise.digits(" 01069 ") == "01069"
    assert normalise.date("04.12.1980", "%d.%m.%Y") == "19801204"


def _de_records(n=300, seed=3):
    sites, _ = synthetic.sites(n, 1, presence=1.0, seed=seed)
    return sites[0]


def test_changing_the_project_key_changes_every_clk():
    schema = load_schema(DE_SCHEMA)
    records = _de_records()
    a = Encoder(schema, project_secret(SITE_SECRET, "project-a")).encode(records)
    again = Encoder(schema, project_secret(SITE_SECRET, "project-a")).encode(records)
    b = Encoder(schema, project_secret(SITE_SECRET, "project-b")).encode(records)
    assert np.array_equal(a, again)
    assert (a != b).any(axis=1).all()
    # and a project's CLKs of the same person do not link with another project's
    assert compare.dice_matrix(a, b).diagonal().max() < 0.7


def test_after_balancing_every_filter_has_exactly_half_its_bits_set():
    schema = load_schema(DE_SCHEMA)
    assert schema.balance
    clks = Encoder(schema, project_secret(SITE_SECRET, "p")).encode([*_de_records(), {}])
    assert clks.shape[1] * 8 == schema.size == 2048
    assert (compare.popcount(clks) == schema.size // 2).all()


def test_xor_folding_keeps_clkhash_length_l_and_serialisation_round_trips():
    raw = json.loads(DE_SCHEMA.read_text())
    raw["clkConfig"]["xorFolds"] = 1
    raw[EXTENSION] = {"normalise": raw[EXTENSION]["normalise"]}
    clks = Encoder(parse_schema(raw), project_secret(SITE_SECRET, "p")).encode(_de_records(20))
    # as clkhash documents it: `l` is the length after folding (hashed into 2·l bits, then folded)
    assert clks.shape[1] * 8 == raw["clkConfig"]["l"]
    assert np.array_equal(from_base64(to_base64(clks)), clks)
    assert EXTENSION not in clkhash_schema(raw)


def test_salting_by_birth_year_separates_same_names_of_different_years():
    raw = json.loads(DE_SCHEMA.read_text())
    raw[EXTENSION] = {"salt": {"family_name": {"from": "birth_date", "slice": [0, 4]}}}
    enc = Encoder(parse_schema(raw), project_secret(SITE_SECRET, "p"))
    one = {"family_name": "Müller", "birth_date": "1950-01-01"}
    a, b, c = enc.encode([one, {**one, "birth_date": "1950-02-02"}, {**one, "birth_date": "1951-01-01"}])
    assert compare.dice_matrix(a[None], b[None])[0, 0] > compare.dice_matrix(a[None], c[None])[0, 0]


def test_unsupported_schema_parts_are_refused_clearly():
    folder = shared_data_folder("pprl/clkhash-febrl")
    with pytest.raises(SchemaError, match="numeric"):
        load_schema(folder / "good-schema-v3.json")


def test_dice_kernels_agree():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (37, 128), dtype=np.uint8)
    b = rng.integers(0, 256, (53, 128), dtype=np.uint8)
    m = compare.dice_matmul(a, b)
    assert np.allclose(m, compare.dice_popcount(a, b), atol=1e-6)
    ia, ib = np.array([0, 5, 36]), np.array([52, 0, 7])
    assert np.allclose(compare.dice_pairs(a, ia, b, ib), m[ia, ib], atol=1e-6)
    bits_a = np.unpackbits(a[0])
    bits_b = np.unpackbits(b[0])
    assert m[0, 0] == pytest.approx(2 * (bits_a & bits_b).sum() / (bits_a.sum() + bits_b.sum()), abs=1e-6)


def test_febrl_pair_precision_and_recall_at_the_calibrated_threshold():
    folder = shared_data_folder("pprl/clkhash-febrl")
    schema = parse_schema(_febrl_schema(folder))
    ignored = {f.identifier for f in schema.features if f.ignored}
    assert {"rec_id", "soc_sec_id"} <= ignored
    enc = Encoder(schema, project_secret(SITE_SECRET, "febrl"))
    tables = [list(csv.DictReader((folder / f"dirty_1000_50_{i}.csv").open())) for i in (1, 2)]
    # the encoder only sees the schema's features: the truth columns are dropped before encoding
    clks = [enc.encode([{k: v for k, v in r.items() if k not in ignored} for r in t]) for t in tables]
    cal = calibrate(clks, [[r["rec_id"] for r in t] for t in tables])
    assert cal.precision >= 0.99 and cal.recall >= 0.99, cal.table
    # the same with blocking: nothing lost
    blocked = calibrate(clks, [[r["rec_id"] for r in t] for t in tables], [cal.threshold], blocking=(20, 10))
    assert blocked.recall >= 0.99


def test_distinct_patients_across_three_sites_within_five_percent():
    schema = load_schema(DE_SCHEMA)
    enc = Encoder(schema, project_secret(SITE_SECRET, "count"))
    train, _ = synthetic.sites(1500, 3, seed=11)
    cal = calibrate([enc.encode(s) for s in train], [[r["patient_id"] for r in s] for s in train])
    test, truth = synthetic.sites(3200, 3, seed=12)  # held out
    assert sum(map(len, test)) > 1.4 * truth  # the naive sum overstates
    est = estimate_distinct([enc.encode(s) for s in test], cal.threshold)
    assert abs(est.distinct - truth) <= 0.05 * truth, est
    assert est.interval[0] <= truth <= est.interval[1], est


def _surname_attack(records, clks, attacker: Encoder) -> float:
    """The attacker encodes each frequent surname alone and assigns to a record the surname whose bits it
    contains best (containment ≥ 0.95); returns the share of records whose surname is identified."""
    guesses = np.unpackbits(attacker.encode([{"family_name": s} for s in synthetic.SURNAMES]), axis=1)
    empty = np.unpackbits(attacker.encode([{}]), axis=1)  # the bits of the other (empty) fields
    gb = (guesses & (1 - empty)).astype(np.float32)
    rb = np.unpackbits(clks, axis=1).astype(np.float32)
    containment = (rb @ gb.T) / gb.sum(axis=1)[None, :]
    best = containment.argmax(axis=1)
    hit = containment.max(axis=1) >= 0.95
    truth = [normalise.name(r["family_name"]) for r in records]
    names = [normalise.name(s) for s in synthetic.SURNAMES]
    return float(np.mean([h and names[b] == t for h, b, t in zip(hit, best, truth, strict=True)]))


def test_dictionary_attack_on_frequent_surnames_identifies_at_most_one_percent():
    schema = load_schema(DE_SCHEMA)
    records = _de_records(2000, seed=5)
    clks = Encoder(schema, project_secret(SITE_SECRET, "victim")).encode(records)
    # without the project key: the schema's public parameters as the secret, another project's key
    for guess in (b"", schema.kdf_salt, project_secret(SITE_SECRET, "other-project")):
        assert _surname_attack(records, clks, Encoder(schema, guess)) <= 0.01
    # the attack itself works: with the key and no hardening it finds most surnames
    raw = json.loads(DE_SCHEMA.read_text())
    raw[EXTENSION] = {"normalise": raw[EXTENSION]["normalise"]}
    plain = Encoder(parse_schema(raw), project_secret(SITE_SECRET, "victim"))
    assert _surname_attack(records, plain.encode(records), plain) > 0.5


def test_command_line_estimate_and_calibrate(tmp_path):
    from click.testing import CliRunner

    from datenraum.cli import main

    folder = shared_data_folder("pprl/clkhash-febrl")
    schema = tmp_path / "febrl.json"
    schema.write_text(json.dumps(_febrl_schema(folder)))
    key = tmp_path / "site.key"
    key.write_bytes(SITE_SECRET)
    sites = ["--site", str(folder / "dirty_1000_50_1.csv"), "--site", str(folder / "dirty_1000_50_2.csv")]
    common = ["--schema", str(schema), "--key-file", str(key), *sites, "--json"]
    runner = CliRunner()
    cal = runner.invoke(main, ["linkage", "calibrate", *common, "--truth-column", "rec_id"])
    assert cal.exit_code == 0, cal.output
    calibration = json.loads(cal.output)
    assert calibration["precision"] >= 0.99 and calibration["recall"] >= 0.99
    est = runner.invoke(main, ["linkage", "estimate", *common, "--threshold", str(calibration["threshold"])])
    assert est.exit_code == 0, est.output
    result = json.loads(est.output)
    assert set(result) == {"distinct", "interval", "threshold"}
    assert result["interval"][0] <= 1500 <= result["interval"][1]
    assert abs(result["distinct"] - 1500) <= 15


def test_dense_candidate_search_returns_exactly_the_pairs_of_the_full_dice_matrix():
    rng = np.random.default_rng(3)
    # 300 x 4100 rows span several blocks of rows and of columns; 120 bytes are not whole uint64 words
    a = rng.integers(0, 256, (300, 120), dtype=np.uint8)
    b = np.concatenate([rng.integers(0, 256, (4099, 120), dtype=np.uint8), a[:1]])
    full = compare.dice_matmul(a, b)
    for threshold in (0.0, 0.52, float(full[7, 11]), 1.0):
        ra, rb = np.nonzero(full >= threshold)
        found = compare.candidate_pairs([a, b], threshold)
        assert np.array_equal(found.ra, ra) and np.array_equal(found.rb, rb)
        assert np.array_equal(found.score, full[ra, rb])
    assert (0, 4099) in set(zip(found.ra.tolist(), found.rb.tolist(), strict=True))
