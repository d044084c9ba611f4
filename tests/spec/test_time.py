"""Contract 2, time restriction: a resource's time interval must overlap [afterDate 00:00, beforeDate 24:00).

A resource's time is a point (a dateTime) or an interval (a Period; without an end it is its start);
the mapping names, per context, which elements give it and in which order. Times are compared in UTC.
"""

from __future__ import annotations

import pytest

from datenraum.query.model import TermCode

from .builders import (
    ACT_CODE,
    atc,
    comparator,
    condition,
    criterion,
    diagnosis,
    during,
    encounter,
    genetic_report,
    lab,
    lab_test,
    loinc,
    medication_administration,
    medication_request,
    medication_statement,
    ops,
    patient,
    procedure,
    query,
    snomed,
    specimen,
)

MARCH = during("2020-03-01", "2020-03-31")


def test_a_point_in_time_matches_a_restriction_that_contains_its_day(spec_test):
    spec_test(
        [
            [patient("first"), condition("first", onset="2020-03-01")],
            [patient("last"), condition("last", onset="2020-03-31T23:59:59Z")],
            [patient("before"), condition("before", onset="2020-02-29T23:59:59Z")],
            [patient("after"), condition("after", onset="2020-04-01T00:00:00Z")],
        ],
        query(diagnosis("E11", time=MARCH)),
        {"first", "last"},
    )


def test_a_restriction_of_a_single_day_matches_the_whole_of_that_day(spec_test):
    spec_test(
        [
            [patient("morning"), lab("morning", "4548-4", 7.0, "%", at="2020-03-10T00:00:00Z")],
            [patient("evening"), lab("evening", "4548-4", 7.0, "%", at="2020-03-10T23:30:00Z")],
            [patient("next"), lab("next", "4548-4", 7.0, "%", at="2020-03-11T00:00:00Z")],
        ],
        query(lab_test("4548-4", time=during("2020-03-10", "2020-03-10"))),
        {"morning", "evening"},
    )


def test_times_with_an_offset_are_compared_in_utc(spec_test):
    spec_test(
        [
            # 2020-04-01 00:30 in Berlin (summer time) is 2020-03-31 22:30 UTC: in March
            [patient("p1"), lab("p1", "4548-4", 7.0, "%", at="2020-04-01T00:30:00+02:00")],
            # 2020-03-31 23:30 at UTC-02:00 is 2020-04-01 01:30 UTC: not in March
            [patient("p2"), lab("p2", "4548-4", 7.0, "%", at="2020-03-31T23:30:00-02:00")],
        ],
        query(lab_test("4548-4", time=MARCH)),
        {"p1"},
    )


@pytest.mark.parametrize(
    ("period", "matches"),
    [
        (("2020-02-20", "2020-03-05"), True),  # overlaps the start
        (("2020-03-25", "2020-04-10"), True),  # overlaps the end
        (("2020-03-10", "2020-03-12"), True),  # inside
        (("2020-01-01", "2020-12-31"), True),  # around
        (("2020-02-01", "2020-03-01T00:00:00Z"), True),  # ends at the first instant
        (("2020-03-31T23:59:00Z", "2020-04-02"), True),  # starts at the last minute
        (("2020-01-01", "2020-02-29T23:59:59Z"), False),  # entirely before
        (("2020-04-01T00:00:00Z", "2020-05-01"), False),  # entirely after
    ],
)
def test_a_period_matches_when_it_overlaps_the_restriction(spec_test, period, matches):
    spec_test(
        [[patient("p1"), encounter("p1", "IMP", period=period)]],
        query(criterion("Fall", TermCode(ACT_CODE, "IMP"), time=MARCH)),
        {"p1"} if matches else set(),
    )


def test_a_period_without_end_is_taken_as_its_start(spec_test):
    spec_test(
        [
            [patient("p1"), procedure("p1", performed=("2020-02-01", None))],
            [patient("p2"), procedure("p2", performed=("2020-03-15", None))],
        ],
        query(criterion("Procedure", ops("5-820"), time=MARCH)),
        {"p2"},
    )


