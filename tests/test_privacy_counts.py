"""The noise key of a cohort (issue 12, P-1): a function of the patients, not of how the query is written."""

from __future__ import annotations

import pytest

from datenraum.privacy.counts import CohortKey, ObfuscationPolicy, cohort_key, obfuscate

SECRET = b"k" * 32


def test_the_key_depends_on_the_patients_and_the_secret_only():
    ids = [f"p{i:04d}" for i in range(100)]
    size, key = cohort_key(SECRET, ids)
    assert size == 100
    assert cohort_key(SECRET, iter(ids)) == (100, key)
    assert cohort_key(SECRET, ids[:-1])[1] != key
    assert cohort_key(SECRET, [*ids[:-1], "p9999"])[1] != key
    assert cohort_key(b"o" * 32, ids)[1] != key


def test_portions_of_a_cohort_hash_like_the_whole():
    ids = [f"p{i:07d}" for i in range(200_000)]  # more than one internal batch
    streamed = CohortKey(SECRET)
    streamed.add(ids[:7])
    streamed.add(ids[7:150_000])
    streamed.add([])
    streamed.add(ids[150_000:])
    assert (streamed.size, streamed.digest()) == cohort_key(SECRET, ids)


def test_ids_joined_differently_are_different_cohorts():
    assert cohort_key(SECRET, ["a", "bc"])[1] != cohort_key(SECRET, ["ab", "c"])[1]


@pytest.mark.parametrize("ids", [["b", "a"], ["a", "a"]])
def test_unsorted_or_repeated_ids_are_refused(ids):
    with pytest.raises(ValueError, match="sorted and distinct"):
        cohort_key(SECRET, ids)


def test_an_empty_cohort_is_below_threshold():
    size, key = cohort_key(SECRET, [])
    assert size == 0
    assert obfuscate(size, ObfuscationPolicy(), key).below_threshold
