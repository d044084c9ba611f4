"""Contract 3: the Patient context: age in completed years on `today`, gender, deceased."""

from __future__ import annotations

import datetime as dt

from .builders import age, between, comparator, deceased, gender, negate, patient, query

TODAY = dt.date(2024, 6, 15)


def test_age_counts_completed_years_so_a_birthday_today_counts_and_one_tomorrow_does_not(spec_test):
    spec_test(
        [
            patient("birthday-today", birth_date="1974-06-15"),
            patient("birthday-tomorrow", birth_date="1974-06-16"),
            patient("birthday-yesterday", birth_date="1974-06-14"),
        ],
        query(age(comparator("ge", 50, "a"))),
        {"birthday-today", "birthday-yesterday"},
        today=TODAY,
    )


def test_an_age_above_a_value_needs_one_more_completed_year(spec_test):
    spec_test(
        [
            patient("fifty", birth_date="1974-06-15"),
            patient("almost-fifty-one", birth_date="1973-06-16"),
            patient("fifty-one", birth_date="1973-06-15"),
        ],
        query(age(comparator("gt", 50, "a"))),
        {"fifty-one"},
        today=TODAY,
    )


def test_today_decides_the_age(spec_test):
    born = [patient("p1", birth_date="1974-06-15")]
    spec_test(born, query(age(comparator("eq", 50, "a"))), {"p1"}, today=dt.date(2024, 6, 15))
    spec_test(born, query(age(comparator("eq", 50, "a"))), set(), today=dt.date(2024, 6, 14))
    spec_test(born, query(age(comparator("eq", 50, "a"))), set(), today=dt.date(2025, 6, 15))


def test_someone_born_on_29_february_completes_a_year_on_1_march_in_a_common_year(spec_test):
    born = [patient("leap", birth_date="2000-02-29")]
    spec_test(born, query(age(comparator("ge", 23, "a"))), set(), today=dt.date(2023, 2, 28))
    spec_test(born, query(age(comparator("ge", 23, "a"))), {"leap"}, today=dt.date(2023, 3, 1))
    spec_test(born, query(age(comparator("ge", 24, "a"))), {"leap"}, today=dt.date(2024, 2, 29))


def test_a_partial_birth_date_counts_from_its_first_day(spec_test):
    spec_test(
        [
            patient("year", birth_date="1974"),  # 1974-01-01: 50 on 2024-06-15
            patient("month", birth_date="1974-07"),  # 1974-07-01: still 49
            patient("this-month", birth_date="1974-06"),  # 1974-06-01: 50
        ],
        query(age(comparator("ge", 50, "a"))),
        {"year", "this-month"},
        today=TODAY,
    )


def test_an_age_range_includes_both_ends(spec_test):
    spec_test(
        [
            patient("17", birth_date="2006-06-16"),
            patient("18", birth_date="2006-06-15"),
            patient("65", birth_date="1958-06-16"),
            patient("66", birth_date="1958-06-15"),
        ],
        query(age(between(18, 65, "a"))),
        {"18", "65"},
        today=TODAY,
    )


def test_an_age_in_months_weeks_or_days_is_converted_to_years(spec_test):
    patients = [patient("50", birth_date="1974-06-15"), patient("49", birth_date="1974-06-16")]
    spec_test(patients, query(age(comparator("ge", 600, "mo"))), {"50"}, today=TODAY)
    # 50 years are 2608.93 weeks and 18262.5 days
    spec_test(patients, query(age(comparator("ge", 2608.9, "wk"))), {"50"}, today=TODAY)
    spec_test(patients, query(age(comparator("ge", 18262.5, "d"))), {"50"}, today=TODAY)
    spec_test(patients, query(age(comparator("lt", 18262.5, "d"))), {"49"}, today=TODAY)


def test_an_age_filter_without_unit_is_in_years(spec_test):
    spec_test(
        [patient("50", birth_date="1974-06-15"), patient("49", birth_date="1974-06-16")],
        query(age(comparator("ge", 50))),
        {"50"},
        today=TODAY,
    )


def test_a_patient_without_birth_date_matches_no_age_filter(spec_test):
    spec_test(
        [patient("unknown", birth_date=None), patient("known", birth_date="1990-01-01")],
        query(age(comparator("lt", 200, "a"))),
        {"known"},
    )


def test_gender_is_one_of_the_selected_codes(spec_test):
    patients = [
        patient("f", gender="female"),
        patient("m", gender="male"),
        patient("o", gender="other"),
        patient("u", gender="unknown"),
        patient("none", gender=None),
    ]
    spec_test(patients, query(gender("female")), {"f"})
    spec_test(patients, query(gender("male", "other")), {"m", "o"})


def test_a_patient_with_a_deceased_flag_or_date_is_deceased(spec_test):
    spec_test(
        [
            patient("flag", deceasedBoolean=True),
            patient("date", deceasedDateTime="2023-01-01"),
            patient("alive", deceasedBoolean=False),
            patient("unknown"),
        ],
        query(deceased()),
        {"flag", "date"},
    )


def test_a_negated_deceased_criterion_finds_the_living(spec_test):
    spec_test(
        [patient("flag", deceasedBoolean=True), patient("alive", deceasedBoolean=False), patient("unknown")],
        query(negate(deceased())),
        {"alive", "unknown"},
    )


def test_demographic_criteria_combine_with_each_other(spec_test):
    spec_test(
        [
            patient("old-woman", gender="female", birth_date="1950-01-01"),
            patient("young-woman", gender="female", birth_date="2000-01-01"),
            patient("old-man", gender="male", birth_date="1950-01-01"),
        ],
        query(gender("female"), age(comparator("gt", 50, "a"))),
        {"old-woman"},
    )
