"""UCUM units of quantity filters: which stored units a filter can be compared with, and by what factor.

A lab value filter "HbA1c > 6.5 %" must not silently compare 48 mmol/mol against 6.5: `%` (DCCT) and
`mmol/mol` (IFCC) measure HbA1c on different scales, not the same quantity in different units, so they
sit in different dimensions here and never convert into each other. Units of the same dimension convert
by a factor (g/L = 100 mg/dL). A stored value whose unit is not convertible to the filter's unit does
not match the filter; a filter in a unit we do not know is rejected, because "no match" would be a lie.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ComparableUnit", "UnknownUnit", "canonical_unit", "comparable_units", "to_years_factor"]


class UnknownUnit(ValueError):
    pass


# dimension -> {UCUM code: factor to the dimension's base unit}
_DIMENSIONS: dict[str, dict[str, float]] = {
    "mass concentration": {
        "g/L": 1.0,
        "g/dL": 10.0,
        "mg/dL": 0.01,
        "mg/L": 1e-3,
        "mg/mL": 1.0,
        "ug/L": 1e-6,
        "ug/mL": 1e-3,
        "ug/dL": 1e-5,
        "ng/mL": 1e-6,
        "ng/L": 1e-9,
        "pg/mL": 1e-9,
        "g/mL": 1000.0,
        "kg/L": 1000.0,
    },
    "substance concentration": {
        "mol/L": 1.0,
        "mmol/L": 1e-3,
        "umol/L": 1e-6,
        "nmol/L": 1e-9,
        "pmol/L": 1e-12,
    },
    "number concentration": {
        "/L": 1.0,
        "10*9/L": 1e9,
        "10*12/L": 1e12,
        "/uL": 1e6,
        "10*3/uL": 1e9,
        "10*6/uL": 1e12,
        "/nL": 1e9,
        "/pL": 1e12,
        "10*3/mm3": 1e9,
        "10*6/mm3": 1e12,
    },
    "catalytic concentration": {"U/L": 1.0, "kU/L": 1000.0, "mU/L": 1e-3, "U/mL": 1000.0, "ukat/L": 60.0},
    "percent": {"%": 1.0},
    "molar ratio": {"mmol/mol": 1.0, "mol/mol": 1000.0},
    "volume rate per area": {"mL/min/{1.73_m2}": 1.0, "mL/min/1.73m2": 1.0},
    "time": {"a": 365.25, "mo": 30.4375, "wk": 7.0, "d": 1.0, "h": 1 / 24, "min": 1 / 1440, "s": 1 / 86400},
    "mass": {"kg": 1000.0, "g": 1.0, "mg": 1e-3, "ug": 1e-6},
    "length": {"m": 100.0, "cm": 1.0, "mm": 0.1},
    "pressure": {"mm[Hg]": 1.0, "kPa": 7.50062},
    "temperature": {"Cel": 1.0},
    "volume": {"L": 1000.0, "mL": 1.0, "dL": 100.0},
    "body mass index": {"kg/m2": 1.0},
    "rate": {"/min": 1.0, "{beats}/min": 1.0, "{breaths}/min": 1.0},
    "activity per mass": {"U/g": 1.0},
    "ratio": {"1": 1.0, "{ratio}": 1.0, "{INR}": 1.0},
}
_BY_UNIT = {
    unit: (dimension, factor) for dimension, units in _DIMENSIONS.items() for unit, factor in units.items()
}


@dataclass(frozen=True)
class ComparableUnit:
    """A stored unit and the factor that converts its values into the filter's unit."""

    unit: str
    factor: float


def comparable_units(filter_unit: str) -> tuple[ComparableUnit, ...]:
    """Every known unit that values can be stored in and still be compared with `filter_unit`."""
    try:
        dimension, filter_factor = _BY_UNIT[filter_unit]
    except KeyError:
        raise UnknownUnit(
            f"unit {filter_unit!r} is not a UCUM unit this site can compare (known: {', '.join(sorted(_BY_UNIT))})"
        ) from None
    return tuple(
        ComparableUnit(unit, factor / filter_factor) for unit, factor in _DIMENSIONS[dimension].items()
    )


def to_years_factor(unit: str | None) -> float:
    """The factor that turns an age given in `unit` into years (the unit of Patient age filters)."""
    if unit is None:
        return 1.0
    if unit not in _DIMENSIONS["time"]:
        raise UnknownUnit(f"an age must be given in a, mo, wk or d, not {unit!r}")
    return _DIMENSIONS["time"][unit] / _DIMENSIONS["time"]["a"]


def canonical_unit(unit: str) -> tuple[str, float] | None:
    """The unit that every unit of `unit`'s dimension converts into (the first of factor 1), and the factor
    from `unit` to it; None for a unit this site does not know."""
    known = _BY_UNIT.get(unit)
    if known is None:
        return None
    dimension, factor = known
    base = next(name for name, f in _DIMENSIONS[dimension].items() if f == 1.0)
    return base, factor
