"""Released series in other networks' layouts (4CE DailyCounts, an RKI-style weekly file), and the
region fallback of the release: small federal states merged, never shown alone below k."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from collections import Counter
from typing import Any

from datenraum.indicators.cube import COLUMNS, CUBE_FORMAT
from datenraum.indicators.exports import (
    FOURCE_DAILY_COUNTS,
    MASKED,
    NOT_APPLICABLE,
    RKI_WEEKLY,
    fource_daily_counts,
    rki_weekly,
)
from datenraum.indicators.registry import default_registry
from datenraum.indicators.release import MERGED_STATES, Delivery, pool, release

AS_OF = dt.date(2021, 1, 31)
START = dt.date(2021, 1, 1)
K = 5


def cube(events: list[tuple[str, str]]) -> dict[str, Any]:
    """A cube of new inpatient cases (day, federal state)."""
    counts: Counter[tuple[Any, ...]] = Counter()
    for day, state in events:
        counts[day, None, None, None, None, None] += 1
        counts[day, None, None, None, state, None] += 1
    rows = [[*key, value] for key, value in sorted(counts.items(), key=lambda kv: str(kv[0]))]
    return {
        "format": CUBE_FORMAT,
        "data_as_of": AS_OF.isoformat(),
        "definitions_version": "v",
        "columns": list(COLUMNS[1:]),
        "series": [{"disease": "covid19", "indicator": "new_inpatient_cases", "rows": rows}],
    }


def released_by_state(seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    days = [(START + dt.timedelta(days=n)).isoformat() for n in range(31)]
    deliveries = []
    for site in ("a", "b", "c"):
        # Bavaria and North Rhine-Westphalia large, Bremen and Saarland a case now and then.
        events = [(rng.choice(days), rng.choice(("BY", "NW"))) for _ in range(400)]
        events += [(rng.choice(days), rng.choice(("HB", "SL"))) for _ in range(3)]
        deliveries.append(Delivery(site, cube(events)))
    indicator = default_registry().indicators["new_inpatient_cases"]
    return release(pool(deliveries, "covid19", indicator, START), indicator, k=K)


def test_small_federal_states_fall_back_to_one_merged_stratum() -> None:
    for seed in range(20):
        rows = released_by_state(seed)
        states = {r["state"] for r in rows if r["state"] is not None}
        assert states == {"BY", "NW", MERGED_STATES}
        assert all(not 0 < (r["value"] or 0) < K for r in rows)
        for period in {r["period"] for r in rows}:
            cells = [r for r in rows if r["period"] == period]
            total = next(r for r in cells if r["state"] is None)
            parts = [r["value"] for r in cells if r["state"] is not None]
            if total["value"] is not None and None not in parts:
                assert sum(parts) == total["value"]
            # One hidden state next to a published total would be the difference: never alone.
            assert [p is None for p in parts].count(True) != 1 or total["value"] is None


def test_one_small_state_is_suppressed_not_renamed() -> None:
    deliveries = [
        Delivery(site, cube([("2021-01-05", "BY")] * 30 + [("2021-01-05", "HB")] * 2))
        for site in ("a", "b", "c")
    ]
    indicator = default_registry().indicators["new_inpatient_cases"]
    rows = release(pool(deliveries, "covid19", indicator, START), indicator, k=10)
    states = {r["state"] for r in rows if r["state"] is not None}
    assert MERGED_STATES not in states
    assert all(r["value"] is None for r in rows if r["state"] == "HB")


def daily(values: list[int | None], extra: dict[str, list[int | None]] | None = None) -> dict[str, Any]:
    rows = []
    for number, value in enumerate(values):
        period = (START + dt.timedelta(days=number)).isoformat()
        base = dict.fromkeys(("level", "sex", "age_rki", "state", "los_bin"))
        rows.append({"period": period, **base, "value": value, "suppressed": value is None, "n_sites": 4})
        for level, level_values in (extra or {}).items():
            level_value = level_values[number]
            rows.append(
                {
                    "period": period,
                    **base,
                    "level": level,
                    "value": level_value,
                    "suppressed": level_value is None,
                    "n_sites": 4,
                }
            )
    return {"rows": rows}


def read(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_fource_daily_counts_from_released_rows() -> None:
    text = fource_daily_counts(
        {
            "new_inpatient_cases": daily([10, 12, None, 9]),
            "icu_admissions": daily([0, 6, 5, 7]),
            "in_hospital_deaths": daily([0, 0, 0, 5]),
            "inpatients_on_day": daily(
                [30, 35, 38, None], {"ward": [20, 25, 28, 30], "icu": [10, 5, None, 6], "ecmo": [0, 5, 5, 0]}
            ),
        }
    )
    assert text.endswith("\n") and "\r" not in text
    assert text.splitlines()[0].split(",") == list(FOURCE_DAILY_COUNTS)
    rows = read(text)
    assert [r["calendar_date"] for r in rows] == ["2021-01-01", "2021-01-02", "2021-01-03", "2021-01-04"]
    # The running total stops at the first hidden day: carrying it on would reveal that day.
    assert [int(r["cumulative_pts_all"]) for r in rows] == [10, 22, MASKED, MASKED]
    assert [int(r["cumulative_pts_icu"]) for r in rows] == [0, 6, 11, 18]
    assert [int(r["pts_in_icu_on_this_date"]) for r in rows] == [10, 10, MASKED, 6]
    assert [int(r["pts_in_hosp_on_this_date"]) for r in rows] == [30, 35, 38, MASKED]
    # No indicator behind these: "not applicable", as 4CE writes it; and none for the missing series.
    assert {r["cumulative_pts_severe_dead"] for r in rows} == {str(NOT_APPLICABLE)}
    assert {r["cumulative_pts_severe"] for r in rows} == {str(NOT_APPLICABLE)}
    # 4CE's own checks (QC_12_site_kern_dailycounts) on the published numbers.
    for name in ("cumulative_pts_all", "cumulative_pts_icu", "cumulative_pts_dead"):
        shown = [int(r[name]) for r in rows if int(r[name]) >= 0]
        assert shown == sorted(shown)
    for r in rows:
        icu, hospital = int(r["pts_in_icu_on_this_date"]), int(r["pts_in_hosp_on_this_date"])
        if icu >= 0 and hospital >= 0:
            assert icu <= hospital
        assert all(int(v) >= 0 or int(v) in (MASKED, NOT_APPLICABLE) for v in list(r.values())[3:])


def test_rki_weekly_file_names_states_and_keeps_first_published() -> None:
    base = dict.fromkeys(("level", "sex", "age_rki", "state", "los_bin"))
    weekly = {
        "rows": [
            {**base, "period": "2021-W02", "value": 40, "n_sites": 4, "first_published": 35},
            {**base, "period": "2021-W02", "age_rki": "60-79", "value": 12, "n_sites": 4},
            {**base, "period": "2021-W02", "state": "BY", "value": None, "suppressed": True, "n_sites": 4},
            {**base, "period": "2021-W02", "state": MERGED_STATES, "value": 30, "n_sites": 4},
            {**base, "period": "2021-W02", "sex": "female", "value": 20, "n_sites": 4},
        ]
    }
    rows = read(rki_weekly(weekly, default_registry().care.states))
    assert list(rows[0]) == list(RKI_WEEKLY)
    assert [(r["Bundesland"], r["Bundesland_Id"], r["Altersgruppe"]) for r in rows] == [
        ("Bundesgebiet", "00", "00+"),
        ("Bundesgebiet", "00", "60-79"),
        ("Bayern", "09", "00+"),
        ("Übrige Länder (zusammengefasst)", "", "00+"),
    ]
    assert (rows[0]["fixierte_Faelle"], rows[0]["aktualisierte_Faelle"]) == ("35", "40")
    assert rows[2]["aktualisierte_Faelle"] == ""
