"""Crisis dashboard indicators: definitions and the arithmetic on cubes, shared by sites and hub.

- `registry`: diseases and indicators as declarative files (`registry/`), checked and versioned;
- `cube`: the aggregates a site delivers (its JSON shape, checks of the shape);
- `quality`: plausibility checks of a delivery (cumulative non-decreasing, ICU within inpatients, strata
  sum to totals) that reject it;
- `release`: pooling over sites and the disclosure rules applied before anything is shown (with the
  region fallback: small federal states merged);
- `charts`: Vega-Lite specifications from a whitelist of chart types;
- `exports`: the 4CE daily-counts layout and an RKI-style weekly file, from released rows;
- `images`: a chart's spec as SVG or PDF (vl-convert).

The site's computation over its store is `datenraum.site.indicators`.
"""
