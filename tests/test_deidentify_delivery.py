"""Opening the hub's merged download on the researcher's side: every site's package checked against the
index and its manifest, the sites' NDJSON merged with a site label per resource; any mismatch refused
with the site named."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from datenraum.deidentify.delivery import SITE_TAG, DeliveryOpenError, open_delivery
from datenraum.deidentify.package import new_recipient_key, seal

BUNDLE = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [{"resource": {"resourceType": "Patient", "id": "p1"}}],
}


def sealed(tmp_path: Path, site: str, public: bytes) -> bytes:
    folder = tmp_path / f"{site}-folder"
    (folder / "reports").mkdir(parents=True)
    (folder / "reports/leak-gate.json").write_text('{"verdict": "pass"}')
    (folder / "batch-1.ndjson").write_text(json.dumps(BUNDLE) + "\n")
    seal(folder, tmp_path / f"{site}.dpkg", public, project="P", site=site)
    return (tmp_path / f"{site}.dpkg").read_bytes()


def download(tmp_path: Path, packages: dict[str, bytes], index_sha: dict[str, str] | None = None) -> Path:
    index = {
        "sites": [
            {
                "site": site,
                "state": "uploaded",
                "file": f"sites/{site}.dpkg",
                "sha256": (index_sha or {}).get(site) or hashlib.sha256(data).hexdigest(),
            }
            for site, data in packages.items()
        ]
    }
    path = tmp_path / "download.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in [
            ("delivery.json", json.dumps(index).encode()),
            *((f"sites/{s}.dpkg", d) for s, d in packages.items()),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_the_sites_packages_are_merged_with_a_site_label_on_every_resource(tmp_path: Path) -> None:
    private, public = new_recipient_key()
    packages = {site: sealed(tmp_path, site, public) for site in ("uk-a", "uk-b")}
    counts = open_delivery(download(tmp_path, packages), private, tmp_path / "out")
    assert counts == {"uk-a": 1, "uk-b": 1}
    lines = [json.loads(line) for line in (tmp_path / "out/merged/batch-1.ndjson").read_text().splitlines()]
    tags = [entry["resource"]["meta"]["tag"] for bundle in lines for entry in bundle["entry"]]
    assert tags == [[{"system": SITE_TAG, "code": "uk-a"}], [{"system": SITE_TAG, "code": "uk-b"}]]


def test_a_package_that_is_not_the_one_of_the_index_is_refused_naming_its_site(tmp_path: Path) -> None:
    private, public = new_recipient_key()
    packages = {"uk-a": sealed(tmp_path, "uk-a", public)}
    with pytest.raises(DeliveryOpenError, match="site uk-a: the package's SHA-256"):
        open_delivery(download(tmp_path, packages, {"uk-a": "0" * 64}), private, tmp_path / "out")


def test_another_projects_key_does_not_open_it(tmp_path: Path) -> None:
    _private, public = new_recipient_key()
    other, _ = new_recipient_key()
    packages = {"uk-a": sealed(tmp_path, "uk-a", public)}
    with pytest.raises(DeliveryOpenError, match="site uk-a: the package key does not open"):
        open_delivery(download(tmp_path, packages), other, tmp_path / "out")
