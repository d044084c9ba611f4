"""Federated analysis: pooled statistics and regression across sites without the data leaving them.

The library shared by hub, sites and researchers (imports only `query`, `privacy`, `protocol`):

- `formula`: formulas parsed into a `ModelSpec` (whitelisted transforms, no eval);
- `messages`: the versioned, typed requests and answers between hub and sites;
- `design`: model frame and design matrix from a spec (what a site runs);
- `families`: GLM families and links;
- `driver`: `Analysis`, the rounds, pooling and solvers over any `Sites` (the hub's, or local ones);
- `variables`: the typed definitions of analysis variables from a site store ("HbA1c latest in 2023");
  `time_to_event`: those of time-to-event variables (start, event; censored at the site's data end);
- `survival`: Kaplan–Meier, log-rank and Cox pooled from the sites' binned aggregates; `plots`: Vega-Lite
  specs of released results;
- `client`: `Client`, the researcher's typed client of the hub's analysis API.

    from datenraum.analysis import Analysis
    from datenraum.site.analysis.local import LocalSites
    fit = Analysis(LocalSites.from_folder("sites")).glm("y ~ x1 + factor(x2)", family="binomial")
"""

from typing import TYPE_CHECKING, Any

from datenraum.analysis.formula import FormulaError, ModelSpec, parse_formula

if TYPE_CHECKING:
    from datenraum.analysis.client import Client
    from datenraum.analysis.driver import Analysis, AnalysisError, GlmResult, Sites

# The driver and the client need numpy and scipy; they are imported when first named, so that the hub,
# which reads only the messages and formulas of this package when it starts, starts without them.
_LAZY = {
    "Analysis": "driver",
    "AnalysisError": "driver",
    "GlmResult": "driver",
    "Sites": "driver",
    "Client": "client",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)


__all__ = [
    "Analysis",
    "AnalysisError",
    "Client",
    "FormulaError",
    "GlmResult",
    "ModelSpec",
    "Sites",
    "parse_formula",
]
