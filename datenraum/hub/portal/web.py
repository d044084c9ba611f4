"""What every portal page needs: templates, the reader's language, the CSRF cookie, the signed-in user.

CSRF protection is the double-submit kind: each browser gets a random token in a cookie that scripts of
other origins can neither read nor set for us, and every form (and every script request that changes
something) must send the same value back. Session cookies are HttpOnly, SameSite=Lax, and Secure where
the hub is served over HTTPS (`secure_cookies`).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from datenraum.hub.accounts.audit import AuditSource
from datenraum.hub.accounts.service import User
from datenraum.hub.portal.i18n import LANGUAGES, choose_language, script_texts, texts_for
from datenraum.hub.roles import Actor, Role
from datenraum.hub.runtime import CSRF_COOKIE, SESSION_COOKIE, Hub, client_ip, csrf_matches

__all__ = [
    "LANGUAGE_COOKIE",
    "STATIC",
    "CsrfCookie",
    "NotSignedIn",
    "SecurityHeaders",
    "actor",
    "checked_form",
    "error_page",
    "form_text",
    "hub_of",
    "local_path",
    "optional_user",
    "redirect",
    "refuse_nul",
    "render",
    "require",
    "set_session",
    "workflow_actor",
]

LANGUAGE_COOKIE = "dr_lang"
STATIC = Path(__file__).with_name("static")
templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))
_OTHER_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]
# Pages load scripts and styles from the hub only, and no other site may frame them (clickjacking).
_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    *_OTHER_SECURITY_HEADERS,
]
# FastAPI's API documentation pages load Swagger UI and ReDoc from a CDN and start them inline; they show
# no one's data, so they get what they need, and no other page does.
_DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
_DOCS_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
        b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
        b"font-src 'self' https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
        b"https://cdn.redoc.ly; worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'",
    ),
    *_OTHER_SECURITY_HEADERS,
]


# The study form designer's preview is the vendored lforms, an Angular web component that puts its styles
# into <style> elements and style attributes: that page alone may apply inline styles (never scripts).
_FORM_RENDERER_PATHS = re.compile(r"/studies/[^/]+/designer")
_FORM_RENDERER_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    *_OTHER_SECURITY_HEADERS,
]


class NotSignedIn(Exception):
    """A page that needs a signed-in user was asked for without one; the app sends them to sign in."""


class CsrfCookie:
    """Give every browser a CSRF token cookie, and pages the value they must send back."""

    def __init__(self, app: ASGIApp, *, secure: bool) -> None:
        self.app = app
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        token = request.cookies.get(CSRF_COOKIE)
        if token:
            scope.setdefault("state", {})["csrf"] = token
            await self.app(scope, receive, send)
            return
        token = secrets.token_urlsafe(32)
        scope.setdefault("state", {})["csrf"] = token
        cookie = f"{CSRF_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
        if self.secure:
            cookie += "; Secure"

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


_NO_STORE = (b"cache-control", b"no-store")
_SESSION_SET = f"{SESSION_COOKIE}=".encode()


def _signed_in(scope: Scope) -> bool:
    """Whether the request comes with credentials: an API token, a site credential or a session cookie."""
    for name, value in scope["headers"]:
        if name == b"authorization" or (name == b"cookie" and _SESSION_SET in value):
            return True
    return False


class SecurityHeaders:
    """The security headers on every answer, and `Cache-Control: no-store` on every answer to a request
    with credentials (or one that signs in), so that no cache keeps what only that person may see. The
    hub's static files are the same for everyone and may be cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        headers = _DOCS_HEADERS if scope["path"] in _DOCS_PATHS else _SECURITY_HEADERS
        if _FORM_RENDERER_PATHS.fullmatch(scope["path"]):
            headers = _FORM_RENDERER_HEADERS
        personal = _signed_in(scope) and not scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                given = message.get("headers", [])
                signs_in = any(n == b"set-cookie" and v.startswith(_SESSION_SET) for n, v in given)
                if personal or signs_in:
                    given = [*(header for header in given if header[0] != b"cache-control"), _NO_STORE]
                message["headers"] = [*given, *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def hub_of(request: Request) -> Hub:
    return request.app.state.hub


async def optional_user(request: Request) -> User | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    hub = hub_of(request)
    user = await hub.read(hub.users.session_user, token)
    if user is not None:
        request.state.attention = await hub.read(_attention, hub, user)
    return user


def workflow_actor(user: User) -> Actor:
    """The user as the Use & Access rules see them."""
    return Actor(user.id, user.roles, user.site_ids)


def _attention(hub: Hub, user: User) -> tuple[int, int]:
    """What the navigation counts on every page: proposals waiting for the user, unread notifications."""
    acting = workflow_actor(user)
    return len(hub.proposals.waiting_for(acting)), len(hub.proposals.notifications(acting, unread_only=True))


def require(*roles: Role):
    """A dependency: the signed-in user, who must hold one of `roles` (any role when none are named)."""

    async def dependency(request: Request) -> User:
        user = await optional_user(request)
        if user is None:
            raise NotSignedIn
        if roles and not any(user.has(role) for role in roles):
            raise HTTPException(403, "this page is not open to your role")
        return user

    return dependency


async def checked_form(request: Request) -> FormData:
    """The submitted form, once its CSRF token matched the browser's cookie and it holds no NUL."""
    form = await request.form()
    submitted = form.get("csrf")
    if not csrf_matches(request, submitted if isinstance(submitted, str) else None):
        raise HTTPException(403, "the form's security token is missing or expired; reload the page")
    refuse_nul(form.multi_items())
    return form


def refuse_nul(fields: Iterable[tuple[str, Any]]) -> None:
    """No text with the character NUL gets further: PostgreSQL cannot store it, and no person types it."""
    for name, value in fields:
        if isinstance(value, str) and "\x00" in value:
            raise HTTPException(400, f"{name}: must not contain the character NUL")


def form_text(form: FormData, name: str) -> str:
    """A text field of a submitted form; "" when it is missing or is a file instead."""
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def actor(request: Request, user: User | None) -> AuditSource:
    if user is None:
        return AuditSource(None, "anonymous", client_ip(request))
    return AuditSource(user.id, user.email, client_ip(request))


def language(request: Request, user: User | None) -> str:
    return choose_language(
        user.language if user else None,
        request.cookies.get(LANGUAGE_COOKIE),
        request.headers.get("accept-language", ""),
    )


def render(
    request: Request, template: str, user: User | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    lang = language(request, user)
    return templates.TemplateResponse(
        request,
        template,
        {
            "user": user,
            "lang": lang,
            "languages": LANGUAGES,
            "t": texts_for(lang),
            "csrf": request.state.csrf,
            "Role": Role,
            "path": request.url.path,
            "notice": _notice(request, lang),
            "builder_texts": script_texts(lang),
            "attention": getattr(request.state, "attention", (0, 0)),
            **context,
        },
        status_code=status_code,
    )


async def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    """An error as a page of the portal, in the reader's language, for a person's browser."""
    return render(request, "error.html", await optional_user(request), status, message=message, status=status)


def _notice(request: Request, lang: str) -> str | None:
    key = request.query_params.get("notice", "")
    return texts_for(lang).get(f"notice.{key}") if key else None


def redirect(path: str, notice: str | None = None) -> RedirectResponse:
    """A redirect after a successful form (303: the browser follows with GET), optionally with a notice.

    The notice is a key of the interface texts, never free text, so that a crafted link cannot make the
    portal show words of someone else's choosing.
    """
    target = path if notice is None else f"{path}{'&' if '?' in path else '?'}notice={quote(notice)}"
    return RedirectResponse(target, status_code=303)


def local_path(path: str) -> str:
    """Where to go after a form: a path on this hub only, so that a link cannot send people elsewhere.

    Browsers drop tabs and line breaks from a URL, so "/<tab>/evil.example" would read as "//evil.example".
    """
    local = path.startswith("/") and not path.startswith(("//", "/\\")) and path.isprintable()
    return path if local else "/"


def set_session(response: Response, request: Request, token: str) -> None:
    """Sign the browser in with a session token (by password or by single sign-on alike)."""
    config = hub_of(request).config
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(config.session_hours * 3600),
        httponly=True,
        secure=config.secure_cookies,
        samesite="lax",
        path="/",
    )
