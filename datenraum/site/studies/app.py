"""The EDC's web app: `datenraum studies serve --config site.toml [--host --port]`.

At start it pulls the study definitions from the hub (a hub that is away is logged; the EDC works on the
definitions it pulled last) and then every `refresh_seconds` in the background, so a role changed at the
hub reaches the site within minutes.
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from datenraum.site.studies.pages import add_pages
from datenraum.site.studies.service import Edc
from datenraum.site.studies.web import CsrfCookie, SecurityHeaders

__all__ = ["create_app"]


def create_app(
    edc: Edc, *, session_hours: float = 8.0, secure_cookies: bool = True, refresh_seconds: float | None = 300
) -> FastAPI:
    """The app over `edc`; `refresh_seconds=None` pulls no definitions by itself (tests pull when they want)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        task = None
        if refresh_seconds is not None:

            async def refresh() -> None:
                while True:
                    await run_in_threadpool(edc.pull_quietly)
                    await asyncio.sleep(refresh_seconds)

            task = asyncio.create_task(refresh())
        yield
        if task is not None:
            task.cancel()

    app = FastAPI(
        title="Datenraum site EDC", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.edc = edc
    add_pages(app, session_hours=session_hours, secure_cookies=secure_cookies)
    app.add_middleware(CsrfCookie, secure=secure_cookies)
    app.add_middleware(SecurityHeaders)
    return app
