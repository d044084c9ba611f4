"""Permuted-block randomisation: balance in every prefix, ratios per block, reproducible and concealed."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from datenraum.studies.randomisation import (
    Arm,
    Factor,
    RandomisationError,
    RandomisationScheme,
    allocate,
    blocks,
    new_seed,
    scheme_from_json,
    sequence,
)

SEED = bytes.fromhex("8f3c2a1b9d7e6f5a4c3b2a1908f7e6d5")
OTHER_SEED = bytes.fromhex("00112233445566778899aabbccddeeff")
AGE = Factor("age_group", ("<65", ">=65"))
SEX = Factor("sex", ("female", "male", "other"))
TWO_ARMS = RandomisationScheme((Arm("A"), Arm("B")), block_sizes=(4,), factors=(AGE, SEX))


def test_a_thousand_enrolments_in_blocks_of_four_never_put_one_arm_more_than_two_ahead_in_any_stratum():
    # 1,000 participants at two sites, spread over the six factor combinations, in enrolment order.
    positions: Counter = Counter()
    balance: dict = {}
    combos = list(itertools.product(["site-a", "site-b"], AGE.levels, SEX.levels))
    for participant in range(1000):
        site, age, sex = combos[(participant * 7) % len(combos)]
        stratum = TWO_ARMS.stratum(site, {"age_group": age, "sex": sex})
        arm = allocate(TWO_ARMS, SEED, stratum, positions[stratum])
        positions[stratum] += 1
        balance[stratum] = balance.get(stratum, 0) + (1 if arm == "A" else -1)
        assert abs(balance[stratum]) <= 2, (stratum, positions[stratum])
    assert sum(positions.values()) == 1000 and len(positions) == 12


def test_random_block_sizes_come_from_the_configured_set_and_keep_every_prefix_balanced():
    scheme = RandomisationScheme((Arm("A"), Arm("B")), block_sizes=(2, 4, 6))
    stratum = scheme.stratum("site-a", {})
    listed = blocks(scheme, SEED, stratum, 200)
    assert {len(b) for b in listed} == {2, 4, 6}
    arms = [arm for block in listed for arm in block]
    assert sequence(scheme, SEED, stratum, len(arms)) == arms
    running = list(itertools.accumulate(1 if a == "A" else -1 for a in arms))
    assert max(abs(x) for x in running) <= 3  # half the largest block


def test_a_two_to_one_ratio_holds_in_every_block():
    scheme = RandomisationScheme((Arm("treatment", 2), Arm("control", 1)), block_sizes=(3, 6))
    listed = blocks(scheme, SEED, scheme.stratum("site-a", {}), 300)
    assert {len(b) for b in listed} == {3, 6}
    for block in listed:
        assert block.count("treatment") == 2 * block.count("control"), block


def test_the_same_seed_reproduces_the_sequence_and_allocate_agrees_with_it():
    stratum = TWO_ARMS.stratum("site-a", {"age_group": "<65", "sex": "male"})
    first = sequence(TWO_ARMS, SEED, stratum, 200)
    assert sequence(TWO_ARMS, SEED, stratum, 200) == first
    assert [allocate(TWO_ARMS, SEED, stratum, i) for i in range(200)] == first


def test_another_seed_or_another_stratum_gives_another_sequence():
    stratum = TWO_ARMS.stratum("site-a", {"age_group": "<65", "sex": "male"})
    other_site = TWO_ARMS.stratum("site-b", {"age_group": "<65", "sex": "male"})
    first = sequence(TWO_ARMS, SEED, stratum, 100)
    assert sequence(TWO_ARMS, OTHER_SEED, stratum, 100) != first
    assert sequence(TWO_ARMS, SEED, other_site, 100) != first


def test_without_the_seed_the_allocations_look_like_coin_flips_within_the_blocks():
    # Concealment: the arm at the first position of each block is A about half the time.
    scheme = RandomisationScheme((Arm("A"), Arm("B")), block_sizes=(4,))
    arms = sequence(scheme, new_seed(), scheme.stratum("site-a", {}), 4000)
    first_of_block = Counter(arms[0::4])
    assert 400 < first_of_block["A"] < 600


def test_a_fourth_factor_is_refused():
    with pytest.raises(RandomisationError, match="at most 3 stratification factors"):
        RandomisationScheme(
            (Arm("A"), Arm("B")),
            (4,),
            (AGE, SEX, Factor("bmi", ("low", "high")), Factor("smoker", ("yes", "no"))),
        )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"age_group": "<65", "sex": "male", "smoker": "yes"}, "unknown factor 'smoker'"),
        ({"age_group": "90+", "sex": "male"}, "factor 'age_group' has no level '90\\+'"),
        ({"age_group": "<65"}, "factor 'sex' has no value"),
    ],
)
def test_a_stratum_names_the_unknown_factor_or_level(values, message):
    with pytest.raises(RandomisationError, match=message):
        TWO_ARMS.stratum("site-a", values)


@pytest.mark.parametrize(
    ("arms", "sizes", "message"),
    [
        ((Arm("A"),), (4,), "at least two arms"),
        ((Arm("A", 2), Arm("B")), (4,), r"block_sizes\[0\]: 4 is not a multiple of the arm ratios' sum 3"),
        ((Arm("A"), Arm("A")), (4,), "names must be distinct"),
        ((Arm("A", 0), Arm("B")), (4,), r"arms\[0\].ratio"),
    ],
)
def test_an_unusable_scheme_is_refused_with_the_field_named(arms, sizes, message):
    with pytest.raises(RandomisationError, match=message):
        RandomisationScheme(arms, sizes)


def test_a_short_seed_is_refused_because_it_could_be_guessed():
    with pytest.raises(RandomisationError, match="at least 16 bytes"):
        allocate(TWO_ARMS, b"1234", TWO_ARMS.stratum("s", {"age_group": "<65", "sex": "male"}), 0)


def test_a_scheme_round_trips_through_json_and_bad_json_names_the_path():
    assert scheme_from_json(TWO_ARMS.to_json()) == TWO_ARMS
    with pytest.raises(RandomisationError, match=r"\$.blockSizes\[1\]: expected a whole number"):
        scheme_from_json({"arms": [{"name": "A"}, {"name": "B"}], "blockSizes": [4, "six"]})
    with pytest.raises(RandomisationError, match=r"\$.blockSizes\[0\]: 3 is not a multiple"):
        scheme_from_json({"arms": [{"name": "A"}, {"name": "B"}], "blockSizes": [3]})
    with pytest.raises(RandomisationError, match=r"\$.arms\[1\].name"):
        scheme_from_json({"arms": [{"name": "A"}, {"name": ""}], "blockSizes": [4]})
    with pytest.raises(RandomisationError, match=r"\$.arms: expected a JSON array"):
        scheme_from_json({"arms": "A,B", "blockSizes": [4]})
