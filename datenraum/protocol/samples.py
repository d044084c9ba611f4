"""A site's answer to a sample search, as it leaves the site: every figure a `SiteCount` (obfuscated or
only "below threshold"; the rules are `datenraum.privacy.samples`), per cell of (biobank, category,
storage temperature class), per biobank, and in total.

`from_measure_report` reads the same figures from a FHIR MeasureReport of the Samply/BBMRI Sample Locator
(samply/focus' `measure_bbmri.json`: groups `patients` with a `Custodian` stratifier and `specimen` with
`sample_kind`), so a bridgehead's answer and ours are shown alike; its figures were obfuscated by focus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datenraum.protocol.messages import ProtocolError, SiteCount

__all__ = ["MAX_CELLS", "BiobankPatients", "SampleCellResult", "SampleResult", "from_measure_report"]

MAX_CELLS = 5000
_TEXT_LIMIT = 200


def _text(value: Any, path: str, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= _TEXT_LIMIT or "\x00" in value:
        raise ProtocolError(f"{path}: expected a string of 1 to {_TEXT_LIMIT} characters")
    return value


def _count(body: dict, name: str, path: str, optional: bool = True) -> SiteCount | None:
    value = body.get(name)
    if value is None and optional:
        return None
    try:
        return SiteCount.from_json(value)
    except ProtocolError as error:
        raise ProtocolError(f"{path}.{name}: {error}") from None


def _json(count: SiteCount | None) -> dict[str, Any] | None:
    return None if count is None else count.to_json()


@dataclass(frozen=True)
class SampleCellResult:
    """One cell; a figure the site did not count (a MeasureReport has no aliquots) is None."""

    biobank: str | None
    category: str
    temperature: str
    patients: SiteCount | None
    samples: SiteCount | None
    specimens: SiteCount | None
    aliquots: SiteCount | None

    def to_json(self) -> dict[str, Any]:
        return {
            "biobank": self.biobank,
            "category": self.category,
            "temperature": self.temperature,
            **{name: _json(getattr(self, name)) for name in ("patients", "samples", "specimens", "aliquots")},
        }

    @classmethod
    def from_json(cls, body: Any, path: str) -> SampleCellResult:
        if not isinstance(body, dict):
            raise ProtocolError(f"{path}: expected an object")
        return cls(
            _text(body.get("biobank"), f"{path}.biobank", optional=True),
            _text(body.get("category"), f"{path}.category"),
            _text(body.get("temperature"), f"{path}.temperature"),
            *(_count(body, name, path) for name in ("patients", "samples", "specimens", "aliquots")),
        )


@dataclass(frozen=True)
class BiobankPatients:
    """The patients with samples in one biobank (None: samples without a managing organization)."""

    biobank: str | None
    name: str | None
    patients: SiteCount

    def to_json(self) -> dict[str, Any]:
        return {"biobank": self.biobank, "name": self.name, "patients": self.patients.to_json()}

    @classmethod
    def from_json(cls, body: Any, path: str) -> BiobankPatients:
        if not isinstance(body, dict):
            raise ProtocolError(f"{path}: expected an object")
        return cls(
            _text(body.get("biobank"), f"{path}.biobank", optional=True),
            _text(body.get("name"), f"{path}.name", optional=True),
            _count(body, "patients", path, optional=False),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class SampleResult:
    patients: SiteCount
    specimens: SiteCount | None
    samples: SiteCount | None
    biobanks: tuple[BiobankPatients, ...]
    cells: tuple[SampleCellResult, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "patients": self.patients.to_json(),
            "specimens": _json(self.specimens),
            "samples": _json(self.samples),
            "biobanks": [biobank.to_json() for biobank in self.biobanks],
            "cells": [cell.to_json() for cell in self.cells],
        }

    @classmethod
    def from_json(cls, body: Any) -> SampleResult:
        if not isinstance(body, dict):
            raise ProtocolError("samples: expected an object")
        for name in ("biobanks", "cells"):
            if not isinstance(body.get(name), list) or len(body[name]) > MAX_CELLS:
                raise ProtocolError(f"samples.{name}: expected a list of at most {MAX_CELLS} entries")
        return cls(
            _count(body, "patients", "samples", optional=False),  # type: ignore[arg-type]
            _count(body, "specimens", "samples"),
            _count(body, "samples", "samples"),
            tuple(
                BiobankPatients.from_json(b, f"samples.biobanks[{i}]") for i, b in enumerate(body["biobanks"])
            ),
            tuple(SampleCellResult.from_json(c, f"samples.cells[{i}]") for i, c in enumerate(body["cells"])),
        )


def _group(report: dict, name: str) -> tuple[int, dict | None]:
    for index, group in enumerate(report.get("group") or []):
        if isinstance(group, dict) and (group.get("code") or {}).get("text") == name:
            return index, group
    return -1, None


def _population(body: Any, path: str) -> int:
    populations = body.get("population") if isinstance(body, dict) else None
    if not isinstance(populations, list) or not populations or not isinstance(populations[0], dict):
        raise ProtocolError(f"{path}.population: expected a list with a count")
    count = populations[0].get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ProtocolError(f"{path}.population[0].count: expected a non-negative integer")
    return count


def _strata(group: dict, path: str, name: str) -> list[tuple[str | None, int]]:
    for s_index, stratifier in enumerate(group.get("stratifier") or []):
        codes = stratifier.get("code") if isinstance(stratifier, dict) else None
        if not isinstance(codes, list) or not any(
            isinstance(c, dict) and c.get("text") == name for c in codes
        ):
            continue
        strata = []
        for index, stratum in enumerate(stratifier.get("stratum") or []):
            where = f"{path}.stratifier[{s_index}].stratum[{index}]"
            value = _text(
                (stratum.get("value") or {}).get("text") if isinstance(stratum, dict) else None,
                f"{where}.value.text",
            )
            strata.append((None if value == "null" else value, _population(stratum, where)))
        return strata
    return []


def from_measure_report(report: Any) -> SampleResult:
    """A Sample Locator MeasureReport as a `SampleResult`: the patients (per Custodian), and the specimens
    per `sample_kind` as cells without biobank or temperature (the report has neither per specimen).
    ProtocolError names the JSON path of the first problem."""
    if not isinstance(report, dict) or report.get("resourceType") != "MeasureReport":
        raise ProtocolError("MeasureReport: expected a FHIR MeasureReport")
    p_index, patients = _group(report, "patients")
    if patients is None:
        raise ProtocolError("MeasureReport.group: no group 'patients'")
    s_index, specimens = _group(report, "specimen")
    kinds = _strata(specimens, f"MeasureReport.group[{s_index}]", "sample_kind") if specimens else []
    custodians = _strata(patients, f"MeasureReport.group[{p_index}]", "Custodian")
    return SampleResult(
        patients=SiteCount(_population(patients, f"MeasureReport.group[{p_index}]")),
        specimens=SiteCount(_population(specimens, f"MeasureReport.group[{s_index}]")) if specimens else None,
        samples=None,
        biobanks=tuple(BiobankPatients(custodian, None, SiteCount(n)) for custodian, n in custodians),
        cells=tuple(
            SampleCellResult(None, kind or "Unknown", "Unknown", None, None, SiteCount(n), None)
            for kind, n in kinds
        ),
    )
