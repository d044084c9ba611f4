"""Contract 4: consent: the most recent active decision on each required provision code counts.

A combined code of the portal ("yes-yes-no-no") stands for the provision codes that the mapping lists
for its answers; the tests read that list from the mapping rather than repeat it, so they state the
rule and not the table.
"""

from __future__ import annotations

from datenraum.query.mapping import load_mapping

from .builders import (
    INSURANCE,
    MDAT_STORE,
    PROVISION_CODE,
    consent,
    consented,
    consented_combined,
    during,
    patient,
    query,
)


def _required(combined_code: str) -> tuple[str, ...]:
    return load_mapping().contexts["Einwilligung"].combined.provisions(combined_code)


def test_a_permitted_provision_meets_a_consent_criterion(spec_test):
    spec_test(
        [
            [patient("permit"), consent("permit", MDAT_STORE)],
            [patient("deny"), consent("deny", MDAT_STORE, decision="deny")],
            [patient("other"), consent("other", INSURANCE)],
            [patient("none")],
        ],
        query(consented(MDAT_STORE)),
        {"permit"},
    )


def test_a_later_withdrawal_overrides_an_earlier_permit(spec_test):
    spec_test(
        [
            [
                patient("p1"),
                consent("p1", MDAT_STORE, date="2020-01-01"),
                consent(
                    "p1", MDAT_STORE, decision="deny", date="2022-05-01", period=("2022-05-01", "2050-01-01")
                ),
            ]
        ],
        query(consented(MDAT_STORE)),
        set(),
    )


def test_a_later_permit_overrides_an_earlier_denial(spec_test):
    spec_test(
        [
            [
                patient("p1"),
                consent("p1", MDAT_STORE, decision="deny", date="2020-01-01"),
                consent("p1", MDAT_STORE, date="2022-05-01", period=("2022-05-01", "2050-01-01")),
            ]
        ],
        query(consented(MDAT_STORE)),
        {"p1"},
    )


def test_the_latest_decision_is_found_whatever_order_the_consents_come_in(spec_test):
    withdrawal = consent(
        "p1", MDAT_STORE, decision="deny", date="2022-05-01", period=("2022-05-01", "2050-01-01")
    )
    spec_test(
        [[patient("p1"), withdrawal, consent("p1", MDAT_STORE, date="2020-01-01")]],
        query(consented(MDAT_STORE)),
        set(),
    )


def test_deny_wins_when_permit_and_deny_are_dated_the_same(spec_test):
    spec_test(
        [
            [
                patient("p1"),
                consent("p1", MDAT_STORE, date="2021-01-01T10:00:00Z"),
                consent("p1", MDAT_STORE, decision="deny", date="2021-01-01T10:00:00Z"),
            ]
        ],
        query(consented(MDAT_STORE)),
        set(),
    )


def test_each_provision_code_is_decided_by_the_latest_consent_that_names_it(spec_test):
    # The 2022 consent withdraws only the insurance data; the 2020 permit of MDAT still stands.
    spec_test(
        [
            [
                patient("p1"),
                consent("p1", MDAT_STORE, INSURANCE, date="2020-01-01"),
                consent(
                    "p1", INSURANCE, decision="deny", date="2022-01-01", period=("2022-01-01", "2050-01-01")
                ),
            ]
        ],
        query(consented(MDAT_STORE)),
        {"p1"},
    )
    spec_test(
        [
            [
                patient("p1"),
                consent("p1", MDAT_STORE, INSURANCE, date="2020-01-01"),
                consent(
                    "p1", INSURANCE, decision="deny", date="2022-01-01", period=("2022-01-01", "2050-01-01")
                ),
            ]
        ],
        query(consented(INSURANCE)),
        set(),
    )


def test_an_expired_or_future_provision_period_does_not_count_today(spec_test):
    spec_test(
        [
            [patient("expired"), consent("expired", MDAT_STORE, period=("2019-01-01", "2024-06-14"))],
            [patient("ends-today"), consent("ends-today", MDAT_STORE, period=("2019-01-01", "2024-06-15"))],
            [
                patient("starts-today"),
                consent("starts-today", MDAT_STORE, period=("2024-06-15", "2029-01-01")),
            ],
            [patient("future"), consent("future", MDAT_STORE, period=("2024-06-16", "2029-01-01"))],
            [patient("open"), consent("open", MDAT_STORE, period=("2019-01-01", None))],
        ],
        query(consented(MDAT_STORE)),
        {"ends-today", "starts-today", "open"},
    )


def test_with_a_time_restriction_the_provision_period_must_overlap_it_instead_of_today(spec_test):
    data = [
        [patient("then"), consent("then", MDAT_STORE, period=("2019-01-01", "2021-12-31"))],
        [patient("now"), consent("now", MDAT_STORE, period=("2023-01-01", "2028-12-31"))],
    ]
    spec_test(data, query(consented(MDAT_STORE, time=during("2021-01-01", "2021-06-30"))), {"then"})
    spec_test(data, query(consented(MDAT_STORE)), {"now"})


def test_only_active_consents_count(spec_test):
    spec_test(
        [
            [patient("active"), consent("active", MDAT_STORE)],
            [patient("inactive"), consent("inactive", MDAT_STORE, status="inactive")],
            [patient("draft"), consent("draft", MDAT_STORE, status="draft")],
            # an inactive withdrawal does not override an active permit
            [
                patient("withdrawn-draft"),
                consent("withdrawn-draft", MDAT_STORE, date="2020-01-01"),
                consent("withdrawn-draft", MDAT_STORE, decision="deny", date="2023-01-01", status="inactive"),
            ],
        ],
        query(consented(MDAT_STORE)),
        {"active", "withdrawn-draft"},
    )


def test_a_consent_criterion_with_several_codes_needs_one_of_them(spec_test):
    spec_test(
        [
            [patient("mdat"), consent("mdat", MDAT_STORE)],
            [patient("insurance"), consent("insurance", INSURANCE)],
            [patient("none"), consent("none", f"{PROVISION_CODE}.99")],
        ],
        query(consented(MDAT_STORE, INSURANCE)),
        {"mdat", "insurance"},
    )


def test_a_combined_code_requires_every_provision_code_of_its_answers(spec_test):
    required = _required("yes-yes-no-no")
    assert len(required) >= 2, "the test needs a combined code that requires several provisions"
    spec_test(
        [
            [patient("all"), consent("all", *required)],
            [patient("all-but-one"), consent("all-but-one", *required[:-1])],
            [
                patient("one-denied"),
                consent("one-denied", *required[:-1]),
                consent("one-denied", required[-1], decision="deny"),
            ],
        ],
        query(consented_combined("yes-yes-no-no")),
        {"all"},
    )


def test_a_combined_code_with_a_yes_requires_more_than_the_same_code_with_no(spec_test):
    # "with health-insurance data" (third answer) adds its provision codes only when it is yes.
    without = _required("yes-yes-no-no")
    with_insurance = _required("yes-yes-yes-no")
    added = [c for c in with_insurance if c not in without]
    assert added, "the mapping's third answer requires nothing: the test has nothing to show"
    data = [[patient("p1"), consent("p1", *without)]]
    spec_test(data, query(consented_combined("yes-yes-no-no")), {"p1"})
    spec_test(data, query(consented_combined("yes-yes-yes-no")), set())
    spec_test(
        [[patient("p1"), consent("p1", *with_insurance)]], query(consented_combined("yes-yes-yes-no")), {"p1"}
    )
