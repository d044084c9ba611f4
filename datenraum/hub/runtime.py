"""What every request handler needs: the hub's services and the authenticated caller.

The services are synchronous and use the database, so handlers run them in the thread pool
(`Hub.run`): the event loop stays free for the long-polls that wait meanwhile.

On SQLite, `Hub.run` runs one service call at a time. SQLite lets one transaction write at a time anyway
(and the hub's all take the write lock up front, see `db`), but a thread that finds the lock taken
sleeps in SQLite's busy handler, in steps of up to 100 ms, instead of being woken when the lock is free:
with dozens of sites answering at once, most of a query's time went to those sleeps. A lock of ours
hands the database on at once. (Other processes, such as `datenraum hub` commands, still meet the busy
handler, and wait for the transaction in progress.)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, TypeVar

import sqlalchemy as sa
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from datenraum.hub.accounts import Accounts, Site, User
from datenraum.hub.config import HubConfig
from datenraum.hub.notify import Notifier
from datenraum.hub.service import Federation

__all__ = ["CurrentSite", "CurrentUser", "Hub", "HubDep"]

T = TypeVar("T")


@dataclass(frozen=True)
class Hub:
    """The services of one hub process, shared by all its requests (see `notify` for why one process)."""

    config: HubConfig
    engine: sa.Engine
    accounts: Accounts
    federation: Federation
    notifier: Notifier
    _turns: contextlib.AbstractContextManager = field(init=False, repr=False)

    def __post_init__(self) -> None:
        turns = threading.Lock() if self.engine.dialect.name == "sqlite" else contextlib.nullcontext()
        object.__setattr__(self, "_turns", turns)

    async def run(self, function: Callable[..., T], *args: object) -> T:
        return await run_in_threadpool(self._in_turn, function, *args)

    def _in_turn(self, function: Callable[..., T], *args: object) -> T:
        with self._turns:
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


async def _current_user(
    hub: HubDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_user_bearer)]
) -> User:
    if credentials is None:
        raise _unauthorized("an API token is required (Authorization: Bearer ...)")
    user = await hub.run(hub.accounts.user_for, credentials.credentials)
    if user is None:
        raise _unauthorized("wrong API token")
    return user


CurrentSite = Annotated[Site, Depends(_current_site)]
CurrentUser = Annotated[User, Depends(_current_user)]
