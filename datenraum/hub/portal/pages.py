"""The portal's pages: sign-in and registration, the account page, the query builder and saved queries,
and the pages of the coordination office and of site administrators.

Each handler checks the caller's role through its dependency, does one thing through the hub's services,
and answers with a page or, after a form, a redirect (post/redirect/get). Form errors come back as the
same page with the message and the values entered, with status 400 (or 429 when sign-in is paused).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from datenraum.hub.accounts.audit import search as search_audit
from datenraum.hub.accounts.service import User
from datenraum.hub.accounts.users import (
    MIN_PASSWORD_LENGTH,
    LoginThrottled,
    Registration,
    RequestsThrottled,
    Status,
)
from datenraum.hub.errors import AccountError, TooMany
from datenraum.hub.portal.i18n import LANGUAGES, texts_for
from datenraum.hub.portal.web import (
    LANGUAGE_COOKIE,
    actor,
    checked_form,
    form_text,
    hub_of,
    language,
    local_path,
    optional_user,
    redirect,
    refuse_nul,
    render,
    require,
    set_session,
)
from datenraum.hub.roles import Role
from datenraum.hub.runtime import SESSION_COOKIE, RowId, client_ip

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

AnyUser = Annotated[User, Depends(require())]
QueryingUser = Annotated[User, Depends(require(Role.RESEARCHER, Role.ADMIN))]
Admin = Annotated[User, Depends(require(Role.ADMIN))]
SiteAdmin = Annotated[User, Depends(require(Role.SITE_ADMIN))]
MaybeUser = Annotated[User | None, Depends(optional_user)]


# --- public pages ------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, user: MaybeUser) -> Response:
    if user is not None and (user.has(Role.RESEARCHER) or user.has(Role.ADMIN)):
        return RedirectResponse("/queries/new", status_code=303)
    return render(request, "home.html", user)


@router.get("/login", response_class=HTMLResponse)
async def login_page(
    request: Request, user: MaybeUser, next_page: Annotated[str, Query(alias="next")] = "/"
) -> Response:
    if user is not None:
        return RedirectResponse(local_path(next_page), status_code=303)
    oidc = bool(hub_of(request).config.oidc_issuer)
    return render(request, "login.html", None, oidc=oidc, next=local_path(next_page))


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    form = await checked_form(request)
    hub = hub_of(request)
    email, next_path = form_text(form, "email"), local_path(form_text(form, "next"))
    try:
        token = await hub.run(hub.users.login, email, form_text(form, "password"), client_ip(request))
    except LoginThrottled as error:
        minutes = max(1, math.ceil(error.retry_after.total_seconds() / 60))
        response = render(request, "login.html", None, 429, error=("login.throttled", minutes), email=email)
        response.headers["Retry-After"] = str(max(1, math.ceil(error.retry_after.total_seconds())))
        return response
    except AccountError as error:
        return render(request, "login.html", None, 400, error=(str(error), None), email=email, next=next_path)
    response = redirect(next_path)
    set_session(response, request, token)
    return response


@router.post("/logout")
async def logout(request: Request, user: AnyUser) -> Response:
    await checked_form(request)
    hub = hub_of(request)
    await hub.run(hub.users.logout, request.cookies.get(SESSION_COOKIE, ""), actor(request, user))
    response = redirect("/login", "signed-out")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/register", response_class=HTMLResponse)
async def register_page(request: Request) -> Response:
    return render(request, "register.html", None, values={}, min_length=MIN_PASSWORD_LENGTH)


@router.post("/register", response_class=HTMLResponse)
async def register(request: Request) -> Response:
    form = await checked_form(request)
    values = {name: form_text(form, name) for name in ("name", "institution", "email")}
    password = form_text(form, "password")
    status, throttled = 400, None
    if password != form_text(form, "password_repeat"):
        error = "password_repeat: the two passwords differ"
    else:
        hub = hub_of(request)
        try:
            # An address that has an account already is answered as a new one (its owner gets a mail).
            await hub.run(hub.users.register, Registration(password=password, **values), client_ip(request))
        except RequestsThrottled as failure:
            status, error, throttled = 429, _wait_text(request, failure), failure
        except AccountError as failure:
            error = str(failure)
        else:
            return render(request, "registered.html", None, email=values["email"])
    response = render(
        request, "register.html", None, status, error=error, values=values, min_length=MIN_PASSWORD_LENGTH
    )
    return _with_retry_after(response, throttled)


def _wait_text(request: Request, error: TooMany) -> str:
    minutes = max(1, math.ceil(error.retry_after.total_seconds() / 60))
    return texts_for(language(request, None))["requests.throttled"].format(minutes=minutes)


def _with_retry_after(response: Response, error: TooMany | None) -> Response:
    if error is not None:
        response.headers.update(error.headers())
    return response


@router.get("/password/forgot", response_class=HTMLResponse)
async def forgot_page(request: Request) -> Response:
    return render(request, "forgot.html", None)


@router.post("/password/forgot", response_class=HTMLResponse)
async def forgot(request: Request) -> Response:
    form = await checked_form(request)
    hub = hub_of(request)
    link = f"{hub.config.public_url.rstrip('/')}/password/reset"
    try:
        await hub.run(hub.users.request_reset, form_text(form, "email"), link, client_ip(request))
    except RequestsThrottled as error:
        # Counted alike for addresses with and without an account, so the pause tells nothing either.
        page = render(request, "forgot.html", None, 429, error=_wait_text(request, error))
        return _with_retry_after(page, error)
    return render(request, "forgot.html", None, sent=True)


@router.get("/password/reset", response_class=HTMLResponse)
async def reset_page(request: Request, token: str = "") -> Response:
    return render(request, "reset.html", None, token=token, min_length=MIN_PASSWORD_LENGTH)


@router.post("/password/reset", response_class=HTMLResponse)
async def reset(request: Request) -> Response:
    form = await checked_form(request)
    token, password = form_text(form, "token"), form_text(form, "password")
    if password != form_text(form, "password_repeat"):
        error = "password_repeat: the two passwords differ"
    else:
        hub = hub_of(request)
        try:
            await hub.run(hub.users.reset_password, token, password, client_ip(request))
        except AccountError as failure:
            error = str(failure)
        else:
            return redirect("/login", "password-set")
    return render(request, "reset.html", None, 400, token=token, error=error, min_length=MIN_PASSWORD_LENGTH)


@router.post("/language")
async def choose_language(request: Request, user: MaybeUser) -> Response:
    form = await checked_form(request)
    language = form_text(form, "language")
    if language not in LANGUAGES:
        language = LANGUAGES[0]
    if user is not None:
        hub = hub_of(request)
        await hub.run(hub.users.set_language, user.id, language)
    response = redirect(local_path(form_text(form, "back")))
    response.set_cookie(LANGUAGE_COOKIE, language, max_age=365 * 24 * 3600, samesite="lax", path="/")
    return response


# --- the signed-in user's own pages -----------------------------------------------------------------


@router.get("/account", response_class=HTMLResponse)
async def account_page(request: Request, user: AnyUser) -> Response:
    return render(request, "account.html", user, min_length=MIN_PASSWORD_LENGTH)


@router.post("/account/password", response_class=HTMLResponse)
async def change_password(request: Request, user: AnyUser) -> Response:
    form = await checked_form(request)
    new = form_text(form, "password")
    if new != form_text(form, "password_repeat"):
        error = "password_repeat: the two passwords differ"
    else:
        hub = hub_of(request)
        try:
            await hub.run(hub.users.change_password, actor(request, user), form_text(form, "current"), new)
        except AccountError as failure:
            error = str(failure)
        else:
            # Changing the password ended every session, this one too: sign in again with the new one.
            response = redirect("/login", "password-changed")
            response.delete_cookie(SESSION_COOKIE, path="/")
            return response
    return render(request, "account.html", user, 400, error=error, min_length=MIN_PASSWORD_LENGTH)


@router.post("/account/token", response_class=HTMLResponse)
async def issue_token(request: Request, user: AnyUser) -> Response:
    await checked_form(request)
    hub = hub_of(request)
    token = await hub.run(hub.users.issue_token, actor(request, user))
    return render(request, "account.html", user, new_token=token, min_length=MIN_PASSWORD_LENGTH)


@router.get("/queries/new", response_class=HTMLResponse)
async def builder_page(request: Request, user: QueryingUser) -> Response:
    return render(request, "builder.html", user, saved_id=None, distinct=_distinct_available(request))


def _distinct_available(request: Request) -> bool:
    """Whether the builder offers distinct persons across sites (the hub has a linkage unit)."""
    return bool(hub_of(request).config.linkage_unit_url)


@router.get("/queries/saved/{saved_id}", response_class=HTMLResponse)
async def saved_page(request: Request, user: QueryingUser, saved_id: RowId) -> Response:
    hub = hub_of(request)
    saved = await hub.read(hub.saved_queries.get, user, saved_id)
    saved.readable_query()  # one that cannot be read is refused here, not in the builder
    return render(request, "builder.html", user, saved_id=saved.id, distinct=_distinct_available(request))


@router.get("/queries", response_class=HTMLResponse)
async def queries_page(request: Request, user: QueryingUser) -> Response:
    hub = hub_of(request)
    saved = await hub.read(hub.saved_queries.list, user)
    history = await hub.read(hub.saved_queries.history, user)
    return render(request, "queries.html", user, saved=saved, history=history)


# --- coordination office ----------------------------------------------------------------------------


async def _accounts_view(
    request: Request, user: User, status_code: int = 200, status: Status | None = None, **context: object
) -> Response:
    hub = hub_of(request)
    return render(
        request,
        "admin_accounts.html",
        user,
        status_code,
        accounts=await hub.run(hub.users.accounts, status),
        status=status,
        sites=await hub.run(hub.sites.sites),
        statuses=Status,
        **context,
    )


@router.get("/admin/accounts", response_class=HTMLResponse)
async def accounts_page(request: Request, user: Admin, status: str = "") -> Response:
    chosen = Status(status) if status in {s.value for s in Status} else None
    return await _accounts_view(request, user, status=chosen)


@router.post("/admin/accounts/{user_id}/status")
async def set_status(request: Request, user: Admin, user_id: RowId) -> Response:
    form = await checked_form(request)
    hub = hub_of(request)
    try:
        status = Status(form_text(form, "status"))
        await hub.run(hub.users.set_status, actor(request, user), user_id, status)
    except (AccountError, ValueError) as error:
        return await _accounts_view(request, user, 400, error=str(error))
    return redirect("/admin/accounts", f"status-{status.value}")


@router.post("/admin/accounts/{user_id}/roles")
async def change_roles(request: Request, user: Admin, user_id: RowId) -> Response:
    form = await checked_form(request)
    hub = hub_of(request)
    try:
        role = Role(form_text(form, "role"))
        site = form_text(form, "site") or None
        change = hub.users.grant if form_text(form, "change") == "grant" else hub.users.revoke
        await hub.run(change, actor(request, user), user_id, role, site)
    except (AccountError, ValueError) as error:
        return await _accounts_view(request, user, 400, error=str(error))
    return redirect("/admin/accounts", "roles-changed")


async def _all_sites_view(request: Request, user: User, status: int = 200, **context: object) -> Response:
    hub = hub_of(request)
    return render(request, "admin_sites.html", user, status, sites=await hub.run(hub.sites.sites), **context)


@router.get("/admin/sites", response_class=HTMLResponse)
async def sites_page(request: Request, user: Admin) -> Response:
    return await _all_sites_view(request, user)


@router.post("/admin/sites", response_class=HTMLResponse)
async def add_site(request: Request, user: Admin) -> Response:
    form = await checked_form(request)
    hub = hub_of(request)
    name = form_text(form, "name").strip()
    try:
        credential = await hub.run(hub.accounts.add_site, name, actor(request, user))
    except AccountError as error:
        return await _all_sites_view(request, user, 400, error=str(error), name=name)
    return await _all_sites_view(request, user, credential=(name, credential))


@router.post("/admin/sites/{name}/{change}", response_class=HTMLResponse)
async def change_site(request: Request, user: Admin, name: str, change: str) -> Response:
    await checked_form(request)
    return await _change_site(request, user, name, change, _all_sites_view)


@router.get("/admin/audit", response_class=HTMLResponse)
async def audit_page(
    request: Request, user: Admin, action: str = "", actor_filter: str = "", day: str = ""
) -> Response:
    refuse_nul({"action": action, "actor_filter": actor_filter, "day": day}.items())
    hub = hub_of(request)
    since = until = None
    if day:
        try:
            since = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
            until = since + dt.timedelta(days=1)
        except OverflowError:
            until = None  # the last day there is
        except ValueError:
            day = ""
    entries = await hub.run(
        lambda: search_audit(
            hub.sessions, action=action or None, actor=actor_filter or None, since=since, until=until
        )
    )
    return render(
        request, "admin_audit.html", user, entries=entries, action=action, actor_filter=actor_filter, day=day
    )


@router.get("/admin/outbox", response_class=HTMLResponse)
async def outbox_page(request: Request, user: Admin) -> Response:
    hub = hub_of(request)
    return render(request, "admin_outbox.html", user, messages=await hub.run(hub.outbox.messages))


# --- site administrators ----------------------------------------------------------------------------


async def _own_sites_view(request: Request, user: User, **context: object) -> Response:
    hub = hub_of(request)
    sites = [site for site in await hub.run(hub.sites.sites) if site.id in user.site_ids]
    logs = {site.name: await hub.run(hub.sites.task_log, site.id) for site in sites}
    return render(request, "site_admin.html", user, sites=sites, logs=logs, **context)


@router.get("/site-admin", response_class=HTMLResponse)
async def site_admin_page(request: Request, user: SiteAdmin) -> Response:
    return await _own_sites_view(request, user)


@router.post("/site-admin/{name}/{change}", response_class=HTMLResponse)
async def site_admin_change(request: Request, user: SiteAdmin, name: str, change: str) -> Response:
    await checked_form(request)
    return await _change_site(request, user, name, change, _own_sites_view)


async def _change_site(
    request: Request, user: User, name: str, change: str, view: Callable[..., Awaitable[Response]]
) -> Response:
    """Rotate or revoke a site's credential (rotating re-activates a revoked site), for the coordination
    office or that site's administrator; a new credential is shown once, on the page that asked for it."""
    hub = hub_of(request)
    site = next((site for site in await hub.run(hub.sites.sites) if site.name == name), None)
    if site is None or not (user.has(Role.ADMIN) or site.id in user.site_ids):
        return render(request, "error.html", user, 404, message="no such site")
    if change == "rotate":
        return await view(
            request,
            user,
            credential=(name, await hub.run(hub.accounts.rotate_site, name, actor(request, user))),
        )
    if change == "revoke":
        await hub.run(hub.accounts.revoke_site, name, actor(request, user))
        return await view(request, user)
    return render(request, "error.html", user, 404, message="no such change")
