"""Limits on what the hub accepts: the largest count it stores, and a cap on request body size.

`MAX_COUNT` bounds every count the hub stores, a site's result as much as the counts a proposal's
cohort records; both contexts import it from here.

The body cap (`BodySizeLimit`) is checked before a route reads the body into memory. Sites and
researchers send small JSON documents; anything bigger than `max_bytes` is refused with 413,
whether it announces its size (Content-Length) or streams it (chunked transfer). Paths that take
uploads (proposal documents) may have a larger limit of their own, so that a document just over the
upload limit reaches the upload check and its clear message instead of a bare 413.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["MAX_COUNT", "BodySizeLimit"]

# Larger than any count a hospital can have, and the largest integer every JSON reader keeps exact.
MAX_COUNT = 2**53 - 1


class BodySizeLimit:
    def __init__(
        self, app: ASGIApp, max_bytes: int, larger: Sequence[tuple[re.Pattern[str], int]] = ()
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = tuple(larger)

    def _limit(self, path: str) -> int:
        return next((limit for pattern, limit in self.larger if pattern.fullmatch(path)), self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope["path"])
        too_large = f"request body larger than {limit} bytes"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await JSONResponse({"error": too_large}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the route's body read, it reaches the app's HTTPException handler.
                    raise HTTPException(413, too_large)
            return message

        await self.app(scope, limited_receive, send)
