"""The researcher's Python client of the hub's federated analysis API: the same calls as local mode.

    from datenraum.analysis import Client

    client = Client("https://hub.example.org", token, project=12, variables={
        "t2d": {"kind": "condition", "codes": ["E11"], "value": "any"},
        "age": {"kind": "age", "at": "2024-01-01"},
        "sex": {"kind": "sex"},
    })
    fit = client.glm("t2d ~ age + factor(sex)", family="binomial")   # a GlmResult, as Analysis.glm
    client.summary("age")

The project is an approved "federated analysis only" proposal of the researcher's (`client.projects()`
lists them); its sites and cohort are the proposal's. A call that gives no pooled result raises
`AnalysisError` with the structured, bilingual errors (`code`, `rule`, `threshold`, `site`,
`message_en`, `message_de`); a site that did not answer in time is named (code `no_answer`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from datenraum.analysis.driver import AnalysisError, GlmResult

__all__ = ["Client"]


def _error(code: str, en: str, de: str) -> dict[str, Any]:
    return {"code": code, "rule": None, "threshold": None, "site": None, "message_en": en, "message_de": de}


class Client:
    def __init__(
        self,
        hub_url: str,
        token: str,
        *,
        project: int | None = None,
        variables: Mapping[str, Any] | None = None,
        timeout: float = 300.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.project = project
        self.variables = dict(variables or {})
        self.subset: str | None = None
        self._http = httpx.Client(
            base_url=hub_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- projects
    def projects(self) -> list[dict[str, Any]]:
        return self._get("/api/v1/analysis/projects")["projects"]

    def sites(self) -> list[str]:
        return self._get(f"/api/v1/analysis/projects/{self._project()}")["sites"]

    # -- the calls of datenraum.analysis.Analysis
    def summary(self, variables: Sequence[str] | str, *, where=None, sites=None) -> dict:
        return self._run("summary", variables=_names(variables), where=where, sites=sites)

    def describe(self, variables: Sequence[str] | str, *, where=None, sites=None) -> dict:
        return self._run("describe", variables=_names(variables), where=where, sites=sites)

    def by_group(self, variables: Sequence[str] | str, group: str, *, where=None, sites=None) -> dict:
        return self._run("by_group", variables=_names(variables), group=group, where=where, sites=sites)

    def quantiles(
        self, variable: str, probs: Sequence[float] = (0.25, 0.5, 0.75), *, where=None, sites=None
    ) -> dict:
        return self._run("quantiles", variable=variable, probs=list(probs), where=where, sites=sites)

    def table(self, variables: Sequence[str] | str, *, where=None, sites=None) -> dict:
        return self._run("table", variables=_names(variables), where=where, sites=sites)

    def cor(self, variables: Sequence[str], *, where=None, sites=None) -> dict:
        return self._run("cor", variables=list(variables), where=where, sites=sites)

    def glm(
        self,
        formula: str,
        family: str = "gaussian",
        *,
        link: str | None = None,
        weights: str | None = None,
        where=None,
        sites=None,
        tol: float | None = None,
        max_iter: int | None = None,
    ) -> GlmResult:
        body = self._run(
            "glm",
            formula=formula,
            family=family,
            link=link,
            weights=weights,
            where=where,
            sites=sites,
            tol=tol,
            max_iter=max_iter,
        )
        body.pop("coefficients", None)
        return GlmResult(**body)

    def glm_slma(
        self, formula: str, family: str = "gaussian", *, link=None, weights=None, where=None, sites=None
    ) -> dict:
        return self._run(
            "glm_slma", formula=formula, family=family, link=link, weights=weights, where=where, sites=sites
        )

    def assign(self, name: str, *, derive: str | None = None, subset=None, sites=None) -> dict:
        return self._run("assign", name=name, derive=derive, subset=subset, sites=sites)

    def km(
        self, time: str, event: str, *, group=None, bin_width=None, alpha=None, where=None, sites=None
    ) -> dict:
        return self._run(
            "km",
            time=time,
            event=event,
            group=group,
            bin_width=bin_width,
            alpha=alpha,
            where=where,
            sites=sites,
        )

    def logrank(self, time: str, event: str, group: str, *, bin_width=None, where=None, sites=None) -> dict:
        return self._run(
            "logrank", time=time, event=event, group=group, bin_width=bin_width, where=where, sites=sites
        )

    def cox(
        self,
        time: str,
        event: str,
        covariates: Sequence[str] | str,
        *,
        ties: str | None = None,
        strata_by_site: bool | None = None,
        bin_width: float | None = None,
        ph_test: str | None = None,
        where=None,
        sites=None,
    ) -> dict:
        """The pooled Cox fit; with `ph_test` ("km" or "identity") also each site's
        proportional-hazards test per covariate (`ph_tests`)."""
        return self._run(
            "cox",
            time=time,
            event=event,
            covariates=_names(covariates),
            ties=ties,
            strata_by_site=strata_by_site,
            bin_width=bin_width,
            ph_test=ph_test,
            where=where,
            sites=sites,
        )

    def pwe(
        self,
        time: str,
        event: str,
        covariates: Sequence[str] | str,
        *,
        bin_width: float | None = None,
        where=None,
        sites=None,
    ) -> GlmResult:
        """The piecewise-exponential model (a Poisson GLM on the sites' rows split at the bins)."""
        body = self._run(
            "pwe",
            time=time,
            event=event,
            covariates=_names(covariates),
            bin_width=bin_width,
            where=where,
            sites=sites,
        )
        body.pop("coefficients", None)
        return GlmResult(**body)

    # -- the wire
    def _project(self) -> int:
        if self.project is None:
            raise AnalysisError(
                [
                    _error(
                        "no_project",
                        "no project chosen (Client(..., project=ID))",
                        "kein Projekt gewählt (Client(..., project=ID))",
                    )
                ]
            )
        return self.project

    def _get(self, path: str) -> Any:
        return self._answer(self._send("GET", path))

    def _run(self, operation: str, **params: Any) -> Any:
        body = {k: v for k, v in params.items() if v is not None}
        data: dict[str, Any] = {"variables": self.variables}
        if self.subset is not None:
            data["subset"] = self.subset
        body["data"] = data
        answer = self._answer(
            self._send("POST", f"/api/v1/analysis/projects/{self._project()}/{operation}", json=body)
        )
        return answer["result"]

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise AnalysisError(
                [
                    _error(
                        "hub_unreachable",
                        f"the hub cannot be reached: {error}",
                        f"der Hub ist nicht erreichbar: {error}",
                    )
                ]
            ) from None

    @staticmethod
    def _answer(response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code < 400 and isinstance(body, dict):
            return body
        if isinstance(body, dict) and isinstance(body.get("errors"), list):
            raise AnalysisError(body["errors"])
        text = body.get("error") if isinstance(body, dict) else response.text[:200]
        raise AnalysisError(
            [
                _error(
                    f"http_{response.status_code}",
                    f"the hub answered {response.status_code}: {text}",
                    f"der Hub antwortete {response.status_code}: {text}",
                )
            ]
        )


def _names(variables: Sequence[str] | str) -> list[str]:
    return [variables] if isinstance(variables, str) else list(variables)
