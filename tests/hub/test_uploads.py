"""Uploaded documents: accepted by what they are, stored by their content, never by their name."""

from __future__ import annotations

import hashlib
import io
import sys
import zipfile
from pathlib import Path

import pytest

from datenraum.hub.proposals.uploads import (
    DOCX,
    MAX_NAME_BYTES,
    ODT,
    UploadPolicy,
    UploadRejected,
    detect_media_type,
    read_stored,
    sanitise_file_name,
    store_upload,
)

PDF_BYTES = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG_BYTES = b"\xff\xd8\xff\xe0" + b"\x00" * 32


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data, compress_type=zipfile.ZIP_STORED)
    return buffer.getvalue()


DOCX_BYTES = zipped(
    {
        "[Content_Types].xml": b'<Types><Override PartName="/word/document.xml" ContentType="'
        b'application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>',
        "word/document.xml": b"<w:document/>",
    }
)
ODT_BYTES = zipped({"mimetype": ODT.encode(), "content.xml": b"<office:document-content/>"})


def files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


@pytest.fixture
def policy(tmp_path: Path) -> UploadPolicy:
    return UploadPolicy(folder=tmp_path / "uploads", max_bytes=4096)


@pytest.mark.parametrize(
    ("content", "media_type"),
    [
        (PDF_BYTES, "application/pdf"),
        (PNG_BYTES, "image/png"),
        (JPEG_BYTES, "image/jpeg"),
        ("Ethikvotum: zustimmende Bewertung für Studie 123/45\n".encode(), "text/plain"),
        (DOCX_BYTES, DOCX),
        (ODT_BYTES, ODT),
    ],
)
def test_accepted_types_are_recognised_by_their_content(content: bytes, media_type: str) -> None:
    assert detect_media_type(content) == media_type


@pytest.mark.parametrize(
    "content",
    [
        b"MZ\x90\x00\x03\x00\x00\x00",  # a Windows executable
        b"\x7fELF\x02\x01\x01",  # a Linux executable
        zipped({"payload.exe": b"MZ"}),  # a zip that is no office document
        zipped({"mimetype": b"application/vnd.oasis.opendocument.spreadsheet"}),  # ODS, not ODT
        zipped({"[Content_Types].xml": b"<Types/>", "word/document.xml": b""}),  # no DOCX main part
        b"PK\x03\x04 broken zip",
        b"text with a NUL \x00 in it",
        "Latin-1 Umlaute: \xe4\xf6\xfc".encode("latin-1"),
    ],
)
def test_other_content_is_not_accepted(content: bytes) -> None:
    assert detect_media_type(content) is None


def test_a_renamed_executable_is_rejected_naming_the_file_and_the_rule(policy: UploadPolicy) -> None:
    with pytest.raises(
        UploadRejected, match=r"^ethikvotum\.pdf: the content is not one of the accepted types"
    ):
        store_upload(policy, "ethikvotum.pdf", b"MZ\x90\x00 not a pdf")
    assert not policy.folder.exists() or files(policy.folder) == []


def test_a_type_left_out_of_the_policy_is_rejected(tmp_path: Path) -> None:
    only_pdf = UploadPolicy(folder=tmp_path, allowed_types=frozenset({"application/pdf"}))
    with pytest.raises(UploadRejected, match="accepted types"):
        store_upload(only_pdf, "bild.png", PNG_BYTES)


def test_a_file_over_the_size_limit_is_rejected(policy: UploadPolicy) -> None:
    with pytest.raises(UploadRejected, match=r"^big\.pdf: 4097 bytes is more than the limit of 4096 bytes"):
        store_upload(policy, "big.pdf", PDF_BYTES + b"x" * (4097 - len(PDF_BYTES)))
    assert store_upload(policy, "exact.pdf", PDF_BYTES + b"x" * (4096 - len(PDF_BYTES))).size == 4096


def test_an_empty_file_is_rejected(policy: UploadPolicy) -> None:
    with pytest.raises(UploadRejected, match="empty"):
        store_upload(policy, "leer.txt", b"")


