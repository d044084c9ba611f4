"""The site's pseudonym service: the operations of the MII Pseudonymization Interface (IG 2026) with a
built-in implementation per project namespace, keys and mappings held at the site.

Operations (each on one value, as the IG defines them): `$pseudonymize` (single-pseudonym domains: the
same original always gets the same pseudonym), `$pseudonymize-multiple` (a new pseudonym per call, for
secondary pseudonyms), `$get-pseudonym`, `$de-pseudonymize`, `$delete-pseudonym`, `$anonymize-original`.

- A domain belongs to a project: `<project>` or `<project>/<name>`; its key is derived from the site
  secret and the project (`keys.ProjectKeys.pseudonym_key`), so pseudonyms are repeatable without the
  database and differ between projects. The database (SQLite, at the site, never in a package) records
  each mapping so that re-identification is possible at all.
- `$de-pseudonymize`, `$delete-pseudonym` and `$anonymize-original` need the site role
  `site-reidentify` (`PermissionError` otherwise) and are written to the audit table with who, when,
  why, the domain and the pseudonym (never the original).
- `operation(name, parameters)` speaks FHIR: a `Parameters` resource in, `(status, Parameters or
  OperationOutcome)` out; unknown domains and pseudonyms are 404 as the IG says.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import secrets
import sqlite3
import threading
from pathlib import Path
from typing import Any

from datenraum.deidentify.keys import ProjectKeys

__all__ = ["REIDENTIFY_ROLE", "PseudonymService", "UnknownPseudonym"]

REIDENTIFY_ROLE = "site-reidentify"
DOMAIN_SYSTEM = "https://www.medizininformatik-initiative.de/fhir/sid/pseudonym-domain"
OPERATIONS = (
    "$pseudonymize",
    "$pseudonymize-multiple",
    "$get-pseudonym",
    "$de-pseudonymize",
    "$delete-pseudonym",
    "$anonymize-original",
)
_SCHEMA = """
create table if not exists mapping (
    domain text not null, original text, pseudonym text not null, multiple integer not null default 0,
    created text not null, primary key (domain, pseudonym));
create index if not exists mapping_original on mapping (domain, original);
create table if not exists audit (
    at text not null, actor text not null, role text not null, operation text not null,
    domain text not null, pseudonym text, reason text not null, outcome text not null);
