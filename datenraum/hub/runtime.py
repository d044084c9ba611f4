"""What every request handler needs: the hub's services and the authenticated caller.

The services are synchronous and use the database, so handlers run them in the thread pool
(`Hub.run`): the event loop stays free for the long-polls that wait meanwhile.

On SQLite, `Hub.run` runs one service call at a time. SQLite lets one transaction write at a time anyway
(and the hub's all take the write lock up front, see `db`), but a thread that finds the lock taken
sleeps in SQLite's busy handler, in steps of up to 100 ms, instead of being woken when the lock is free:
with dozens of sites answering at once, most of a query's time went to those sleeps. A lock of ours
hands the database on at once. (Other processes, such as `datenraum hub` commands, still meet the busy
handler, and wait for the transaction in progress.)

A call that only reads goes through `Hub.read` instead: it takes no turn, and its transactions begin as
reads (`db.reading`), which in WAL mode neither wait for the writer nor for each other. Every request
starts with such reads (the session or token, the navigation's counts); in turns, a crowd of page views
queued behind each other and behind every submission (bench/bench_load.py).
"""

from __future__ import annotations

import contextlib
import hmac
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, TypeVar

import sqlalchemy as sa
from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BeforeValidator
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from datenraum.hub.accounts.outbox import Outbox
from datenraum.hub.accounts.service import Accounts, Site, User
from datenraum.hub.accounts.users import Users
from datenraum.hub.analysis.service import Analyses
from datenraum.hub.config import HubConfig
from datenraum.hub.dashboard.service import Dashboard
from datenraum.hub.db import reading
from datenraum.hub.delivery.service import Deliveries
from datenraum.hub.directory.service import Directory
from datenraum.hub.feasibility.notify import Notifier
from datenraum.hub.feasibility.saved_queries import SavedQueries
from datenraum.hub.feasibility.service import Federation
from datenraum.hub.feasibility.site_overview import SiteOverview
from datenraum.hub.proposals.invitations import Invitations
from datenraum.hub.proposals.sample_requests import SampleRequests
from datenraum.hub.proposals.service import Proposals
from datenraum.hub.roles import Role
from datenraum.hub.samples.service import SampleSearches
from datenraum.hub.studies.randomisation import Randomisations
from datenraum.hub.studies.service import Studies

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "MAX_ROW_ID",
    "SESSION_COOKIE",
    "CurrentSite",
    "CurrentUser",
    "Hub",
    "HubDep",
    "QueryUser",
    "RowId",
    "client_ip",
    "csrf_matches",
    "row_id",
]

# The portal signs a browser in with a session cookie; a script uses an API token instead. Requests
# that change something and come with the cookie must also carry the page's CSRF token (the value of
# the CSRF cookie, which a page of another origin cannot read), as a form field or in this header.
SESSION_COOKIE = "dr_session"
CSRF_COOKIE = "dr_csrf"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

T = TypeVar("T")

# The id of a row, in a path or a form: the hub's id columns are INTEGER, 32-bit on PostgreSQL (and within
# SQLite's 64-bit range), so a bigger number is refused as a bad path or form rather than failing in the
# database. Only ASCII digits: `int` also reads "²"-like digits of other scripts, " 1", "1_0" and "1.0".
MAX_ROW_ID = 2**31 - 1


def row_id(text: str) -> int | None:
    """The row id `text` spells (ASCII digits, 1 to MAX_ROW_ID), or None if it spells none."""
    if not (text.isascii() and text.isdecimal()) or len(text) > len(str(MAX_ROW_ID)):
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ROW_ID else None


def _row_id_text(value: object) -> object:
    if isinstance(value, str) and not (value.isascii() and value.isdecimal()):
        raise ValueError("must be a row id, written in the digits 0-9")
    return value


RowId = Annotated[int, BeforeValidator(_row_id_text), Path(ge=1, le=MAX_ROW_ID)]


@dataclass(frozen=True)
class Hub:
    """The services of one hub process, shared by all its requests (see `notify` for why one process)."""

    config: HubConfig
    engine: sa.Engine
    sessions: sessionmaker[Session]
    accounts: Accounts
    users: Users
    outbox: Outbox
    saved_queries: SavedQueries
    sites: SiteOverview
    federation: Federation
    notifier: Notifier
    proposals: Proposals
    directory: Directory
    invitations: Invitations
    dashboard: Dashboard
    analysis: Analyses
    deliveries: Deliveries
    samples: SampleSearches
    sample_requests: SampleRequests
    studies: Studies
    randomisations: Randomisations
    _turns: contextlib.AbstractContextManager = field(init=False, repr=False)

    def __post_init__(self) -> None:
        turns = threading.Lock() if self.engine.dialect.name == "sqlite" else contextlib.nullcontext()
        object.__setattr__(self, "_turns", turns)

    async def run(self, function: Callable[..., T], *args: object) -> T:
        return await run_in_threadpool(self._in_turn, function, *args)

    async def read(self, function: Callable[..., T], *args: object) -> T:
        """Run `function`, which must only read, beside other calls (see the module's text)."""
        return await run_in_threadpool(self._reading, function, *args)

    def _in_turn(self, function: Callable[..., T], *args: object) -> T:
        with self._turns:
            return function(*args)

    @staticmethod
    def _reading(function: Callable[..., T], *args: object) -> T:
        with reading():
            return function(*args)


def _hub(request: Request) -> Hub:
    return request.app.state.hub


HubDep = Annotated[Hub, Depends(_hub)]

_site_bearer = HTTPBearer(auto_error=False, scheme_name="site credential")
_user_bearer = HTTPBearer(auto_error=False, scheme_name="API token")


def _unauthorized(problem: str) -> HTTPException:
    return HTTPException(401, problem, headers={"WWW-Authenticate": "Bearer"})


async def _current_site(
    hub: HubDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_site_bearer)]
) -> Site:
    if credentials is None:
        raise _unauthorized("a site credential is required (Authorization: Bearer ...)")
    site = await hub.run(hub.accounts.site_for, credentials.credentials)
    if site is None:
        raise _unauthorized("wrong or revoked site credential")
    return site


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def csrf_matches(request: Request, submitted: str | None) -> bool:
    expected = request.cookies.get(CSRF_COOKIE)
    return bool(expected and submitted) and hmac.compare_digest(expected, submitted)


async def _current_user(
    hub: HubDep,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_user_bearer)],
) -> User:
    if credentials is not None:
        user = await hub.read(hub.accounts.user_for, credentials.credentials)
        if user is None:
            raise _unauthorized("wrong API token")
        return user
    session_token = request.cookies.get(SESSION_COOKIE)
    if session_token:
        user = await hub.read(hub.users.session_user, session_token)
        if user is not None:
            if request.method not in _SAFE_METHODS and not csrf_matches(
                request, request.headers.get(CSRF_HEADER)
            ):
                raise HTTPException(
                    403, f"the {CSRF_HEADER} header is missing or does not match this session"
                )
            return user
    raise _unauthorized("an API token (Authorization: Bearer ...) or a portal sign-in is required")


async def _query_user(user: Annotated[User, Depends(_current_user)]) -> User:
    """Feasibility queries are asked by researchers (and read by the coordination office)."""
    if not (user.has(Role.RESEARCHER) or user.has(Role.ADMIN)):
        raise HTTPException(403, "feasibility queries need the researcher role")
    return user


CurrentSite = Annotated[Site, Depends(_current_site)]
CurrentUser = Annotated[User, Depends(_current_user)]
QueryUser = Annotated[User, Depends(_query_user)]