def test_a_restriction_with_only_an_after_date_is_open_towards_the_future(spec_test):
    spec_test(
        [
            [patient("p1"), condition("p1", onset="2019-12-31")],
            [patient("p2"), condition("p2", onset="2020-01-01")],
            [patient("p3"), condition("p3", onset="2099-01-01")],
        ],
        query(diagnosis("E11", time=during(after="2020-01-01"))),
        {"p2", "p3"},
    )


def test_a_restriction_with_only_a_before_date_is_open_towards_the_past(spec_test):
    spec_test(
        [
            [patient("p1"), condition("p1", onset="1900-01-01")],
            [patient("p2"), condition("p2", onset="2019-12-31T23:00:00Z")],
            [patient("p3"), condition("p3", onset="2020-01-01")],
        ],
        query(diagnosis("E11", time=during(before="2019-12-31"))),
        {"p1", "p2"},
    )


def test_a_resource_without_time_does_not_match_a_time_restriction(spec_test):
    spec_test(
        [[patient("p1"), condition("p1", onset=None)]],
        query(diagnosis("E11", time=during(after="1900-01-01"))),
        set(),
    )
    spec_test([[patient("p1"), condition("p1", onset=None)]], query(diagnosis("E11")), {"p1"})


def test_a_diagnosis_without_onset_is_dated_by_its_recorded_date(spec_test):
    spec_test(
        [
            [patient("p1"), condition("p1", onset=None, recorded="2020-03-10")],
            [patient("p2"), condition("p2", onset=None, recorded="2020-05-10")],
        ],
        query(diagnosis("E11", time=MARCH)),
        {"p1"},
    )


def test_the_onset_of_a_diagnosis_takes_precedence_over_its_recorded_date(spec_test):
    spec_test(
        [
            [patient("p1"), condition("p1", onset="2019-01-01", recorded="2020-03-10")],
            [patient("p2"), condition("p2", onset="2020-03-10", recorded="2021-01-01")],
        ],
        query(diagnosis("E11", time=MARCH)),
        {"p2"},
    )


def test_an_onset_period_of_a_diagnosis_matches_by_overlap(spec_test):
    spec_test(
        [
            [patient("start"), condition("start", onset=("2020-03-20", "2020-06-01"))],
            [patient("end"), condition("end", onset=("2019-06-01", "2020-03-10"))],
            [patient("before"), condition("before", onset=("2019-06-01", "2020-02-10"))],
        ],
        query(diagnosis("E11", time=MARCH)),
        {"start", "end"},
    )


def test_a_lab_effective_period_matches_by_overlap(spec_test):
    spec_test(
        [
            [patient("p1"), lab("p1", "2345-7", 100, "mg/dL", at=("2020-02-28", "2020-03-02"))],
            [patient("p2"), lab("p2", "2345-7", 100, "mg/dL", at=("2020-02-01", "2020-02-02"))],
        ],
        query(lab_test("2345-7", time=MARCH)),
        {"p1"},
    )


def test_a_medication_administration_period_matches_by_overlap(spec_test):
    spec_test(
        [
            [
                patient("p1"),
                medication_administration("p1", "A10BA02", effective=("2020-01-01", "2020-03-01")),
            ],
            [
                patient("p2"),
                medication_administration("p2", "A10BA02", effective=("2020-01-01", "2020-02-01")),
            ],
            [patient("p3"), medication_administration("p3", "A10BA02", effective="2020-03-31T12:00:00Z")],
        ],
        query(criterion("Medikamentenverabreichung", atc("A10BA02"), time=MARCH)),
        {"p1", "p3"},
    )


def test_a_medication_statement_period_matches_by_overlap(spec_test):
    spec_test(
        [
            [patient("p1"), medication_statement("p1", "A10BA02", effective=("2019-01-01", None))],
            [patient("p2"), medication_statement("p2", "A10BA02", effective=("2019-01-01", "2021-01-01"))],
        ],
        query(criterion("Medikamentenverordnung", atc("A10BA02"), time=MARCH)),
        {"p2"},
    )


