"""The agent's part in a distinct-person count: deliver the task's cohort as CLKs to the linkage unit.

A feasibility task that carries `{"linkage": {"unit_url", "project", "count_id"}}` asks the site to send
the CLKs of the cohort it counts to the linkage unit under that count id (`datenraum.site.linkage`). The
site decides where its CLKs go: only to the unit of its own configuration (`[linkage] unit_url`), never
to a URL the hub names, since whoever receives CLKs can try frequency attacks on them. The shared secret
and the unit token are read from the site's files and never leave the site (the unit gets CLKs and keyed
pseudonyms, the hub only whether the delivery succeeded). A failed delivery fails only the linkage: the
count is answered as before, with the reason as the task's linkage status.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx

from datenraum.linkage.encoder import Encoder
from datenraum.linkage.keys import project_secret
from datenraum.linkage.schema import SchemaError, load_schema
from datenraum.protocol.messages import LINKAGE_DELIVERED
from datenraum.site import linkage as site_linkage
from datenraum.site.agent.config import ConfigError, LinkageSettings

__all__ = ["NOT_CONFIGURED", "CohortLinker"]

NOT_CONFIGURED = (
    "not delivered: this site takes no part in record linkage (no [linkage] in its agent configuration)"
)
_PSEUDONYM_DOMAIN = b"datenraum agent linkage pseudonym key v1"


def _read(path: Path, what: str) -> bytes:
    try:
        value = path.read_bytes().strip()
    except OSError as error:
        raise ConfigError(f"linkage.{what}: {path}: {error.strerror}") from None
    if not value:
        raise ConfigError(f"linkage.{what}: {path} is empty")
    return value


class CohortLinker:
    """Encodes a cohort with the project's key and delivers it to the configured linkage unit."""

    def __init__(
        self, settings: LinkageSettings, site_secret: bytes, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.settings = settings
        secret = _read(settings.secret_file, "secret_file")
        if len(secret) < 16:
            raise ConfigError(f"linkage.secret_file: {settings.secret_file}: at least 16 bytes")
        schema_path = settings.schema or Path(
            str(files("datenraum.linkage") / "schemas" / "de-patient-v3.json")
        )
        try:
            schema = load_schema(schema_path)
        except (OSError, ValueError, SchemaError) as error:
            raise ConfigError(f"linkage.schema: {schema_path}: {error}") from None
        self.encoder = Encoder(schema, project_secret(secret, settings.project))
        # Pseudonyms keyed by the agent's own secret: the unit cannot join them to patient ids or across sites.
        self._pseudonym_key = hmac.digest(site_secret, _PSEUDONYM_DOMAIN, hashlib.sha256)
        token = _read(settings.token_file, "token_file").decode("utf-8", "replace")
        self._client = httpx.Client(
            base_url=settings.unit_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(60.0),
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def refusal(self, request: Any) -> str | None:
        """Why this site does not deliver for the task's linkage request, or None when it does."""
        if not isinstance(request, dict) or not all(
            isinstance(request.get(k), str) for k in ("unit_url", "project", "count_id")
        ):
            return "not delivered: the task's linkage request is malformed"
        if request["unit_url"].rstrip("/") != self.settings.unit_url:
            return (
                f"not delivered: the task names the linkage unit {request['unit_url']!r}; "
                "this site delivers only to the unit of its configuration"
            )
        if request["project"] != self.settings.project:
            return f"not delivered: this site takes part in linkage project {self.settings.project!r} only"
        return None

    def deliver(self, count_id: str, cohort: Sequence[tuple[str, dict[str, str]]]) -> str:
        """The task's linkage status: LINKAGE_DELIVERED, or why the unit did not take the cohort."""
        body = site_linkage.delivery(self.encoder, self._pseudonym_key, cohort)
        try:
            site_linkage.deliver_cohort(
                self._client, self.settings.project, count_id, self.settings.site, body
            )
        except site_linkage.DeliveryError as error:
            return f"not delivered: {error}"
        return LINKAGE_DELIVERED
