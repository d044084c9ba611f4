"""The network's totals of a sample search, from the sites' released answers (`protocol.samples`), by the
feasibility rule for totals (`aggregation.total`): a total is shown only when at least `min_sites`
sites contributed a figure to it, so that no total is one site's figure under another name, and it is
marked "at least" when a contribution was below threshold (counted as nothing).

A total is a sum of figures each site already released; nothing exact is used here. Per cell (category ×
storage temperature class) a site's biobanks are summed first, so a site counts once per cell; a patient
with samples of a cell in two biobanks of one site is counted in both (the site releases no union).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from datenraum.privacy.aggregation import AggregationPolicy, Total, total
from datenraum.protocol.messages import SiteCount
from datenraum.protocol.samples import SampleResult

__all__ = ["CellTotal", "SampleTotals", "sample_totals"]


@dataclass(frozen=True)
class CellTotal:
    category: str
    temperature: str
    patients: Total | None
    samples: Total | None


@dataclass(frozen=True)
class SampleTotals:
    patients: Total | None
    samples: Total | None
    cells: tuple[CellTotal, ...]


@dataclass(frozen=True)
class _SiteFigure:
    """One site's figure of a cell over its biobanks: the sum of what was shown, and whether a biobank
    was below threshold (its part is not in the sum)."""

    value: int
    partial: bool


def _combined(counts: Sequence[SiteCount | None]) -> _SiteFigure | None:
    present = [count for count in counts if count is not None]
    if not present:
        return None  # the site did not report this figure
    known = [count.obfuscated for count in present if count.obfuscated is not None]
    return _SiteFigure(sum(known), any(count.below_threshold for count in present))


def _cell_total(figures: Sequence[_SiteFigure | None], policy: AggregationPolicy) -> Total | None:
    """`aggregation.total` for figures of several biobanks per site."""
    present = [figure for figure in figures if figure is not None]
    if len(present) < policy.min_sites:
        return None
    return Total(sum(f.value for f in present), len(present), any(f.partial for f in present))


def _total(counts: Sequence[SiteCount | None], policy: AggregationPolicy) -> Total | None:
    return total([count for count in counts if count is not None], policy)


def sample_totals(results: Sequence[SampleResult], policy: AggregationPolicy) -> SampleTotals:
    """The totals over the answers of several sites (one `SampleResult` per site)."""
    cells: dict[tuple[str, str], list[_SiteFigure | None]] = {}
    cell_samples: dict[tuple[str, str], list[_SiteFigure | None]] = {}
    for result in results:
        per_site: dict[tuple[str, str], list] = {}
        for cell in result.cells:
            per_site.setdefault((cell.category, cell.temperature), []).append(cell)
        for key, site_cells in per_site.items():
            cells.setdefault(key, []).append(_combined([cell.patients for cell in site_cells]))
            cell_samples.setdefault(key, []).append(_combined([cell.samples for cell in site_cells]))
    return SampleTotals(
        patients=_total([result.patients for result in results], policy),
        samples=_total([result.samples for result in results], policy),
        cells=tuple(
            CellTotal(
                category, temperature, _cell_total(cells[key], policy), _cell_total(cell_samples[key], policy)
            )
            for key in sorted(cells)
            for category, temperature in (key,)
        ),
    )
