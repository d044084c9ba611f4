"""The hub's HTTP application: `create_app(config)` gives a FastAPI app for uvicorn.

Each hub worker process serves the site API and the researcher API (docs/federation-api.md) and the
portal; on PostgreSQL several share the database (`serve`), their long-polls woken across processes
(`broadcast`), one of them sweeping overdue tasks in the background (`sweep`). Beyond its capacity a
worker answers 503 at once (`overload`). Every error is `{"error": "<what and where>"}`: bad input gets a 4xx naming the field,
never a stack trace. Request bodies are never logged (uvicorn's access log has method, path and
status only), and none of them could carry an exact count: the protocol has no field for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import html
import logging
import math
import shlex
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import sessionmaker
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from datenraum.hub.accounts.outbox import Outbox, SmtpSettings
from datenraum.hub.accounts.service import Accounts, PortalRoleHolders
from datenraum.hub.accounts.users import Users
from datenraum.hub.analysis import api as analysis_api
from datenraum.hub.analysis.service import Analyses
from datenraum.hub.broadcast import Broadcast
from datenraum.hub.catalogue import api as catalogue_api
from datenraum.hub.catalogue import site_api as catalogue_site_api
from datenraum.hub.config import HubConfig
from datenraum.hub.dashboard import api as dashboard_api
from datenraum.hub.dashboard.service import Dashboard
from datenraum.hub.db import Clock, create_hub_engine, utcnow
from datenraum.hub.delivery import api as delivery_api
from datenraum.hub.delivery import site_api as delivery_site_api
from datenraum.hub.delivery.service import CHUNK_MAX, Deliveries
from datenraum.hub.directory import api as directory_api
from datenraum.hub.directory.service import Directory
from datenraum.hub.errors import HubError
from datenraum.hub.feasibility import concepts_api, researcher_api, site_api, workspace_api
from datenraum.hub.feasibility.notify import Notifier, close_on_exit_signal, site_key
from datenraum.hub.feasibility.saved_queries import SavedQueries
from datenraum.hub.feasibility.service import Federation
from datenraum.hub.feasibility.site_overview import SiteOverview
from datenraum.hub.limits import BodySizeLimit
from datenraum.hub.overload import Capacity, ConcurrencyLimit
from datenraum.hub.portal import (
    analysis_pages,
    catalogue_pages,
    dashboard_pages,
    delivery_pages,
    directory_pages,
    pages,
    proposals_pages,
    samples_pages,
    sso,
    studies_pages,
)
from datenraum.hub.portal.web import STATIC, CsrfCookie, NotSignedIn, SecurityHeaders, error_page, render
from datenraum.hub.proposals import invitations
from datenraum.hub.proposals.sample_requests import SampleRequests
from datenraum.hub.proposals.service import Proposals, ProposalSettings
from datenraum.hub.proposals.uploads import UploadPolicy
from datenraum.hub.runtime import Hub
from datenraum.hub.samples import api as samples_api
from datenraum.hub.samples.service import SampleSearches
from datenraum.hub.studies import api as studies_api
from datenraum.hub.studies import site_api as studies_site_api
from datenraum.hub.studies.randomisation import Randomisations
from datenraum.hub.studies.service import Studies
from datenraum.hub.sweep import sweep_forever
from datenraum.privacy.aggregation import QuotaExceeded
from datenraum.protocol.messages import API_PREFIX

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _field(location: Sequence[str | int]) -> str:
    """A validation error's location as a path: ("body", "sites", 1) -> "sites[1]"."""
    parts = list(location)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def _wants_page(request: Request) -> bool:
    """Whether the error is for a person's browser rather than an API client: a portal page, or any path
    asked for by a browser that prefers HTML (Accept: text/html, as it sends when it navigates)."""
    path = request.url.path
    if path.startswith("/static/"):
        return False
    if not path.startswith("/api/") and path != "/openapi.json":
        return True
    accepted = [part.split(";")[0].strip().lower() for part in request.headers.get("accept", "").split(",")]
    return "text/html" in accepted and "application/json" not in accepted


