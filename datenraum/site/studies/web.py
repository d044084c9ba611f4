"""The EDC's security layer: sessions, CSRF, security headers, the signed-in account, the page language.

The same rules as the hub portal's (which the site does not import: the site never depends on the hub):

- the session cookie is HttpOnly, SameSite=Lax, Secure unless `[web] secure_cookies = false`; its token
  is random and stored only as a hash (`accounts.py`);
- CSRF protection is double-submit: every browser gets a random token in a cookie (SameSite=Strict,
  HttpOnly), every form sends it back in the field `csrf` and every script request in the header
  `X-CSRF-Token`; a change without the matching token is refused with 403;
- pages load scripts and styles from the EDC only (CSP), no other site may frame them, and nothing a
  signed-in person sees is cached (`Cache-Control: no-store`). The form renderer (lforms, an Angular web
  component) sets its components' styles inline, so style-src allows inline styles; scripts do not.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from datenraum.site.studies.accounts import Account
from datenraum.site.studies.service import Edc

__all__ = [
    "CSRF_COOKIE",
    "SESSION_COOKIE",
    "CsrfCookie",
    "NotSignedIn",
    "SecurityHeaders",
    "checked_form",
    "checked_json",
    "edc_of",
    "form_text",
    "optional_account",
    "redirect",
    "render",
    "require_account",
    "set_session",
]

SESSION_COOKIE = "edc_session"
CSRF_COOKIE = "edc_csrf"
MAX_JSON_BYTES = 2 * 1024 * 1024  # a form's response; the GECCO forms' largest is far below
templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))
_TEXTS: dict[str, dict[str, str]] = orjson.loads(Path(__file__).with_name("texts.json").read_bytes())
LANGUAGES = tuple(_TEXTS)
_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]
_NO_STORE = (b"cache-control", b"no-store")


class NotSignedIn(Exception):
    """A page that needs a signed-in person was asked for without one; the app sends them to sign in."""


class CsrfCookie:
    """Give every browser a CSRF token cookie, and pages the value they must send back."""

    def __init__(self, app: ASGIApp, *, secure: bool) -> None:
        self.app = app
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = Request(scope).cookies.get(CSRF_COOKIE)
        if token:
            scope.setdefault("state", {})["csrf"] = token
            await self.app(scope, receive, send)
            return
        token = secrets.token_urlsafe(32)
        scope.setdefault("state", {})["csrf"] = token
        cookie = f"{CSRF_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict" + (
            "; Secure" if self.secure else ""
        )

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


class SecurityHeaders:
    """The security headers on every answer; no-store on all but the static files (the same for all)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        personal = not scope["path"].startswith(("/static/", "/lforms/"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                given = message.get("headers", [])
                if personal:
                    given = [*(h for h in given if h[0] != b"cache-control"), _NO_STORE]
                message["headers"] = [*given, *_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def edc_of(request: Request) -> Edc:
    return request.app.state.edc


def optional_account(request: Request) -> Account | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    edc = edc_of(request)
    return edc.accounts.session_account(token, edc.now())


def require_account(request: Request) -> Account:
    account = optional_account(request)
    if account is None:
        raise NotSignedIn
    return account


def _csrf_matches(request: Request, submitted: str | None) -> bool:
    expected = request.cookies.get(CSRF_COOKIE)
    return bool(expected and submitted) and hmac.compare_digest(expected, submitted or "")


def _refuse_nul(fields: Iterable[tuple[str, Any]]) -> None:
    for name, value in fields:
        if isinstance(value, str) and "\x00" in value:
            raise HTTPException(400, f"{name}: must not contain the character NUL")


async def checked_form(request: Request) -> FormData:
    """The submitted form, once its CSRF token matched the browser's cookie and it holds no NUL."""
    form = await request.form()
    submitted = form.get("csrf")
    if not _csrf_matches(request, submitted if isinstance(submitted, str) else None):
        raise HTTPException(403, "the form's security token is missing or expired; reload the page")
    _refuse_nul(form.multi_items())
    return form


async def checked_json(request: Request) -> dict[str, Any]:
    """A script's JSON body, once its X-CSRF-Token header matched; 400 naming what is wrong with it."""
    if not _csrf_matches(request, request.headers.get("x-csrf-token")):
        raise HTTPException(403, "the request's security token is missing or expired; reload the page")
    body = await request.body()
    if len(body) > MAX_JSON_BYTES:
        raise HTTPException(413, f"the body has {len(body)} bytes, at most {MAX_JSON_BYTES}")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise HTTPException(400, f"the body is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise HTTPException(400, "$: expected a JSON object")
    if "\x00" in body.decode("utf-8", "replace") or "\\u0000" in body.decode("utf-8", "replace"):
        raise HTTPException(400, "the body must not contain the character NUL")
    return document


def form_text(form: FormData, name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def language(request: Request) -> str:
    chosen = request.cookies.get("edc_lang")
    if chosen in LANGUAGES:
        return chosen
    for part in request.headers.get("accept-language", "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return LANGUAGES[0]


def texts(request: Request) -> dict[str, str]:
    return _TEXTS[language(request)]


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        template,
        {
            "account": optional_account(request),
            "lang": language(request),
            "t": texts(request),
            "csrf": request.state.csrf,
            "site": edc_of(request).site,
            **context,
        },
        status_code=status_code,
    )


def redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def set_session(response: Response, request: Request, token: str, hours: float, secure: bool) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(hours * 3600),
        httponly=True,
        secure=secure,
        samesite="lax",
        path="/",
    )
