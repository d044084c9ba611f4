"""Errors: a service error answers its status; one nobody foresaw answers a short 500, details in the log."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from datenraum.hub.accounts.oidc import Reason, SignInFailed
from datenraum.hub.accounts.users import LoginThrottled, RequestsThrottled
from datenraum.hub.errors import HubError, TooMany

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


def _subclasses(cls: type[HubError]) -> list[type[HubError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def _example(cls: type[HubError]) -> HubError:
    """One instance of `cls`; the classes whose constructor takes more than a text are listed here."""
    if issubclass(cls, (LoginThrottled, RequestsThrottled)):
        return cls(dt.timedelta(seconds=90))
    if issubclass(cls, TooMany):
        return cls(f"{cls.__name__}: too many", dt.timedelta(seconds=90))
    if issubclass(cls, SignInFailed):
        return cls(Reason.UNREACHABLE, "the provider does not answer")
    return cls(f"{cls.__name__}: the text of the error")


async def test_every_hub_error_from_a_route_answers_its_status_not_500(hub: HubFixture) -> None:
    token = hub.user()
    app = hub.app()  # imports every module of the hub, so every HubError subclass is defined
    classes = [HubError, *_subclasses(HubError)]
    # The tree as errors.py draws it, so that a new class is looked at here.
    assert {cls.__name__ for cls in classes} >= {
        "AccountError",
        "AccountPending",
        "ActionForbidden",
        "Conflict",
        "Forbidden",
        "Invalid",
        "LoginThrottled",
        "NotAdministrator",
        "NotFound",
        "Refused",
        "RequestsThrottled",
        "SignInFailed",
        "SiteLimitReached",
        "TooMany",
        "TransitionError",
        "UploadRejected",
    }
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            for cls in classes:
                error = _example(cls)

                def failing(error: HubError = error) -> None:
                    raise error

                app.state.hub.federation.sites = failing
                response = await client.get("/api/v1/sites", headers=bearer(token))
                assert (cls.__name__, response.status_code) == (cls.__name__, cls.status)
                assert cls.status != 500
                assert response.json() == {"error": str(error)}
                if issubclass(cls, TooMany):
                    assert response.headers["Retry-After"] == "90"
