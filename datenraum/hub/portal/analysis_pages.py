"""The analysis workspace: a researcher's approved federated-analysis projects, and for one of them a
survival analysis built with a form (start and event of follow-up, a group, covariates), run across its
sites: the Kaplan–Meier curves with the log-rank test and a Cox model, as Vega-Lite charts (SVG) from the
released results with their tables beside, and the equivalent Python client code.

The form becomes the same call the API takes (`hub.analysis.run`, each call logged like the API's), so
the page can do nothing the API could not; only members of the project see it (another project is 404).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from datenraum.analysis import plots
from datenraum.hub.accounts.service import User
from datenraum.hub.analysis.service import AnalysisFailed, Project
from datenraum.hub.errors import Invalid
from datenraum.hub.portal.web import checked_form, form_text, hub_of, render, require
from datenraum.hub.roles import Role

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

Researcher = Annotated[User, Depends(require(Role.RESEARCHER))]

ICD = re.compile(r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?$")
BINARY_SEX = [{"variable": "sex", "comparator": "in", "value": ["female", "male"]}]


_FORM_FIELDS = (
    "start",
    "start_code",
    "start_date",
    "event",
    "event_code",
    "group",
    "age",
    "covariate_code",
    "bin_width",
    "ties",
)


class FormProblem(ValueError):
    """A field of the workspace form that cannot be used; the text names it."""


@dataclass(frozen=True)
class SurvivalForm:
    start: str = "admission"  # admission | condition | date
    start_code: str = ""
    start_date: str = ""
    event: str = "death"  # death | condition
    event_code: str = ""
    group: str = ""  # "" | sex
    age: bool = True
    covariate_code: str = ""  # a diagnosis as a 0/1 covariate
    bin_width: float = 30.0
    ties: str = "efron"

    @classmethod
    def from_form(cls, form: FormData) -> SurvivalForm:
        def code(name: str, required: bool) -> str:
            value = form_text(form, name).strip().upper()
            if (value or required) and not ICD.match(value):
                raise FormProblem(f"{name}: expected an ICD-10 code such as C50 or I21.9")
            return value

        start = form_text(form, "start")
        if start not in ("admission", "condition", "date"):
            raise FormProblem("start: expected admission, condition or date")
        event = form_text(form, "event")
        if event not in ("death", "condition"):
            raise FormProblem("event: expected death or condition")
        group = form_text(form, "group")
        if group not in ("", "sex"):
            raise FormProblem("group: expected none or sex")
        ties = form_text(form, "ties")
        if ties not in ("efron", "breslow"):
            raise FormProblem("ties: expected efron or breslow")
        try:
            width = float(form_text(form, "bin_width"))
        except ValueError:
            raise FormProblem("bin_width: expected a number of days") from None
        if not 1 <= width <= 3650:
            raise FormProblem("bin_width: expected 1 to 3650 days")
        start_date = form_text(form, "start_date").strip()
        if start == "date" and not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", start_date):
            raise FormProblem("start_date: expected a date YYYY-MM-DD")
        return cls(
            start=start,
            start_code=code("start_code", start == "condition"),
            start_date=start_date if start == "date" else "",
            event=event,
            event_code=code("event_code", event == "condition"),
            group=group,
            age=form_text(form, "age") == "on",
            covariate_code=code("covariate_code", False),
            bin_width=width,
            ties=ties,
        )

    def variables(self) -> dict[str, Any]:
        start: dict[str, Any] = {"on": self.start}
        if self.start == "condition":
            start["codes"] = [self.start_code]
        elif self.start == "date":
            start["date"] = self.start_date
        event: dict[str, Any] = {"on": self.event}
        if self.event == "condition":
            event["codes"] = [self.event_code]
        out: dict[str, Any] = {
            "days": {"kind": "time_to_event", "value": "time", "start": start, "event": event},
            "died" if self.event == "death" else "event": {
                "kind": "time_to_event",
                "value": "event",
                "start": start,
                "event": event,
            },
            "age": {"kind": "age"},
            "sex": {"kind": "sex"},
        }
        if self.covariate_code:
            out[self.covariate_name] = {"kind": "condition", "codes": [self.covariate_code], "value": "any"}
        return out

    @property
    def event_name(self) -> str:
        return "died" if self.event == "death" else "event"

    @property
    def covariate_name(self) -> str:
        return "dx_" + self.covariate_code.replace(".", "_")

    def covariates(self) -> list[str]:
        return [*(["age"] if self.age else []), *([self.covariate_name] if self.covariate_code else [])]

    def km_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "data": {"variables": self.variables()},
            "time": "days",
            "event": self.event_name,
            "bin_width": self.bin_width,
        }
        if self.group:
            body["group"] = self.group
            body["where"] = BINARY_SEX
        return body

    def cox_body(self) -> dict[str, Any]:
        # the same rows as the curves: two releases on row sets a few patients apart would be refused
        # by the sites as differencing
        body: dict[str, Any] = {
            "data": {"variables": self.variables()},
            "time": "days",
            "event": self.event_name,
            "covariates": self.covariates(),
            "ties": self.ties,
            "bin_width": self.bin_width,
        }
        if self.group:
            body["where"] = BINARY_SEX
        return body

    def client_code(self, project: int) -> str:
        km = self.km_body()
        group = f", group={km['group']!r}, where={json.dumps(BINARY_SEX)}" if self.group else ""
        lines = [
            "from datenraum.analysis import Client",
            "",
            f"variables = {json.dumps(self.variables(), indent=4)}",
            f"with Client(HUB_URL, API_TOKEN, project={project}, variables=variables) as client:",
            f"    curves = client.km('days', {self.event_name!r}, bin_width={self.bin_width:g}{group})",
        ]
        if self.covariates():
            where = f", where={json.dumps(BINARY_SEX)}" if self.group else ""
            lines.append(
                f"    cox = client.cox('days', {self.event_name!r}, {self.covariates()!r}, "
                f"ties={self.ties!r}, bin_width={self.bin_width:g}{where})"
            )
        return "\n".join(lines)


def _km_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for group, curve in result["curves"].items():
        for i, start in enumerate(curve["bin_start"]):
            rows.append(
                {
                    "group": group,
                    "from": start,
                    "to": curve["time"][i + 1],
                    "n_risk": curve["n_risk"][i],
                    "events": curve["events"][i],
                    "censored": curve["censored"][i],
                    "survival": curve["survival"][i + 1],
                    "ci_low": curve["ci_low"][i + 1],
                    "ci_high": curve["ci_high"][i + 1],
                }
            )
    return rows


def _cox_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "label": name,
            "estimate": c["hazard_ratio"],
            "ci_low": c["ci"][0],
            "ci_high": c["ci"][1],
            "coef": c["estimate"],
            "se": c["se"],
            "p": c["p"],
        }
        for name, c in result["coefficients"].items()
    ]


async def _run(request: Request, user: User, project: Project, operation: str, body: dict) -> Any:
    """One logged call, as the API makes it; AnalysisFailed or Invalid when it gives no result."""
    hub = hub_of(request)
    try:
        result, log = await run_in_threadpool(hub.analysis.run, user, project, operation, body)
    except AnalysisFailed as failed:
        if failed.log is not None:
            await hub.run(hub.analysis.record, user, project, failed.log)
        raise
    await hub.run(hub.analysis.record, user, project, log)
    return result


def _page(request: Request, user: User, project: Project, form: SurvivalForm, status: int = 200, **results):
    return render(
        request,
        "analysis_workspace.html",
        user,
        status,
        project=project,
        form=form,
        code=form.client_code(project.id),
        **results,
    )


@router.get("/analysis", response_class=HTMLResponse)
async def analysis_projects(request: Request, user: Researcher) -> Response:
    hub = hub_of(request)
    projects = await hub.run(hub.analysis.projects, user)
    return render(request, "analysis_projects.html", user, projects=projects)


@router.get("/analysis/{project_id}", response_class=HTMLResponse)
async def analysis_workspace(request: Request, user: Researcher, project_id: int) -> Response:
    hub = hub_of(request)
    project = await hub.run(hub.analysis.project, user, project_id)
    return _page(request, user, project, SurvivalForm())


@router.post("/analysis/{project_id}/survival", response_class=HTMLResponse)
async def analysis_survival(request: Request, user: Researcher, project_id: int) -> Response:
    form = await checked_form(request)
    hub = hub_of(request)
    project = await hub.run(hub.analysis.project, user, project_id)
    try:
        chosen = SurvivalForm.from_form(form)
    except FormProblem as problem:
        # a refused submission is a run of the log too: who tried what on which project
        fields = {k: form_text(form, k)[:80] for k in _FORM_FIELDS}
        log = {
            "operation": "survival",
            "request": fields,
            "sites": [],
            "state": "invalid",
            "errors": [{"site": None, "code": "bad_request", "rule": None, "threshold": None}],
            "rounds": 0,
            "seconds": 0.0,
        }
        await hub.run(hub.analysis.record, user, project, log)
        return _page(request, user, project, SurvivalForm(), 422, problem=str(problem))
    results: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    try:
        km = await _run(request, user, project, "km", chosen.km_body())
        results["km"] = km
        results["km_spec"] = plots.km_curve(km)
        results["km_rows"] = _km_rows(km)
        if chosen.covariates():
            cox = await _run(request, user, project, "cox", chosen.cox_body())
            rows = _cox_rows(cox)
            results["cox"] = cox
            results["cox_rows"] = rows
            results["cox_spec"] = plots.forest(rows, ratio=True, title="hazard ratio (95% CI)")
    except AnalysisFailed as failed:
        errors = failed.errors
    except Invalid as invalid:
        return _page(request, user, project, chosen, 422, problem=str(invalid), **results)
    return _page(request, user, project, chosen, 422 if errors else 200, errors=errors, **results)
