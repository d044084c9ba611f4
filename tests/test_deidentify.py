"""De-identification: the two profiles' acceptance rules (brief R-DIMP), determinism per project, the
leak gate against hand-broken packages, the pseudonym service, sealed packages and tampering, the CLI."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deidentify_fixtures import write_job

from datenraum.deidentify import package
from datenraum.deidentify.engine import shift_date
from datenraum.deidentify.folder import deidentify_folder
from datenraum.deidentify.gate import leak_gate
from datenraum.deidentify.keys import ProjectKeys
from datenraum.deidentify.profile import load_profile
from datenraum.deidentify.pseudonyms import REIDENTIFY_ROLE, PseudonymService

SECRET = bytes.fromhex("11" * 32)
FTS_E2E = "fts-next/deidentifhir-e2e-shiftdate"


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Path:
    return write_job(tmp_path_factory.mktemp("job") / "in", patients=6)


def run(job: Path, out: Path, profile: str = "fdpg", project: str = "P1", **options) -> dict:
    return deidentify_folder(
        job,
        out,
        load_profile(profile, **options),
        ProjectKeys.derive(SECRET, project),
        PseudonymService(SECRET),
    )


def resources(folder: Path, name: str | None = None) -> list[dict]:
    found = []
    for path in sorted(folder.glob("*.ndjson")):
        for line in path.read_text().splitlines():
            found += [e["resource"] for e in json.loads(line)["entry"]]
    return [r for r in found if name is None or r["resourceType"] == name]


def by_type(folder: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in resources(folder):
        out.setdefault(r["resourceType"], []).append(r)
    return out


def test_fdpg_profile(job, tmp_path):
    report = run(job, tmp_path / "out")
    assert report["leakGate"]["verdict"] == "pass", report["leakGate"]["findings"]
    key = ProjectKeys.derive(SECRET, "P1").hash_key
    originals = {r["id"] for r in resources(job)}
    hashes = {hmac.new(key, i.encode(), hashlib.sha256).hexdigest()[:32] for i in originals}
    assert {r["id"] for r in resources(tmp_path / "out")} == hashes  # DIMP's openssl recipe
    found = by_type(tmp_path / "out")
    patient = found["Patient"][0]
    assert patient["birthDate"] == "1950-07" and patient["address"] == [{"postalCode": "04", "country": "DE"}]
    assert not {"name", "telecom", "text"} & set(patient)
    assert [i["type"]["coding"][0]["code"] for i in patient["identifier"]] == ["MR"]  # KVZ10 redacted
    assert all("note" not in c for c in found["Condition"])
    assert all("display" not in e["subject"] for e in found["Encounter"])
    assert all(set(r.get("meta", {})) <= {"profile"} for r in resources(tmp_path / "out"))
    # shared resources: one pseudonym per project, every patient's reference joins
    medications = {f"Medication/{m['id']}" for m in found["Medication"]}
    assert {m["medicationReference"]["reference"] for m in found["MedicationRequest"]} == medications
    # TORCH's Provenance identifiers stay
    assert found["Provenance"][0]["entity"][1]["what"]["identifier"]["value"] == "job-1"
    assert not (tmp_path / "out/reports/patient-exclusions.csv").exists()
    assert "cohort" not in json.loads((tmp_path / "out/job.json").read_text())


def test_fts_profile(job, tmp_path):
    report = run(job, tmp_path / "out", "fts")
    assert report["leakGate"]["verdict"] == "pass", report["leakGate"]["findings"]
    found = by_type(tmp_path / "out")
    patient = found["Patient"][0]
    assert patient["birthDate"] == "1950-07-15" and patient["address"][0]["postalCode"] == "041"
    assert patient["name"][0]["family"] == "PSEUDONYMISIERT"
    assert all(len(r["id"]) == 64 for r in resources(tmp_path / "out"))
    # the test configuration has no module for MedicationRequest or Organization: dropped, counted,
    # and the references to them removed (no dangling reference, no silent loss)
    assert report["droppedNoModule"] == {"MedicationRequest": 6, "Organization": 1}
    assert report["actions"]["references removed (target dropped)"] >= 6
    assert "managingOrganization" not in patient
    assert "MedicationRequest" not in found


def test_fts_date_shift_per_patient(job, tmp_path, extraction_data):
    config = extraction_data / FTS_E2E
    shifts = {}
    for preserve in ("NONE", "WEEKDAY", "DAYTIME"):
        out = tmp_path / preserve
        report = run(job, out, "fts", fts_config=config, max_date_shift="P14D", date_shift_preserve=preserve)
        assert report["leakGate"]["verdict"] == "pass"
        for encounter in resources(out, "Encounter"):
            start = dt.datetime.fromisoformat(encounter["period"]["start"])
            shift = start - dt.datetime.fromisoformat("2021-03-04T10:11:12+01:00")
            assert abs(shift) <= dt.timedelta(days=14)
            if preserve == "WEEKDAY":
                assert shift.days % 7 == 0 and shift.seconds == 0
            if preserve == "DAYTIME":
                assert shift.seconds == 0
            shifts.setdefault(preserve, []).append(shift)
    assert len(set(shifts["NONE"])) > 1  # one shift per patient, not one for all
    assert shift_date("2021-03-04", dt.timedelta(days=-4)) == "2021-02-28"
    assert shift_date("2021-03", dt.timedelta(days=3)) == "2021-03"


def test_same_project_same_pseudonyms_other_project_different(job, tmp_path, extraction_data):
    config = extraction_data / FTS_E2E
    for profile, options in (("fdpg", {}), ("fts", {"fts_config": config})):
        a, b, c = (tmp_path / profile / n for n in "abc")
        run(job, a, profile, **options)
        run(job, b, profile, **options)
        run(job, c, profile, project="P2", **options)
        for path in sorted(a.glob("*.ndjson")):
            assert path.read_bytes() == (b / path.name).read_bytes()
        ids_a = {r["id"] for r in resources(a)}
        assert ids_a and not ids_a & {r["id"] for r in resources(c)}
        if profile == "fts":
            starts = lambda f: [e["period"]["start"] for e in resources(f, "Encounter")]  # noqa: E731
            assert starts(a) == starts(b) != starts(c)


def _plant(folder: Path, name: str, change) -> None:
    path = folder / name
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    change(lines)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


@pytest.mark.parametrize(
    ("kind", "change"),
    [
        ("original id", lambda b: b[0]["entry"][2]["resource"].update(code={"text": "see pat-000000-site"})),
        (
            "identifier value",
            lambda b: b[0]["entry"][1]["resource"]["identifier"][0].update(value="FALL-0000000-0"),
        ),
        ("name", lambda b: b[0]["entry"][0]["resource"].update(name=[{"family": "Musterfrau"}])),
        ("address line", lambda b: b[0]["entry"][0]["resource"]["address"][0].update(line=["Hauptstraße 5"])),
        ("exact birth date", lambda b: b[0]["entry"][0]["resource"].update(birthDate="1950-07-01")),
        (
            "unresolved reference",
            lambda b: b[0]["entry"][2]["resource"].update(subject={"reference": "Patient/x"}),
        ),
    ],
)
def test_leak_gate_blocks_a_hand_broken_package(job, tmp_path, kind, change):
    out = tmp_path / "out"
    assert run(job, out)["leakGate"]["verdict"] == "pass"
    _plant(out, "batch-0000.ndjson", change)
    verdict = leak_gate(job, out, load_profile("fdpg").keep_systems)
    assert not verdict.passed
    assert kind in {f.kind for f in verdict.findings}
    # the report never shows the value itself
    assert "Musterfrau" not in json.dumps(verdict.to_dict()) and "Hauptstraße 5" not in json.dumps(
        verdict.to_dict()
    )


def test_leak_gate_blocks_the_input_itself_and_a_table(job, tmp_path):
    verdict = leak_gate(job, job)
    kinds = {f.kind for f in verdict.findings}
    assert {"original id", "identifier value", "name", "address line", "exact birth date"} <= kinds
    out = tmp_path / "out"
    run(job, out)
    (out / "tables").mkdir()
    (out / "tables/patient.csv").write_text("id,name\nx,Annegret\n")
    assert {f.kind for f in leak_gate(job, out, load_profile("fdpg").keep_systems).findings} == {"name"}


def test_pseudonym_service(tmp_path):
    db = tmp_path / "psn.sqlite"
    service = PseudonymService(SECRET, db)
    p = service.pseudonymize("P1", "MR|123")
    assert service.pseudonymize("P1", "MR|123") == p != service.pseudonymize("P2", "MR|123")
    assert service.pseudonymize_multiple("P1", "MR|123") != service.pseudonymize_multiple("P1", "MR|123")
    assert service.get_pseudonym("P1", "MR|123") == p
    with pytest.raises(PermissionError):
        service.de_pseudonymize("P1", p, actor="hub", role="admin", reason="curious")
    service.close()
    service = PseudonymService(SECRET, db)  # persisted
    assert (
        service.de_pseudonymize("P1", p, actor="anna", role=REIDENTIFY_ROLE, reason="incidental finding")
        == "MR|123"
    )
    status, body = service.operation(
        "$de-pseudonymize",
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "target", "valueString": "P1"},
                {"name": "pseudonym", "valueString": "nope"},
            ],
        },
        actor="anna",
        role=REIDENTIFY_ROLE,
        reason="check",
    )
    assert status == 404 and body["resourceType"] == "OperationOutcome"
    status, body = service.operation(
        "$pseudonymize",
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "target", "valueString": "P1"},
                {"name": "original", "valueString": "MR|123"},
            ],
        },
    )
    assert status == 200 and body["parameter"][-1] == {"name": "pseudonym", "valueString": p}
    service.anonymize_original("P1", p, actor="anna", role=REIDENTIFY_ROLE, reason="withdrawn consent")
    assert (
        service.operation(
            "$de-pseudonymize",
            {
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "target", "valueString": "P1"},
                    {"name": "pseudonym", "valueString": p},
                ],
            },
            role=REIDENTIFY_ROLE,
            reason="x",
        )[0]
        == 404
    )
    audit = service.audit()
    assert [a["outcome"] for a in audit] == ["refused", "done", "unknown", "done", "unknown"]
    assert all("MR|123" not in json.dumps(a) for a in audit)


@pytest.mark.parametrize("kind", ["x25519", "rsa"])
def test_package_seal_open_and_tampering(job, tmp_path, kind):
    out = tmp_path / "out"
    run(job, out)
    private, public = package.new_recipient_key(kind)
    sealed = tmp_path / "p.dpkg"
    info = package.seal(out, sealed, public, chunk=4096, project="P1", site="site-a")
    assert info["sha256"] == package.file_sha256(sealed)
    manifest = package.open_package(sealed, private, tmp_path / "opened")
    assert manifest["files"]["batch-0000.ndjson"]["sha256"] == package.file_sha256(out / "batch-0000.ndjson")
    data = sealed.read_bytes()
    for position in (3, 30, len(data) // 3, len(data) // 2, len(data) - 1):
        broken = bytearray(data)
        broken[position] ^= 0x01
        (tmp_path / "b.dpkg").write_bytes(broken)
        shutil.rmtree(tmp_path / "b", ignore_errors=True)
        with pytest.raises(package.PackageError):
            package.open_package(tmp_path / "b.dpkg", private, tmp_path / "b")
    (tmp_path / "cut.dpkg").write_bytes(data[: len(data) - 5000])
    with pytest.raises(package.PackageError, match=r"cut off|does not decrypt"):
        package.open_package(tmp_path / "cut.dpkg", private, tmp_path / "cut")
    other, _ = package.new_recipient_key(kind)
    with pytest.raises(package.PackageError):
        package.open_package(sealed, other, tmp_path / "other")
    (tmp_path / "opened/core.ndjson").write_text("changed\n")
    assert package.verify_manifest(tmp_path / "opened") == ["core.ndjson: SHA-256 differs from the manifest"]


def test_a_blocked_folder_cannot_be_sealed(job, tmp_path):
    out = tmp_path / "out"
    run(job, out)
    (out / "reports/leak-gate.json").write_text('{"verdict": "blocked"}')
    with pytest.raises(package.PackageError, match="blocked"):
        package.seal(out, tmp_path / "p.dpkg", package.new_recipient_key()[1])


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "datenraum", "deidentify", *args], capture_output=True, text=True
    )


def test_cli_on_a_real_extraction(tmp_path, extraction_data, mii_kds_testdata):
    from datenraum.site.extraction import JobOptions, run_extraction
    from datenraum.site.ingest import ingest
    from datenraum.site.store import Store

    store = tmp_path / "store"
    ingest(Store(store), [mii_kds_testdata])
    crtdl = (extraction_data / "torch/cases/perf/crtdl-with-references.json").read_bytes()
    run_extraction(store, crtdl, tmp_path / "job", JobOptions(today=dt.date(2026, 11, 22)))
    key = tmp_path / "site.key"
    key.write_text("ab" * 32 + "\n")
    done = _cli(
        "--profile",
        "fdpg",
        "--project",
        "P1",
        "--key-file",
        str(key),
        str(tmp_path / "job"),
        str(tmp_path / "out"),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["leakGate"]["verdict"] == "pass"
    assert (tmp_path / "out/tables/medicationrequest.csv").exists()
    assert (tmp_path / "site.key.pseudonyms.sqlite").exists() and not list(
        (tmp_path / "out").rglob("*.sqlite")
    )
    # a profile that keeps everything lets the names through: the gate blocks, exit 1
    (tmp_path / "keep-all.json").write_text(
        json.dumps({"name": "keep-all", "identifiers": {"otherwise": "pseudonymize"}})
    )
    write_job(tmp_path / "named", patients=2)
    done = _cli(
        "--profile",
        str(tmp_path / "keep-all.json"),
        "--project",
        "P1",
        "--key-file",
        str(key),
        str(tmp_path / "named"),
        str(tmp_path / "out2"),
    )
    assert done.returncode == 1 and "leak: name" in done.stderr
    assert json.loads((tmp_path / "out2/reports/leak-gate.json").read_text())["verdict"] == "blocked"
    bad = _cli(
        "--profile",
        "fdpg",
        "--project",
        "P1",
        "--key-file",
        str(tmp_path / "missing"),
        str(tmp_path / "job"),
        str(tmp_path / "o3"),
    )
    assert bad.returncode == 2 and "key file" in bad.stderr