async def _answer(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    """An error as the error page for a person's browser, or as JSON for an API client."""
    if not _wants_page(request):
        return _error(status, message, headers)
    response = await error_page(request, status, message)
    response.headers.update(headers or {})
    return response


async def _invalid_request(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    first = error.errors()[0]
    if first.get("type") == "json_invalid":
        status, message = 400, f"malformed JSON: {first.get('ctx', {}).get('error', first['msg'])}"
    else:
        status, message = 422, f"{_field(first['loc'])}: {first['msg']}"
    return await _answer(request, status, message)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return await _answer(request, error.status_code, str(error.detail), dict(error.headers or {}))


async def _not_signed_in(request: Request, _exception: Exception) -> Response:
    return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)


async def _quota_exceeded(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, QuotaExceeded)
    retry_after = max(1, math.ceil(error.retry_after.total_seconds()))
    return _error(429, str(error), {"Retry-After": str(retry_after)})


async def _hub_error(request: Request, error: Exception) -> Response:
    """Every service error (see `errors`): its status, with its text on the error page or as JSON."""
    assert isinstance(error, HubError)
    return await _answer(request, error.status, str(error), error.headers() or None)


async def _database_unavailable(request: Request, error: Exception) -> Response:
    # Clients retry on 503; the operator learns why, in one line.
    log.error("database unavailable: %s", str(getattr(error, "orig", error)).splitlines()[0])
    message = "the hub's database is unavailable; try again later"
    if not _wants_page(request):
        return _error(503, message, {"Retry-After": "5"})
    return _plain_page(request, 503, message)


def _plain_page(request: Request, status: int, message: str) -> Response:
    """The error page without the signed-in person (whose account the database may not give now)."""
    request.state.csrf = getattr(request.state, "csrf", "")
    try:
        return render(request, "error.html", None, status, message=message, status=status)
    except Exception:  # the page itself failed: the text alone
        log.exception("the error page could not be made")
        return HTMLResponse(
            f"<!doctype html><title>{status}</title><p>{html.escape(message)}</p>", status_code=status
        )


async def _internal_error(request: Request, _exception: Exception | None = None) -> Response:
    # The traceback goes to the server log (uvicorn logs it); the client learns nothing about internals.
    if not _wants_page(request):
        return _error(500, "internal error")
    return _plain_page(request, 500, "internal error")


class UnexpectedErrors:
    """Answer an exception that no handler took with a 500 from inside `SecurityHeaders`, so that it has
    the security headers like every answer (Starlette's last-resort handler sits outside all middleware).
    The exception goes on, for the server to log its traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            if not started:
                response = await _internal_error(Request(scope))
                await response(scope, receive, send)
            raise


def _proposal_settings(config: HubConfig) -> ProposalSettings:
    uploads = UploadPolicy(
        folder=Path(config.upload_folder),
        max_bytes=config.upload_max_bytes,
        scan_command=tuple(shlex.split(config.upload_scan_command)),
        scan_timeout_seconds=config.upload_scan_timeout_seconds,
    )
    return ProposalSettings(uploads=uploads, quorum=config.proposal_quorum)


def create_app(config: HubConfig, clock: Clock = utcnow, seal_key: bytes | None = None) -> FastAPI:
    """The hub on the database `config.database_url`, which must be migrated (see `db.migrate`);
    `seal_key` seals single sign-on cookies, shared by the workers of one hub (None: this process's own)."""
    engine = create_hub_engine(config.database_url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    smtp = SmtpSettings(config.smtp_host, config.smtp_port, config.smtp_sender) if config.smtp_host else None
    outbox = Outbox(sessions, smtp, clock, Path(config.mail_folder) if config.mail_folder else None)
    hub = Hub(
        config=config,
        engine=engine,
        sessions=sessions,
        accounts=Accounts(sessions, clock, config.token_lifetime),
        users=Users(
            sessions,
            outbox,
            clock=clock,
            session_lifetime=dt.timedelta(hours=config.session_hours),
            max_failed_logins=config.max_failed_logins,
            token_lifetime=config.token_lifetime,
            on_approved=invitations.resolve,
        ),
        outbox=outbox,
        saved_queries=SavedQueries(sessions, clock),
        sites=SiteOverview(sessions),
        federation=Federation(sessions, config, clock),
        notifier=Notifier(),
        proposals=Proposals(sessions, _proposal_settings(config), PortalRoleHolders(), clock),
        directory=Directory(sessions),
        invitations=invitations.Invitations(sessions),
        dashboard=Dashboard(sessions, config, clock),
        analysis=Analyses(sessions, config, clock),
        deliveries=Deliveries(sessions, config, clock),
        samples=SampleSearches(sessions, config, clock),
        sample_requests=SampleRequests(sessions, PortalRoleHolders(), clock, config.sample_reminder_days),
        studies=Studies(sessions, clock, config.public_url),
        randomisations=Randomisations(sessions, Path(config.study_key_file), clock),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # On PostgreSQL other worker processes may share the database: listen before serving.
        broadcast = (
            Broadcast(config.database_url, hub.notifier) if engine.dialect.name == "postgresql" else None
        )
        if broadcast is not None:
            await broadcast.start()
        sweeper = asyncio.create_task(sweep_forever(hub, clock))
        loop = asyncio.get_running_loop()
        hub.analysis.rounds.bind(
            lambda ids: loop.call_soon_threadsafe(hub.notifier.notify, [site_key(i) for i in ids])
        )
        try:
            with close_on_exit_signal(hub.notifier):
                yield
        finally:
            hub.notifier.close()
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            if broadcast is not None:
                await broadcast.close()
            engine.dispose()

    app = FastAPI(
        title="Datenraum hub",
        summary="Federated feasibility queries over Germany's university hospitals",
        version="1",
        lifespan=lifespan,
    )
    app.state.hub = hub
    # The catalogue lists the dashboard's public series (see `catalogue.api.catalogue_of`).
    app.state.catalogue_series = hub.dashboard.public_series
    # The APIs first, then the pages; in this order routes are matched.
    for router in (
        site_api.router,
        delivery_site_api.router,
        delivery_api.router,
        researcher_api.router,
        workspace_api.router,
        concepts_api.router,
        directory_api.router,
        analysis_api.router,
        pages.router,
        sso.routes(config, clock, seal_key),
        proposals_pages.router,
        directory_pages.router,
        catalogue_api.router,
        catalogue_site_api.router,
        catalogue_pages.router,
        dashboard_api.router,
        dashboard_pages.router,
        analysis_pages.router,
        delivery_pages.router,
        samples_api.router,
        samples_pages.router,
        studies_site_api.router,
        studies_api.router,
        studies_pages.router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # A document as large as the upload limit, with the form around it, reaches the upload check.
    upload_body = config.upload_max_bytes + config.max_body_bytes
    app.add_middleware(
        BodySizeLimit,
        max_bytes=config.max_body_bytes,
        larger=[
            (proposals_pages.UPLOAD_PATHS, upload_body),
            (delivery_site_api.UPLOAD_PATHS, CHUNK_MAX),
        ],
    )
    app.add_middleware(CsrfCookie, secure=config.secure_cookies)
    app.add_middleware(UnexpectedErrors)
    # Outside everything but the security headers: a refusal costs the least there is. The site API is
    # exempt (see `overload`).
    capacity = Capacity(config.max_concurrent_requests, config.max_waits, config.max_waits_per_user)
    app.state.capacity = capacity
    app.add_middleware(ConcurrencyLimit, capacity=capacity, exempt=[f"{API_PREFIX}/"])
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(NotSignedIn, _not_signed_in)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(QuotaExceeded, _quota_exceeded)
    # The pages answer most of these on the form they came from; this is for anything that reaches here.
    app.add_exception_handler(HubError, _hub_error)
    app.add_exception_handler(sa.exc.OperationalError, _database_unavailable)
    app.add_exception_handler(Exception, _internal_error)
    return app
