"""Study pseudonyms: keyed, stable, per domain; every single-character typo is caught."""

from __future__ import annotations

import pytest

from datenraum.studies.pseudonyms import (
    DECIMAL,
    SAFE_ALPHABET,
    PseudonymDomain,
    PseudonymError,
    domain_key,
    generate,
    pseudonym,
    pseudonym_problem,
    valid_pseudonym,
)

SECRET = b"site-a secret of at least 16 bytes"
DAMM = PseudonymDomain("GECCO", "site-a", "GEC-A-", DECIMAL, 8, "damm")
LUHN = PseudonymDomain("GECCO", "site-a", "GA", SAFE_ALPHABET, 6, "luhn")
SAMPLE = [f"patient-{i}" for i in range(40)]


@pytest.mark.parametrize("domain", [DAMM, LUHN], ids=["damm", "luhn"])
def test_every_single_character_substitution_of_a_pseudonym_is_detected(domain):
    key = domain_key(SECRET, domain)
    for patient in SAMPLE:
        text = pseudonym(domain, key, patient)
        assert valid_pseudonym(domain, text)
        for position in range(len(domain.prefix), len(text)):
            for char in domain.alphabet:
                if char != text[position]:
                    typo = text[:position] + char + text[position + 1 :]
                    assert not valid_pseudonym(domain, typo), (text, typo)


def test_damm_detects_every_adjacent_transposition():
    key = domain_key(SECRET, DAMM)
    for patient in SAMPLE:
        text = pseudonym(DAMM, key, patient)
        for position in range(len(DAMM.prefix), len(text) - 1):
            swapped = text[:position] + text[position + 1] + text[position] + text[position + 2 :]
            if swapped != text:
                assert not valid_pseudonym(DAMM, swapped), (text, swapped)


def test_the_same_patient_gets_the_same_pseudonym_and_other_domains_or_keys_another():
    key = domain_key(SECRET, DAMM)
    first = pseudonym(DAMM, key, "4711")
    assert pseudonym(DAMM, key, "4711") == first
    assert pseudonym(DAMM, key, "4712") != first
    site_b = PseudonymDomain("GECCO", "site-b", "GEC-A-", DECIMAL, 8, "damm")
    assert domain_key(SECRET, site_b) != key
    assert pseudonym(site_b, domain_key(SECRET, site_b), "4711") != first
    assert pseudonym(DAMM, domain_key(b"another site secret....", DAMM), "4711") != first
    assert first.startswith("GEC-A-") and len(first) == len("GEC-A-") + 9


def test_a_collision_in_the_callers_store_moves_to_the_next_attempt():
    key = domain_key(SECRET, DAMM)
    taken = {pseudonym(DAMM, key, "4711", 0), pseudonym(DAMM, key, "4711", 1)}
    chosen = generate(DAMM, key, "4711", taken.__contains__)
    assert chosen == pseudonym(DAMM, key, "4711", 2) and valid_pseudonym(DAMM, chosen)


def test_a_domain_with_every_pseudonym_taken_says_so():
    with pytest.raises(PseudonymError, match="too small"):
        generate(DAMM, domain_key(SECRET, DAMM), "4711", lambda text: True)


def test_the_bodies_use_every_character_of_the_alphabet_about_equally():
    key = domain_key(SECRET, LUHN)
    bodies = "".join(pseudonym(LUHN, key, f"p{i}")[2:-1] for i in range(2000))
    counts = [bodies.count(c) for c in SAFE_ALPHABET]
    expected = len(bodies) / len(SAFE_ALPHABET)
    assert all(0.8 * expected < c < 1.2 * expected for c in counts)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("GEX-A-123456789", "does not start with the domain prefix 'GEC-A-'"),
        ("GEC-A-1234", "has 4 characters after the prefix, expected 9"),
        ("GEC-A-1234x6789", "character 'x' at position 11 is not in the domain's alphabet"),
    ],
)
def test_a_malformed_pseudonym_is_explained(text, problem):
    assert pseudonym_problem(DAMM, text) == problem


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alphabet": "ABCDE", "check": "luhn"}, "even size"),
        ({"alphabet": "ABCDEFGHIJ", "check": "damm"}, "decimal alphabet"),
        ({"alphabet": "AAB", "check": "luhn"}, "distinct"),
        ({"length": 3}, "at least 4"),
        ({"check": "verhoeff"}, "'damm' or 'luhn'"),
    ],
)
def test_a_domain_that_could_not_catch_typos_is_refused(kwargs, message):
    with pytest.raises(PseudonymError, match=message):
        PseudonymDomain("S", "site", "P", **kwargs)