def test_a_medication_request_is_dated_by_when_it_was_authored(spec_test):
    spec_test(
        [
            [patient("p1"), medication_request("p1", "A10BA02", authored="2020-03-05")],
            [patient("p2"), medication_request("p2", "A10BA02", authored="2020-04-05")],
            [patient("p3"), medication_request("p3", "A10BA02", authored=None)],
        ],
        query(criterion("Medikamentenanordnung", atc("A10BA02"), time=MARCH)),
        {"p1"},
    )


def test_a_specimen_is_dated_by_its_collection(spec_test):
    spec_test(
        [
            [patient("p1"), specimen("p1", collected="2020-03-05T09:00:00+01:00")],
            [patient("p2"), specimen("p2", collected="2020-04-05")],
            [patient("p3"), specimen("p3", collected=None)],
        ],
        query(criterion("Specimen", snomed("119364003"), time=MARCH)),
        {"p1"},
    )


def test_a_specimen_collection_period_matches_by_overlap(spec_test):
    spec_test(
        [
            [patient("p1"), specimen("p1", collected=("2020-01-01", "2020-03-05"))],
            [patient("p2"), specimen("p2", collected=("2020-01-01", "2020-02-05"))],
        ],
        query(criterion("Specimen", snomed("119364003"), time=MARCH)),
        {"p1"},
    )


def test_a_genetic_report_is_dated_by_when_it_was_issued(spec_test):
    spec_test(
        [
            [patient("p1"), genetic_report("p1", issued="2020-03-05T10:00:00Z")],
            [patient("p2"), genetic_report("p2", issued="2020-04-05T10:00:00Z")],
        ],
        query(criterion("Molekulargenetischer Befundbericht", loinc("81247-9"), time=MARCH)),
        {"p1"},
    )


def test_a_genetic_report_without_issued_time_is_dated_by_its_effective_time(spec_test):
    spec_test(
        [
            [patient("p1"), {**genetic_report("p1", issued=None), "effectiveDateTime": "2020-03-05"}],
            [patient("p2"), {**genetic_report("p2", issued=None), "effectiveDateTime": "2020-05-05"}],
        ],
        query(criterion("Molekulargenetischer Befundbericht", loinc("81247-9"), time=MARCH)),
        {"p1"},
    )


def test_a_genetic_report_effective_period_matches_by_overlap(spec_test):
    spec_test(
        [
            [
                patient("p1"),
                {
                    **genetic_report("p1", issued=None),
                    "effectivePeriod": {"start": "2020-01-01", "end": "2020-03-05"},
                },
            ],
            [
                patient("p2"),
                {
                    **genetic_report("p2", issued=None),
                    "effectivePeriod": {"start": "2020-01-01", "end": "2020-02-05"},
                },
            ],
        ],
        query(criterion("Molekulargenetischer Befundbericht", loinc("81247-9"), time=MARCH)),
        {"p1"},
    )


def test_a_lab_is_dated_only_by_its_effective_time(spec_test):
    spec_test(
        [
            [patient("p1"), {**lab("p1", "4548-4", 7.0, "%", at=None), "issued": "2020-03-05T10:00:00Z"}],
            [
                patient("p2"),
                {**lab("p2", "4548-4", 7.0, "%", at=None), "effectiveInstant": "2020-03-05T10:00:00Z"},
            ],
        ],
        query(lab_test("4548-4", time=MARCH)),
        {"p2"},
    )


def test_the_time_restriction_must_hold_on_the_same_resource_as_the_value_filter(spec_test):
    spec_test(
        [
            [
                patient("p1"),
                lab("p1", "4548-4", 7.0, "%", at="2019-03-10"),
                lab("p1", "4548-4", 6.0, "%", at="2020-03-10"),
            ],
            [patient("p2"), lab("p2", "4548-4", 7.0, "%", at="2020-03-10")],
        ],
        query(lab_test("4548-4", comparator("gt", 6.5, "%"), time=MARCH)),
        {"p2"},
    )