def test_a_file_is_stored_under_its_content_hash_and_read_back(policy: UploadPolicy) -> None:
    stored = store_upload(policy, "../../etc/passwd", PDF_BYTES)
    assert stored.storage_id == hashlib.sha256(PDF_BYTES).hexdigest()
    assert files(policy.folder) == [policy.folder / stored.storage_id[:2] / stored.storage_id]
    assert read_stored(policy, stored.storage_id) == PDF_BYTES
    assert store_upload(policy, "again.pdf", PDF_BYTES).storage_id == stored.storage_id
    assert len(files(policy.folder)) == 1


def test_a_storage_id_that_is_no_hash_is_not_read(policy: UploadPolicy) -> None:
    with pytest.raises(ValueError, match="not a SHA-256"):
        read_stored(policy, "../../etc/passwd")


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("Ethikvotum 2025.pdf", "Ethikvotum 2025.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..", "document"),
        ("C:\\Users\\anna\\Antrag.docx", "Antrag.docx"),
        ("/absolute/path/antrag.pdf", "antrag.pdf"),
        ("evil\x00.pdf", "evil.pdf"),
        ("line\nbreak\r.txt", "linebreak.txt"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),  # right-to-left override: shown as "invoiceexe.pdf"
        ("zero\u200bwidth\ufeff.pdf", "zerowidth.pdf"),
        ("fullwidth\uff0f..\uff0fsolidus.pdf", "solidus.pdf"),
        (".hidden", "hidden"),
        ("trailing. . ", "trailing"),
        ('what?<is>:this|"*.pdf', "what__is__this___.pdf"),
        ("CON", "_CON"),
        ("nul.txt", "_nul.txt"),
        ("com1.tar.gz", "_com1.tar.gz"),
        ("CONSENT.pdf", "CONSENT.pdf"),
        ("", "document"),
    ],
)
def test_file_names_are_sanitised_for_display(given: str, shown: str) -> None:
    assert sanitise_file_name(given) == shown


def test_an_overlong_name_is_shortened_keeping_its_extension() -> None:
    shown = sanitise_file_name("ä" * 300 + ".pdf")
    assert shown.endswith(".pdf")
    assert len(shown.encode()) <= MAX_NAME_BYTES
    assert shown[:-4] == "ä" * ((MAX_NAME_BYTES - 4) // 2)


# -- the virus-scanning hook


def scanner(tmp_path: Path, body: str) -> tuple[str, ...]:
    script = tmp_path / "scan.py"
    script.write_text(f"import sys, time\npath = sys.argv[1]\n{body}\n")
    return (sys.executable, str(script))


def test_a_scanner_that_exits_zero_lets_the_file_in(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    command = scanner(tmp_path, f"open({str(seen)!r}, 'wb').write(open(path, 'rb').read())")
    policy = UploadPolicy(folder=tmp_path / "uploads", scan_command=command)
    stored = store_upload(policy, "a.pdf", PDF_BYTES)
    assert seen.read_bytes() == PDF_BYTES  # the scanner saw the whole content
    assert read_stored(policy, stored.storage_id) == PDF_BYTES


def test_a_scanner_that_exits_non_zero_rejects_the_file(tmp_path: Path) -> None:
    command = scanner(tmp_path, "print('Eicar-Test-Signature FOUND'); sys.exit(1)")
    policy = UploadPolicy(folder=tmp_path / "uploads", scan_command=command)
    with pytest.raises(
        UploadRejected, match=r"^a\.pdf: the virus scanner rejected the file \(exit 1\): Eicar"
    ):
        store_upload(policy, "a.pdf", PDF_BYTES)
    assert files(policy.folder) == []


def test_a_scanner_that_times_out_rejects_the_file_and_is_stopped(tmp_path: Path) -> None:
    command = scanner(tmp_path, "time.sleep(60)")
    policy = UploadPolicy(folder=tmp_path / "uploads", scan_command=command, scan_timeout_seconds=0.5)
    with pytest.raises(UploadRejected, match=r"did not finish within 0\.5 seconds"):
        store_upload(policy, "a.pdf", PDF_BYTES)
    assert files(policy.folder) == []


def test_a_scanner_that_cannot_be_started_rejects_the_file(tmp_path: Path) -> None:
    policy = UploadPolicy(folder=tmp_path / "uploads", scan_command=(str(tmp_path / "no-such-scanner"),))
    with pytest.raises(UploadRejected, match="could not be started"):
        store_upload(policy, "a.pdf", PDF_BYTES)
