"""An error nobody foresaw: the client gets a short JSON answer, the details stay in the server's log."""

from __future__ import annotations

import httpx
import pytest

from .helpers import HubFixture, bearer

pytestmark = pytest.mark.anyio


async def test_an_unexpected_failure_answers_500_with_an_error_and_no_details(hub: HubFixture) -> None:
    token = hub.user()
    app = hub.app()

    def broken() -> None:
        raise RuntimeError("secret detail of the failure")

    app.state.hub.federation.sites = broken
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            response = await client.get("/api/v1/sites", headers=bearer(token))
    assert response.status_code == 500
    assert response.json() == {"error": "internal error"}
    assert "secret detail" not in response.text