"""


class UnknownPseudonym(LookupError):
    pass


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class PseudonymService:
    """Built-in pseudonyms for the projects of one site secret, persisted in `path` (None: in memory)."""

    def __init__(self, secret: bytes, path: Path | str | None = None) -> None:
        self.secret = secret
        self.path = str(path) if path is not None else ":memory:"
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("pragma journal_mode=wal")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._keys: dict[str, bytes] = {}
        self._cache: dict[tuple[str, str], str] = {}
        self._pending: list[tuple[str, str, str, str]] = []

    def close(self) -> None:
        self.flush()
        self._db.close()

    def _domain_key(self, domain: str) -> bytes:
        key = self._keys.get(domain)
        if key is None:
            project = domain.split("/", 1)[0]
            if not project:
                raise UnknownPseudonym(f"unknown domain {domain!r}")
            base = ProjectKeys.derive(self.secret, project).pseudonym_key
            key = self._keys[domain] = hmac.digest(base, domain.encode(), "sha256")
        return key

    # --- the operations --------------------------------------------------------------------------

    def pseudonymize(self, domain: str, original: str) -> str:
        """`$pseudonymize`: the domain's one pseudonym of `original` (created on first use)."""
        found = self._cache.get((domain, original))
        if found is None:
            digest = hmac.digest(self._domain_key(domain), original.encode(), "sha256")
            found = base64.b32encode(digest[:15]).decode().lower()
            self._cache[(domain, original)] = found
            self._pending.append((domain, original, found, _now()))
            if len(self._pending) >= 10_000:
                self.flush()
        return found

    def pseudonymize_multiple(self, domain: str, original: str) -> str:
        """`$pseudonymize-multiple`: a new pseudonym of `original` on every call."""
        pseudonym = "m" + base64.b32encode(secrets.token_bytes(15)).decode().lower()
        with self._lock:
            self._db.execute(
                "insert into mapping values (?, ?, ?, 1, ?)", (domain, original, pseudonym, _now())
            )
        return pseudonym

    def get_pseudonym(self, domain: str, original: str) -> str:
        """`$get-pseudonym`: the existing pseudonym; UnknownPseudonym when there is none."""
        self.flush()
        row = self._db.execute(
            "select pseudonym from mapping where domain = ? and original = ? and multiple = 0",
            (domain, original),
        ).fetchone()
        if row is None:
            raise UnknownPseudonym("no pseudonym for this original in the domain")
        return row[0]

    def de_pseudonymize(self, domain: str, pseudonym: str, *, actor: str, role: str, reason: str) -> str:
        """`$de-pseudonymize`: the original, only for the site role `site-reidentify`; audited."""
        row = self._guarded("$de-pseudonymize", domain, pseudonym, actor, role, reason)
        if row is None or row[0] is None:
            raise UnknownPseudonym("unknown pseudonym (or its original was anonymized)")
        return row[0]

    def delete_pseudonym(self, domain: str, pseudonym: str, *, actor: str, role: str, reason: str) -> None:
        """`$delete-pseudonym`: forget the mapping (the pseudonym can be created again)."""
        if self._guarded("$delete-pseudonym", domain, pseudonym, actor, role, reason) is None:
            raise UnknownPseudonym("unknown pseudonym")
        with self._lock:
            self._db.execute("delete from mapping where domain = ? and pseudonym = ?", (domain, pseudonym))
        self._cache = {k: v for k, v in self._cache.items() if not (k[0] == domain and v == pseudonym)}

    def anonymize_original(self, domain: str, pseudonym: str, *, actor: str, role: str, reason: str) -> None:
        """`$anonymize-original`: drop the original, keep the pseudonym: no way back, ever."""
        if self._guarded("$anonymize-original", domain, pseudonym, actor, role, reason) is None:
            raise UnknownPseudonym("unknown pseudonym")
        with self._lock:
            self._db.execute(
                "update mapping set original = null where domain = ? and pseudonym = ?", (domain, pseudonym)
            )

    def audit(self) -> list[dict[str, Any]]:
        columns = ("at", "actor", "role", "operation", "domain", "pseudonym", "reason", "outcome")
        return [dict(zip(columns, row, strict=True)) for row in self._db.execute("select * from audit")]

    def flush(self) -> None:
        if self._pending:
            with self._lock:
                self._db.executemany("insert or ignore into mapping values (?, ?, ?, 0, ?)", self._pending)
            self._pending = []

    def _guarded(self, operation, domain, pseudonym, actor, role, reason):
        allowed = role == REIDENTIFY_ROLE and bool(reason and reason.strip())
        self.flush()
        row = None
        if allowed:
            row = self._db.execute(
                "select original from mapping where domain = ? and pseudonym = ?", (domain, pseudonym)
            ).fetchone()
        unknown = row is None or (operation == "$de-pseudonymize" and row[0] is None)
        outcome = "refused" if not allowed else "unknown" if unknown else "done"
        with self._lock:
            self._db.execute(
                "insert into audit values (?, ?, ?, ?, ?, ?, ?, ?)",
                (_now(), actor, role, operation, domain, pseudonym, reason or "", outcome),
            )
        if not allowed:
            raise PermissionError(f"{operation} needs the site role {REIDENTIFY_ROLE} and a reason")
        return row

    # --- FHIR ------------------------------------------------------------------------------------

    def operation(
        self, name: str, parameters: Any, *, actor: str = "", role: str = "", reason: str = ""
    ) -> tuple[int, dict[str, Any]]:
        """One operation of the IG on a `Parameters` resource: (HTTP status, response resource)."""
        if name not in OPERATIONS:
            return 404, _outcome("not-supported", f"unknown operation {name}")
        values = _parameters(parameters)
        domain = values.get("target") or values.get("context")
        if not domain:
            return 400, _outcome("required", "the parameter `target` (the pseudonym domain) is missing")
        try:
            if name in ("$pseudonymize", "$pseudonymize-multiple", "$get-pseudonym"):
                original = values.get("original")
                if not original:
                    return 400, _outcome("required", "the parameter `original` is missing")
                fn = {
                    "$pseudonymize": self.pseudonymize,
                    "$pseudonymize-multiple": self.pseudonymize_multiple,
                    "$get-pseudonym": self.get_pseudonym,
                }[name]
                return 200, _result(domain, original=original, pseudonym=fn(domain, original))
            pseudonym = values.get("pseudonym")
            if not pseudonym:
                return 400, _outcome("required", "the parameter `pseudonym` is missing")
            if name == "$de-pseudonymize":
                original = self.de_pseudonymize(domain, pseudonym, actor=actor, role=role, reason=reason)
                return 200, _result(domain, original=original, pseudonym=pseudonym)
            fn = self.delete_pseudonym if name == "$delete-pseudonym" else self.anonymize_original
            fn(domain, pseudonym, actor=actor, role=role, reason=reason)
            return 200, _result(domain, pseudonym=pseudonym)
        except PermissionError as error:
            return 403, _outcome("forbidden", str(error))
        except UnknownPseudonym as error:
            return 404, _outcome("not-found", str(error))


def _parameters(parameters: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        return out
    for item in parameters.get("parameter") or ():
        if not isinstance(item, dict):
            continue
        name = item.get("name")
        value = item.get("valueString") or item.get("valueIdentifier", {}).get("value")
        if isinstance(name, str) and isinstance(value, str):
            out[name] = value
    return out


def _result(domain: str, **values: str) -> dict[str, Any]:
    parameter = [{"name": "target", "valueIdentifier": {"system": DOMAIN_SYSTEM, "value": domain}}]
    parameter += [{"name": k, "valueString": v} for k, v in values.items()]
    return {"resourceType": "Parameters", "parameter": parameter}


def _outcome(code: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }
