"""The crisis dashboard's pages: the public dashboard (no sign-in), a site's own view for its members,
and the coordination office's page (sites' deliveries, crisis mode: a new disease or indicator sent to all
sites). Charts are Vega-Lite specs from `datenraum.indicators.charts`, each with its data table below it;
the downloads (`dashboard.api`) carry exactly the rows shown.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from datenraum.hub.accounts.service import User
from datenraum.hub.dashboard.service import Series
from datenraum.hub.errors import Invalid, NotFound
from datenraum.hub.feasibility.notify import site_key
from datenraum.hub.portal.i18n import texts_for
from datenraum.hub.portal.web import (
    checked_form,
    form_text,
    hub_of,
    language,
    optional_user,
    redirect,
    render,
    require,
)
from datenraum.hub.roles import Role
from datenraum.hub.runtime import Hub
from datenraum.indicators import charts
from datenraum.indicators.images import render_chart

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

MaybeUser = Annotated[User | None, Depends(optional_user)]
Admin = Annotated[User, Depends(require(Role.ADMIN))]
Member = Annotated[User, Depends(require())]

DEFAULT_DISEASE = "covid19"
# (indicator, chart type, dimension, caption's text key) of the page, in order.
_CHARTS = (
    ("new_inpatient_cases", "time_series", None, "dashboard.chart.new_cases"),
    ("inpatients_on_day", "stacked_levels", "level", "dashboard.chart.levels"),
    ("icu_admissions", "time_series", None, "dashboard.chart.icu"),
    ("in_hospital_deaths", "time_series", None, "dashboard.chart.deaths"),
    ("weekly_new_inpatient_cases", "bars_age", "age_rki", "dashboard.chart.age"),
    ("weekly_new_inpatient_cases", "bars_sex", "sex", "dashboard.chart.sex"),
    ("weekly_new_inpatient_cases", "small_multiples", "state", "dashboard.chart.states"),
)
_IMAGE_TYPES = {"svg": "image/svg+xml", "pdf": "application/pdf"}
_EXAMPLE = {
    "id": "mpox",
    "title": "Mpox",
    "start": "2022-05-01",
    "marker": {"icd10gm": ["B04"], "positive_loinc": ["100383-9"], "excluded_certainty": ["A"]},
    "window": {"before_days": 7},
}


def _chart(name: str, kind: str, dimension: str | None, caption: str, series: Series) -> dict[str, Any]:
    rows = series.rows
    if kind == "time_series":
        shown = [
            r for r in rows if all(r.get(d) is None for d in ("level", "sex", "age_rki", "state", "los_bin"))
        ]
        spec, columns = charts.time_series(caption, shown, series.bucket), ["period"]
    elif kind == "stacked_levels":
        shown = [
            r
            for r in rows
            if r.get("level") is not None
            and r.get("sex") is None
            and r.get("age_rki") is None
            and r.get("state") is None
        ]
        spec, columns = charts.stacked_levels(caption, shown, series.bucket), ["period", "level"]
    elif kind.startswith("bars"):
        assert dimension is not None
        shown = [r for r in rows if r.get(dimension) is not None]
        spec, columns = charts.bars(caption, shown, dimension), ["period", dimension]
    else:
        shown = [r for r in rows if r.get("state") is not None]
        spec, columns = charts.small_multiples(caption, shown, series.bucket), ["period", "state"]
    return {
        "name": name,
        "spec": spec,
        "rows": shown,
        "columns": columns,
        "caption": caption,
        "indicator": series.indicator,
    }


async def _series(hub: Hub, user: User | None, disease: str, indicator: str, site: str | None) -> Series:
    if site is None:
        return await hub.run(hub.dashboard.series, disease, indicator)
    assert user is not None
    return await hub.run(hub.dashboard.site_series, user, site, disease, indicator)


async def _page(request: Request, user: User | None, disease: str, site: str | None = None) -> Response:
    hub = hub_of(request)
    registry = await hub.run(hub.dashboard.registry)
    if disease not in registry.diseases:
        raise NotFound(f"no disease {disease!r}")
    texts = texts_for(language(request, user))
    built = []
    meta: dict[str, Any] = {"data_as_of": None, "sites": 0, "definitions_version": None}
    for number, (indicator, kind, dimension, caption) in enumerate(_CHARTS):
        series = await _series(hub, user, disease, indicator, site)
        built.append(_chart(f"c{number}", kind, dimension, texts[caption], series))
        meta = {
            "data_as_of": series.data_as_of,
            "sites": series.sites,
            "definitions_version": series.definitions_version,
            "k": series.k,
            "min_sites": series.min_sites,
        }
    return render(
        request,
        "dashboard.html",
        user,
        disease=registry.diseases[disease],
        diseases=list(registry.diseases.values()),
        charts=built,
        meta=meta,
        site=site,
        base="/dashboard" if site is None else f"/dashboard/sites/{site}",
    )


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard_home(request: Request, user: MaybeUser) -> Response:
    return await _page(request, user, DEFAULT_DISEASE)


@router.get("/dashboard/{disease}", response_class=HTMLResponse)
async def dashboard_disease(request: Request, user: MaybeUser, disease: str) -> Response:
    return await _page(request, user, disease)


@router.get("/dashboard/{disease}/charts/{name}.{suffix}")
async def dashboard_chart_image(
    request: Request, user: MaybeUser, disease: str, name: str, suffix: str
) -> Response:
    """One public chart as SVG or PDF (for the weekly report, e-mail), rendered at the hub from the same
    spec as the page (vl-convert), in the reader's language."""
    media_type = _IMAGE_TYPES.get(suffix)
    number = int(name[1:]) if name[:1] == "c" and name[1:].isdigit() else -1
    if media_type is None or not 0 <= number < len(_CHARTS):
        raise NotFound(f"no chart {name}.{suffix}; charts are c0 to c{len(_CHARTS) - 1}, as svg or pdf")
    hub = hub_of(request)
    registry = await hub.run(hub.dashboard.registry)
    if disease not in registry.diseases:
        raise NotFound(f"no disease {disease!r}")
    indicator, kind, dimension, caption = _CHARTS[number]
    series = await _series(hub, user, disease, indicator, None)
    texts = texts_for(language(request, user))
    spec = _chart(name, kind, dimension, texts[caption], series)["spec"]
    image = await run_in_threadpool(render_chart, spec, suffix)
    headers = {"Content-Disposition": f'attachment; filename="datenraum-{disease}-{name}.{suffix}"'}
    return Response(image, media_type=media_type, headers=headers)


