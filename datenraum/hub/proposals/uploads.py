"""Documents uploaded to proposals: checked, scanned and stored so that no upload can harm the hub.

- The type is what the content is (its magic bytes), never what the name or the browser claims: a
  renamed executable is refused however it is called.
- The name a user gave is only ever shown and offered back for download, after sanitising; the file is
  stored under the SHA-256 of its content, so no name can choose where it lands, and the same document
  uploaded twice is kept once.
- A file is written beside its final place, scanned there (if a scanner is configured) and only then
  renamed into place: a reader never sees a half-written or an unscanned file. The scanner fails closed:
  a non-zero exit, a crash or a timeout all reject the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import signal
import subprocess
import tempfile
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

from datenraum.hub.errors import Invalid

__all__ = [
    "MEDIA_TYPES",
    "StoredFile",
    "UploadPolicy",
    "UploadRejected",
    "detect_media_type",
    "read_stored",
    "sanitise_file_name",
    "store_upload",
]

PDF = "application/pdf"
PNG = "image/png"
JPEG = "image/jpeg"
TEXT = "text/plain"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
ODT = "application/vnd.oasis.opendocument.text"
MEDIA_TYPES = frozenset({PDF, PNG, JPEG, TEXT, DOCX, ODT})

_SIGNATURES = ((b"%PDF-", PDF), (b"\x89PNG\r\n\x1a\n", PNG), (b"\xff\xd8\xff", JPEG))
_ZIP = b"PK\x03\x04"
_DOCX_MAIN = b"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
_MAX_MANIFEST = 1024 * 1024  # a [Content_Types].xml larger than this is no document of ours
_TEXT_CONTROLS = frozenset("\t\n\r\f")

# Windows refuses these as file names whatever the extension; a user downloading one would be stuck.
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", *(f"COM{n}" for n in range(1, 10)), *(f"LPT{n}" for n in range(1, 10))}
)
_WINDOWS_FORBIDDEN = re.compile(r'[<>:"|?*]')
# Control, format (bidi overrides, zero-width characters), surrogate, private and unassigned characters,
# and line/paragraph separators: none belongs in a name, and several make one look like another.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
MAX_NAME_BYTES = 200
_FALLBACK_NAME = "document"


class UploadRejected(Invalid):
    """An upload that is not stored; the text names the file and the rule it broke."""


@dataclass(frozen=True)
class UploadPolicy:
    folder: Path
    max_bytes: int = 20 * 1024 * 1024
    allowed_types: frozenset[str] = MEDIA_TYPES
    scan_command: tuple[str, ...] = ()  # run with the file's path appended; empty: no scanning
    scan_timeout_seconds: float = 60.0


@dataclass(frozen=True)
class StoredFile:
    storage_id: str  # the content's SHA-256, hex
    file_name: str  # sanitised
    media_type: str
    size: int


def sanitise_file_name(name: str) -> str:
    """A name safe to show and to offer for download on any system, kept as close to the original as that
    allows; it is never used as a path."""
    name = unicodedata.normalize("NFKC", name)  # fullwidth solidus and friends become what they look like
    name = "".join(char for char in name if unicodedata.category(char) not in _INVISIBLE_CATEGORIES)
    name = re.split(r"[/\\]", name)[-1]  # some browsers send the whole client-side path
    name = _WINDOWS_FORBIDDEN.sub("_", name).strip(" .")  # leading dots: `..`, hidden files
    if name.split(".")[0].strip().upper() in _WINDOWS_RESERVED:
        name = f"_{name}"
    if len(name.encode()) > MAX_NAME_BYTES:
        stem, dot, extension = name.rpartition(".")
        if not dot or len(extension) > 16:
            stem, extension = name, ""
        suffix = f".{extension}" if extension else ""
        budget = MAX_NAME_BYTES - len(suffix.encode())
        stem = stem.encode()[:budget].decode(errors="ignore").rstrip(" .")
        name = stem + suffix
    return name or _FALLBACK_NAME


def detect_media_type(content: bytes) -> str | None:
    """The type of `content` by what it is, or None for anything we do not accept."""
    for signature, media_type in _SIGNATURES:
        if content.startswith(signature):
            return media_type
    if content.startswith(_ZIP):
        return _office_type(content)
    return TEXT if _is_plain_text(content) else None


def _office_type(content: bytes) -> str | None:
    """DOCX or ODT, which are zip files told apart by a member; any other zip is refused."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            members = {info.filename: info for info in archive.infolist()}
            # ODF requires `mimetype` to be the first member, stored uncompressed, holding the type.
            first = archive.infolist()[0] if members else None
            if (
                first is not None
                and first.filename == "mimetype"
                and first.file_size <= 100
                and archive.read(first).strip() == ODT.encode()
            ):
                return ODT
            manifest = members.get("[Content_Types].xml")
            if (
                manifest is not None
                and manifest.file_size <= _MAX_MANIFEST
                and "word/document.xml" in members
                and _DOCX_MAIN in archive.read(manifest)
            ):
                return DOCX
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, ValueError):
        return None
    return None


def _is_plain_text(content: bytes) -> bool:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(char in _TEXT_CONTROLS or unicodedata.category(char) != "Cc" for char in text)


def store_upload(policy: UploadPolicy, file_name: str, content: bytes) -> StoredFile:
    """Check, scan and store one upload; raises UploadRejected (and stores nothing) when it breaks a rule."""
    shown = sanitise_file_name(file_name)
    if len(content) > policy.max_bytes:
        raise UploadRejected(
            f"{shown}: {len(content)} bytes is more than the limit of {policy.max_bytes} bytes"
        )
    if not content:
        raise UploadRejected(f"{shown}: the file is empty")
    media_type = detect_media_type(content)
    if media_type is None or media_type not in policy.allowed_types:
        allowed = ", ".join(sorted(policy.allowed_types))
        raise UploadRejected(f"{shown}: the content is not one of the accepted types ({allowed})")
    storage_id = hashlib.sha256(content).hexdigest()
    final = _path(policy, storage_id)
    final.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=final.parent, prefix=".incoming-")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        if policy.scan_command:
            _scan(policy, Path(temporary), shown)
        os.replace(temporary, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return StoredFile(storage_id, shown, media_type, len(content))


def read_stored(policy: UploadPolicy, storage_id: str) -> bytes:
    if not re.fullmatch(r"[0-9a-f]{64}", storage_id):
        raise ValueError(f"storage id {storage_id!r}: not a SHA-256")
    return _path(policy, storage_id).read_bytes()


def _path(policy: UploadPolicy, storage_id: str) -> Path:
    return policy.folder / storage_id[:2] / storage_id


def _scan(policy: UploadPolicy, path: Path, shown: str) -> None:
    """Run the scanner in its own process group, so that a timeout ends it and everything it started."""
    try:
        process = subprocess.Popen(
            [*policy.scan_command, str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as error:
        raise UploadRejected(f"{shown}: the virus scanner could not be started ({error.strerror})") from None
    try:
        output, _ = process.communicate(timeout=policy.scan_timeout_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise UploadRejected(
            f"{shown}: the virus scanner did not finish within {policy.scan_timeout_seconds:g} seconds"
        ) from None
    if process.returncode != 0:
        said = output.decode(errors="replace").strip().splitlines()
        detail = f": {said[0][:200]}" if said else ""
        raise UploadRejected(
            f"{shown}: the virus scanner rejected the file (exit {process.returncode}){detail}"
        )
