"""The researcher's side of a delivery: the hub's merged download opened with the project's key.

The download is a tar of `delivery.json` (each site's state, counts, SHA-256 and size) and
`sites/<site>.dpkg`, each site's package as the site sealed it. `open_delivery` streams it apart,
checks every package's SHA-256 against the index (the hub cannot change a byte unnoticed, nor can
anyone on the way), opens each with the project's private key (which checks every file against the
package's manifest), and merges the sites' NDJSON into `merged/`, every resource labelled with its
site (`meta.tag`, system `SITE_TAG`), so that the records of the sites stay told apart.

    OUT_DIR/sites/<site>/...        each site's de-identified folder, as sealed
    OUT_DIR/merged/<name>.ndjson    the sites' Bundles (and shared resources) of that name, labelled
    OUT_DIR/delivery.json           the hub's index
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

import orjson

from datenraum.deidentify.package import PackageError, open_package

__all__ = ["SITE_TAG", "DeliveryOpenError", "open_delivery"]

SITE_TAG = "https://datenraum.de/fhir/CodeSystem/delivering-site"
_SITE = re.compile(r"[A-Za-z0-9._-]{1,100}")
_BLOCK = 1 << 20


class DeliveryOpenError(ValueError):
    pass


def _label(resource: dict[str, Any], site: str) -> None:
    meta = resource.setdefault("meta", {})
    meta["tag"] = [*meta.get("tag", []), {"system": SITE_TAG, "code": site}]


def _merge(site_folder: Path, site: str, merged: Path) -> int:
    resources = 0
    for path in sorted(site_folder.glob("*.ndjson")):
        with open(path, "rb") as lines, open(merged / path.name, "ab") as out:
            for line in lines:
                if not line.strip():
                    continue
                document = orjson.loads(line)
                inner = [
                    e["resource"] for e in document.get("entry", []) if isinstance(e.get("resource"), dict)
                ]
                for resource in inner or [document]:
                    _label(resource, site)
                    resources += 1
                out.write(orjson.dumps(document) + b"\n")
    return resources


def open_delivery(download: Path | str, private_pem: bytes, out_dir: Path | str) -> dict[str, Any]:
    """Open the hub's download into `out_dir` (new or empty); returns {site: resources merged}. Raises
    DeliveryOpenError naming the site and what does not match."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise DeliveryOpenError(f"{out} is not empty")
    sealed = out / ".sealed"
    sealed.mkdir(parents=True)
    index: dict[str, Any] | None = None
    digests: dict[str, str] = {}
    try:
        with tarfile.open(download, mode="r|") as tar:
            for member in tar:
                source = tar.extractfile(member) if member.isfile() else None
                if source is None:
                    raise DeliveryOpenError(f"{download}: {member.name} is not a plain file")
                if member.name == "delivery.json":
                    index = orjson.loads(source.read())
                    continue
                site = member.name.removeprefix("sites/").removesuffix(".dpkg")
                if not member.name.startswith("sites/") or not _SITE.fullmatch(site):
                    raise DeliveryOpenError(f"{download}: unexpected entry {member.name}")
                digest = hashlib.sha256()
                with open(sealed / f"{site}.dpkg", "wb") as written:
                    while block := source.read(_BLOCK):
                        digest.update(block)
                        written.write(block)
                digests[site] = digest.hexdigest()
    except (tarfile.TarError, orjson.JSONDecodeError) as error:
        raise DeliveryOpenError(f"{download}: not a readable delivery: {error}") from None
    if index is None:
        raise DeliveryOpenError(f"{download}: delivery.json is missing")
    expected = {s["site"]: s["sha256"] for s in index.get("sites", []) if s.get("file")}
    if set(expected) != set(digests):
        raise DeliveryOpenError(
            f"the packages {sorted(digests)} are not those of delivery.json {sorted(expected)}"
        )
    merged = out / "merged"
    merged.mkdir()
    counts = {}
    for site in sorted(expected):
        if digests[site] != expected[site]:
            raise DeliveryOpenError(
                f"site {site}: the package's SHA-256 is {digests[site]}, the index says {expected[site]}"
            )
        try:
            open_package(sealed / f"{site}.dpkg", private_pem, out / "sites" / site)
        except PackageError as error:
            raise DeliveryOpenError(f"site {site}: {error}") from None
        counts[site] = _merge(out / "sites" / site, site, merged)
    shutil.rmtree(sealed)
    (out / "delivery.json").write_bytes(orjson.dumps(index, option=orjson.OPT_INDENT_2))
    return counts