@router.get("/dashboard/sites/{name}", response_class=HTMLResponse)
async def dashboard_site(
    request: Request, user: Member, name: str, disease: str = DEFAULT_DISEASE
) -> Response:
    """A site's own series: only for that site's members (its site administrators)."""
    return await _page(request, user, disease, site=name)


async def _admin_page(request: Request, user: User, status: int = 200, error: str | None = None) -> Response:
    hub = hub_of(request)
    return render(
        request,
        "admin_dashboard.html",
        user,
        status,
        status=await hub.run(hub.dashboard.status),
        registry=await hub.run(hub.dashboard.registry),
        example=json.dumps(_EXAMPLE, indent=1),
        error=error,
    )


@router.get("/admin/dashboard", response_class=HTMLResponse)
async def admin_dashboard(request: Request, user: Admin) -> Response:
    return await _admin_page(request, user)


@router.post("/admin/dashboard/definitions")
async def admin_define(request: Request, user: Admin) -> Response:
    form = await checked_form(request)
    hub = hub_of(request)
    try:
        body = json.loads(form_text(form, "body"))
    except ValueError as error:
        return await _admin_page(request, user, 422, f"the definition is not JSON: {error}")
    try:
        _run, sites = await hub.run(hub.dashboard.define, user, form_text(form, "kind"), body)
    except Invalid as error:
        return await _admin_page(request, user, 422, str(error))
    hub.notifier.notify(site_key(site) for site in sites)
    return redirect("/admin/dashboard")


@router.post("/admin/dashboard/run")
async def admin_run(request: Request, user: Admin) -> Response:
    await checked_form(request)
    hub = hub_of(request)
    _run, sites = await hub.run(hub.dashboard.start_run)
    hub.notifier.notify(site_key(site) for site in sites)
    return redirect("/admin/dashboard")
