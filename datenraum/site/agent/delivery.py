"""A data delivery at the site: the extracted job folder de-identified, gated, sealed, and (once the
site's custodian released it at the hub) uploaded in resumable chunks.

    <extraction.output>/<project>/<task id>/                  the job folder (stays at the site)
    <extraction.output>/<project>/<task id>.deidentified/     what would leave, with its reports
    <extraction.output>/<project>/<task id>.dpkg              sealed for the project's public key

`seal_delivery` runs after the extraction when the task carries the project's `recipient_key`: the
project's keys derive from the site secret (`extraction.key_file`), pseudonyms persist next to it, the
profile is a shipped one (`fdpg`, `fts`; never a path the hub names). A leak gate that finds anything
fails the task: nothing is sealed. What goes to the hub are counts only, under the rule of
`datenraum.privacy.delivery`: the resources per type, the leak gate's findings (0) and the package's
size; the custodian sees them on the hub's release page and looks at the de-identified folder here for
the records themselves.

`upload_released` sends each released package: it asks the hub where to continue (the bytes it
acknowledged), sends the rest in chunks with their SHA-256, then the whole package's SHA-256. A killed
agent or a restarted hub costs at most the chunk in flight.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

from datenraum.privacy.delivery import delivery_counts
from datenraum.site.agent.config import AgentConfig

__all__ = ["CHUNK", "DeliveryError", "package_path", "seal_delivery", "upload_released"]

log = logging.getLogger("datenraum.site.agent")

CHUNK = 4 << 20  # bytes per upload chunk (the hub takes up to 8 MiB)
PROFILES = ("fdpg", "fts")


class DeliveryError(Exception):
    """The package cannot be made or sent; the text says why (it is the task's reason)."""


def package_path(job_folder: Path) -> Path:
    return job_folder.with_name(job_folder.name + ".dpkg")


def _deidentified(job_folder: Path) -> Path:
    return job_folder.with_name(job_folder.name + ".deidentified")


def seal_delivery(job_folder: Path, payload: dict[str, Any], config: AgentConfig) -> dict[str, Any]:
    """De-identify, gate and seal the finished job folder; returns the summary's delivery counts. Raises
    DeliveryError when the site cannot (no key file, a blocked leak gate, a bad recipient key)."""
    from datenraum.deidentify.folder import DeidentifyError, deidentify_folder
    from datenraum.deidentify.keys import KeyFileError, ProjectKeys, read_secret
    from datenraum.deidentify.package import PackageError, seal
    from datenraum.deidentify.profile import ProfileError, load_profile
    from datenraum.deidentify.pseudonyms import PseudonymService
    from datenraum.site.extraction.deidentified import rebuild_tables

    profile_name = payload.get("profile", "fdpg")
    recipient = payload.get("recipient_key")
    project = payload["project"]
    if profile_name not in PROFILES:
        raise DeliveryError(f"malformed task: payload.profile must be one of {', '.join(PROFILES)}")
    if not isinstance(recipient, str):
        raise DeliveryError("malformed task: payload.recipient_key must be the project's public key (PEM)")
    if config.extraction_key_file is None:
        raise DeliveryError("this site has no key file for de-identification (extraction.key_file)")
    sealed = package_path(job_folder)
    target = _deidentified(job_folder)
    if sealed.exists() and (target / "reports/deidentification.json").exists():  # sealed before a restart
        report = orjson.loads((target / "reports/deidentification.json").read_bytes())
        report["leakGate"] = orjson.loads((target / "reports/leak-gate.json").read_bytes())
        return delivery_counts(report, sealed.stat().st_size)
    shutil.rmtree(target, ignore_errors=True)  # what an interrupted run left: de-identified again
    try:
        secret = read_secret(config.extraction_key_file)
        service = PseudonymService(
            secret,
            config.extraction_key_file.with_name(config.extraction_key_file.name + ".pseudonyms.sqlite"),
        )
        try:
            report = deidentify_folder(
                job_folder,
                target,
                load_profile(profile_name),
                ProjectKeys.derive(secret, project),
                service,
                tables=rebuild_tables,
            )
        finally:
            service.close()
        gate = report["leakGate"]
        if gate["verdict"] != "pass":
            raise DeliveryError(
                f"the leak gate blocked the package: {gate['findingsTotal']} findings "
                f"(the site's {target / 'reports/leak-gate.json'} names them)"
            )
        about = {"project": project, "task": job_folder.name}
        sealed_info = seal(target, sealed, recipient.encode(), **about)
    except (KeyFileError, ProfileError, DeidentifyError, PackageError) as error:
        raise DeliveryError(f"the package cannot be made: {error}") from None
    except ValueError as error:  # the recipient key does not load
        raise DeliveryError(f"the package cannot be sealed for the project's key: {error}") from None
    return delivery_counts(report, sealed_info["bytes"])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def upload_released(
    request: Callable[..., httpx.Response],
    job_folder_of: Callable[[str, str], Path],
    stopping: Callable[[], bool],
) -> int:
    """Upload every package the hub lists as released for this site; returns how many were completed.
    `request(method, path, **kwargs)` talks to the hub's site API (raising when it is away)."""
    listed = request("GET", "/deliveries")
    if listed.status_code != 200:
        log.warning("delivery list refused (%d): %s", listed.status_code, listed.text[:200])
        return 0
    try:
        uploads = [(str(u["task_id"]), str(u["project"])) for u in listed.json()["uploads"]]
    except (ValueError, KeyError, TypeError):
        log.warning("the hub sent a malformed delivery list")
        return 0
    completed = 0
    for task_id, project in uploads:
        sealed = package_path(job_folder_of(project, task_id))
        if not sealed.exists():
            log.error("task %s: released, but its package %s is not here", task_id, sealed)
            continue
        if _upload_one(request, task_id, sealed, stopping):
            completed += 1
    return completed


def _upload_one(
    request: Callable[..., httpx.Response], task_id: str, sealed: Path, stopping: Callable[[], bool]
) -> bool:
    size = sealed.stat().st_size
    answer = request("GET", f"/deliveries/{task_id}/upload")
    if answer.status_code != 200:
        log.warning("task %s: upload refused (%d): %s", task_id, answer.status_code, answer.text[:200])
        return False
    try:
        offset = int(answer.json()["received"])
    except (ValueError, KeyError, TypeError):
        log.warning("task %s: the hub sent a malformed upload offset", task_id)
        return False
    if offset:
        log.info("task %s: resuming the upload at %d of %d bytes", task_id, offset, size)
    with open(sealed, "rb") as handle:
        handle.seek(offset)
        while offset < size:
            if stopping():
                return False
            data = handle.read(CHUNK)
            sent = request(
                "PUT",
                f"/deliveries/{task_id}/upload",
                params={"offset": offset},
                content=data,
                headers={"X-Chunk-SHA256": hashlib.sha256(data).hexdigest()},
            )
            if sent.status_code == 409:  # the hub acknowledged another offset: continue from there
                return False
            if sent.status_code != 200:
                log.warning("task %s: chunk refused (%d): %s", task_id, sent.status_code, sent.text[:200])
                return False
            try:
                offset = int(sent.json()["received"])
            except (ValueError, KeyError, TypeError):
                log.warning("task %s: the hub sent a malformed upload answer", task_id)
                return False
            handle.seek(offset)
    done = request("POST", f"/deliveries/{task_id}/complete", json={"bytes": size, "sha256": _sha256(sealed)})
    if done.status_code != 200:
        log.warning(
            "task %s: the hub refused the package (%d): %s", task_id, done.status_code, done.text[:200]
        )
        return False
    log.info("task %s: package of %d bytes delivered", task_id, size)
    return True
