"""Single sign-on pages: `GET /login/sso` sends the browser to the identity provider, and
`GET /login/sso/callback` signs it in with what the provider sent back (see `hub.oidc`).

Between the two, the sign-in's state, nonce and PKCE verifier wait in a cookie of the browser, encrypted
and authenticated (AES-GCM) with a key that the hub makes at start and keeps in memory only: `hub serve`
makes it once and hands it to each of its worker processes (`serve.SEAL_KEY_ENV`), so that the callback may
reach another worker than the start. Why a cookie and this key: there is no secret to configure or to
leak, and nothing to clean up in the database after sign-ins that were abandoned. A restart only means
that a sign-in begun before it must begin again. The encryption
keeps the verifier and nonce from the page's scripts and from logs as well as from forgery; the cookie
lives ten minutes, only on these two paths, HttpOnly and SameSite=Lax (the provider's redirect back is a
top-level navigation, which Lax lets through). A state is taken once (`RelyingParty` remembers used ones for
as long as a cookie could be opened), so a replayed callback fails. That memory is each worker process's:
a callback replayed to another worker passes it, and is refused by the provider, whose authorization code
is good for one exchange only (RFC 6749, 4.1.2).

Every failure is a page in the reader's language, and the operator's log says what exactly went wrong.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from datenraum.hub.accounts.oidc import OidcSettings, PendingSignIn, Reason, RelyingParty, SignInFailed
from datenraum.hub.accounts.users import AccountPending
from datenraum.hub.config import HubConfig
from datenraum.hub.db import Clock
from datenraum.hub.errors import AccountError
from datenraum.hub.portal.web import hub_of, local_path, render, set_session
from datenraum.hub.runtime import client_ip

__all__ = ["CALLBACK_PATH", "FLOW_COOKIE", "new_seal_key", "routes"]

log = logging.getLogger(__name__)

FLOW_COOKIE = "dr_sso"
START_PATH = "/login/sso"
CALLBACK_PATH = "/login/sso/callback"
_SEAL_CONTEXT = b"datenraum sso sign-in"

# Failures the person can do nothing about but wait are 503; a refusal is 403; the rest is a bad request.
_STATUS = {Reason.UNREACHABLE: 503, Reason.PROVIDER_ERROR: 503, Reason.DENIED: 403}


class _Seal:
    """Pending sign-ins as cookie values that only this hub (its processes, sharing `key`) reads or makes."""

    def __init__(self, key: bytes) -> None:
        self._cipher = AESGCM(key)

    def close(self, pending: PendingSignIn) -> str:
        nonce = os.urandom(12)
        plain = json.dumps(
            [pending.state, pending.nonce, pending.verifier, pending.started, pending.next_path]
        ).encode()
        return base64.urlsafe_b64encode(nonce + self._cipher.encrypt(nonce, plain, _SEAL_CONTEXT)).decode()

    def open(self, value: str | None) -> PendingSignIn | None:
        if not value:
            return None
        try:
            sealed = base64.urlsafe_b64decode(value.encode("ascii"))
            plain = self._cipher.decrypt(sealed[:12], sealed[12:], _SEAL_CONTEXT)
        except (ValueError, binascii.Error, InvalidTag):
            # Made by an earlier hub process, or not by us at all: as if there were none.
            return None
        state, nonce, verifier, started, next_path = json.loads(plain)
        return PendingSignIn(state, nonce, verifier, started, next_path)


def new_seal_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def routes(config: HubConfig, clock: Clock, seal_key: bytes | None = None) -> APIRouter:
    """The single sign-on pages of one hub process, their cookies sealed with `seal_key` (None: a key of
    this process's own); they answer 404 when no provider is configured."""
    router = APIRouter(include_in_schema=False)
    relying_party = (
        RelyingParty(
            OidcSettings(
                issuer=config.oidc_issuer,
                client_id=config.oidc_client_id,
                client_secret=config.oidc_client_secret,
                redirect_uri=config.public_url.rstrip("/") + CALLBACK_PATH,
            ),
            clock=clock,
        )
        if config.oidc_issuer
        else None
    )
    seal = _Seal(seal_key or new_seal_key())

    def configured() -> RelyingParty:
        if relying_party is None:
            raise HTTPException(404, "single sign-on is not set up on this hub")
        return relying_party

    def flow_cookie(response: Response, value: str | None) -> None:
        if value is None:
            response.delete_cookie(FLOW_COOKIE, path=START_PATH, httponly=True, samesite="lax")
            return
        response.set_cookie(
            FLOW_COOKIE,
            value,
            max_age=int(configured().lifetime_seconds),
            httponly=True,
            secure=config.secure_cookies,
            samesite="lax",
            path=START_PATH,
        )

    def failed(request: Request, status: int, message_key: str | None, message: str = "") -> Response:
        response = render(request, "sso_failed.html", None, status, message_key=message_key, message=message)
        flow_cookie(response, None)
        return response

    @router.get(START_PATH, response_class=HTMLResponse)
    async def start(request: Request, next_page: str = Query("/", alias="next")) -> Response:
        try:
            url, pending = await configured().start(local_path(next_page))
        except SignInFailed as failure:
            log.warning("single sign-on cannot begin: %s", failure.detail)
            return failed(request, _STATUS.get(failure.reason, 400), f"sso.{failure.reason.value}")
        response = RedirectResponse(url, status_code=303)
        flow_cookie(response, seal.close(pending))
        return response

    @router.get(CALLBACK_PATH, response_class=HTMLResponse)
    async def callback(request: Request) -> Response:
        party = configured()
        pending = seal.open(request.cookies.get(FLOW_COOKIE))
        hub = hub_of(request)
        try:
            identity = await party.finish(pending, request.query_params)
        except SignInFailed as failure:
            log.warning("single sign-on failed: %s", failure.detail)
            return failed(request, _STATUS.get(failure.reason, 400), f"sso.{failure.reason.value}")
        try:
            token = await hub.run(
                hub.users.login_external, identity.subject, identity.email, identity.name, client_ip(request)
            )
        except AccountPending:
            response = render(request, "registered.html", None, email=identity.email)
            flow_cookie(response, None)
            return response
        except AccountError as error:
            return failed(request, 403, None, str(error))
        assert pending is not None  # finish accepted its state
        response = RedirectResponse(pending.next_path, status_code=303)
        flow_cookie(response, None)
        set_session(response, request, token)
        return response

    return router
