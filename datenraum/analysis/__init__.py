"""Federated analysis: pooled statistics and regression across sites without the data leaving them.

The library shared by hub, sites and researchers (imports only `query`, `privacy`, `protocol`):

- `formula`: formulas parsed into a `ModelSpec` (whitelisted transforms, no eval);
- `messages`: the versioned, typed requests and answers between hub and sites;
- `design`: model frame and design matrix from a spec (what a site runs);
- `families`: GLM families and links;
- `driver`: `Analysis`, the rounds, pooling and solvers over any `Sites` (the hub's, or local ones);
- `variables`: the typed definitions of analysis variables from a site store ("HbA1c latest in 2023");
- `client`: `Client`, the researcher's typed client of the hub's analysis API.

    from datenraum.analysis import Analysis
    from datenraum.site.analysis.local import LocalSites
    fit = Analysis(LocalSites.from_folder("sites")).glm("y ~ x1 + factor(x2)", family="binomial")
"""

from datenraum.analysis.client import Client
from datenraum.analysis.driver import Analysis, AnalysisError, GlmResult, Sites
from datenraum.analysis.formula import FormulaError, ModelSpec, parse_formula

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
