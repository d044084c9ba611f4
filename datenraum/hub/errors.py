"""The hub's one error tree: what a service raises when a request cannot be done, and its HTTP status.

Every service raises a `HubError`; the application has one handler for it (`app.py`), which answers
`{"error": "<text>"}` (or the error page, for a person's browser) with the class's `status`. So a new
error class needs no handler of its own, and no service error can become a 500. The texts start with
the offending field or say what is missing.

    HubError                      400  (the base; not raised itself)
    ├── Invalid                   422  well-formed, but not acceptable (also a ValueError)
    │   ├── AccountError          an account request that cannot be done (accounts)
    │   │   └── accounts.users.AccountPending     the account waits for approval
    │   └── proposals.uploads.UploadRejected   a document that is not accepted
    ├── Forbidden                 403  the caller may not do this
    │   ├── directory.service.NotAdministrator    only the coordination office changes the directory
    │   └── proposals.workflow.ActionForbidden    role, ownership or site do not allow the action
    ├── NotFound                  404  nothing the caller may see has this id (also a LookupError)
    ├── Conflict                  409  contradicts what is recorded
    │   └── proposals.workflow.Refused    the action is not possible now (state, reason, guard)
    ├── TooMany                   429  too many attempts; `retry_after` says when to try again
    │   ├── accounts.users.LoginThrottled      sign-in paused for an address or a client
    │   ├── accounts.users.RequestsThrottled   too many reset requests or registrations
    │   ├── feasibility.service.SiteLimitReached   a site has had its daily tasks (or the researcher's share)
    │   └── overload.TooManyWaits              an account holds as many long-polls and streams as it may
    ├── overload.WaitsFull        503  the worker holds as many long-polls and streams as it can
    └── accounts.oidc.SignInFailed   400  single sign-on did not succeed (the page says why)

`proposals.workflow.TransitionError` is the base of `ActionForbidden` and `Refused`: what `decide`
does not allow. The query quota (`datenraum.privacy.aggregation.QuotaExceeded`, 429) is the privacy
package's, shared with the sites, and keeps its own handler.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import ClassVar

__all__ = ["AccountError", "Conflict", "Forbidden", "HubError", "Invalid", "NotFound", "TooMany"]


class HubError(Exception):
    """A request the hub cannot do; `status` is the HTTP status it is answered with."""

    status: ClassVar[int] = 400

    def headers(self) -> dict[str, str]:
        """HTTP headers that go with the answer."""
        return {}


class Invalid(HubError, ValueError):
    """The request is well-formed JSON but not acceptable; the text starts with the offending field."""

    status = 422


class Forbidden(HubError):
    """The caller may not do this (their roles, or whose the thing is)."""

    status = 403


class NotFound(HubError, LookupError):
    """Nothing the caller may see has this id (another site's task, another user's query)."""

    status = 404


class Conflict(HubError):
    """The request contradicts what is recorded (a different result for an answered task)."""

    status = 409


class TooMany(HubError):
    """Too many attempts recently; `retry_after` says when to try again."""

    status = 429

    def __init__(self, message: str, retry_after: dt.timedelta) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after.total_seconds())))}


class AccountError(Invalid):
    """An account request that cannot be done (unknown or duplicate name, bad value); the text says why.

    Raised by `accounts` (sites, users, passwords); the portal's account pages show it on their form.
    """
