"""The linkage unit's HTTP API (its own process: `datenraum linkunit serve`).

    PUT /v1/projects/{project}/sites/{site}/clks                 site: register its CLKs (replaces)
    GET /v1/projects/{project}/sites/{site}/links                site: its own link table
    PUT /v1/projects/{project}/counts/{count_id}/sites/{site}    site: the CLKs of its cohort for a count
    POST /v1/projects/{project}/counts                           hub: a new count id for the sites
    GET /v1/projects/{project}/counts/{count_id}?sites=a,b       hub: the released distinct count (over
                                                                 the named sites; default: all)

Every call carries `Authorization: Bearer <token>`; a site may only speak for itself, and only the hub
may read a count. Refusals are JSON `{"error": "..."}` with 400/401/403/404/409/413/429, never a trace.
"""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from datenraum.linkunit.config import ProjectConfig, token_digest
from datenraum.linkunit.errors import Forbidden, InvalidInput, LinkUnitError, NotAuthenticated
from datenraum.linkunit.service import LinkageUnit, parse_delivery

MAX_BODY = 256 * 1024 * 1024


class BodyTooLarge(LinkUnitError):
    status = 413


def _caller_digest(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("a bearer token is required")
    return token_digest(token.strip())


def _as_site(request: Request, project: ProjectConfig, site: str) -> None:
    digest = _caller_digest(request)
    expected = project.sites.get(site)
    if expected is None or not hmac.compare_digest(digest, expected):
        raise Forbidden(f"this token does not speak for site {site!r} of project {project.name}")


def _as_hub(request: Request, project: ProjectConfig) -> None:
    if not hmac.compare_digest(_caller_digest(request), project.hub):
        raise Forbidden(f"only the hub may read the counts of project {project.name}")


async def _json_body(request: Request) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise BodyTooLarge(f"the body has {declared} bytes, at most {MAX_BODY}")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise BodyTooLarge(f"the body has more than {MAX_BODY} bytes")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"the body is not JSON: {e}") from None


def create_app(unit: LinkageUnit) -> FastAPI:
    app = FastAPI(title="Datenraum linkage unit", openapi_url=None, docs_url=None, redoc_url=None)

    @app.exception_handler(LinkUnitError)
    async def _refused(_request: Request, error: LinkUnitError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.put("/v1/projects/{project}/sites/{site}/clks")
    async def register(project: str, site: str, request: Request) -> dict[str, int]:
        config = unit.project(project)
        _as_site(request, config, site)
        records = parse_delivery(await _json_body(request), config)
        return {"registered": unit.register(config, site, records)}

    @app.get("/v1/projects/{project}/sites/{site}/links")
    def links(project: str, site: str, request: Request) -> dict[str, Any]:
        config = unit.project(project)
        _as_site(request, config, site)
        rows = unit.link_table(config, site)
        return {"links": [{"pseudonym": r.pseudonym, "link_id": r.link_id} for r in rows]}

    @app.put("/v1/projects/{project}/counts/{count_id}/sites/{site}")
    async def deliver(project: str, count_id: str, site: str, request: Request) -> dict[str, int]:
        config = unit.project(project)
        _as_site(request, config, site)
        records = parse_delivery(await _json_body(request), config)
        unit.deliver_cohort(config, count_id, site, records)
        return {"delivered": len(records)}

    @app.post("/v1/projects/{project}/counts")
    def create_count(project: str, request: Request) -> dict[str, str]:
        config = unit.project(project)
        _as_hub(request, config)
        return {"count_id": unit.create_count(config)}

    @app.get("/v1/projects/{project}/counts/{count_id}")
    def count(project: str, count_id: str, request: Request, sites: str | None = None) -> dict[str, Any]:
        config = unit.project(project)
        _as_hub(request, config)
        named = None if sites is None else sites.split(",")
        return unit.distinct_count(config, count_id, named).as_json()

    return app
