"""A delivery package: the de-identified folder with a manifest (SHA-256 per file), sealed for the
project's recipient key, streamed in chunks (never the whole package in memory).

File layout (`*.dpkg`):

    b"DATENRAUM-PKG\\x01"  u32 header length  header (JSON)   then chunks: u32 length  ciphertext
    header: {"alg": "X25519-HKDF-SHA256/AES-256-GCM" | "RSA-OAEP-SHA256/AES-256-GCM",
             "epk" | "wrappedKey": base64, "noncePrefix": base64 (7 bytes), "chunk": bytes per chunk,
             "recipient": SHA-256 of the recipient's public key, "project", "site"}

The content is a tar stream of the folder, `package-manifest.json` first. Each chunk is AES-256-GCM
with the nonce `prefix || counter (u32) || last (u8)` and the SHA-256 of the header as associated data
(the STREAM construction): a changed, reordered, dropped or appended chunk, a cut-off end or a changed
header fails to decrypt, so tampering one byte is detected; then every file is checked against the
manifest. The AES key exists only in memory: wrapped by RSA-OAEP or agreed by X25519 (ephemeral key
+ HKDF) with the recipient's public key; the hub only ever holds the sealed file and its SHA-256.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "MANIFEST",
    "PackageError",
    "file_sha256",
    "new_recipient_key",
    "open_package",
    "seal",
    "verify_manifest",
    "write_manifest",
]

MAGIC = b"DATENRAUM-PKG\x01"
MANIFEST = "package-manifest.json"
CHUNK = 1 << 20
_BLOCK = 1 << 16


class PackageError(ValueError):
    pass


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(folder: Path | str, **about: Any) -> dict[str, Any]:
    folder = Path(folder)
    files = {
        str(p.relative_to(folder)): {"sha256": file_sha256(p), "bytes": p.stat().st_size}
        for p in _files(folder)
    }
    manifest = {**about, "files": files}
    (folder / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return manifest


def verify_manifest(folder: Path | str) -> list[str]:
    """Problems of a folder against its manifest (empty: every file there, unchanged, nothing else)."""
    folder = Path(folder)
    try:
        manifest = orjson.loads((folder / MANIFEST).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return [f"no readable {MANIFEST}"]
    problems = []
    listed = manifest.get("files", {})
    present = {str(p.relative_to(folder)) for p in _files(folder)}
    for name in sorted(present - set(listed)):
        problems.append(f"{name}: not in the manifest")
    for name, entry in sorted(listed.items()):
        if name not in present:
            problems.append(f"{name}: missing")
        elif file_sha256(folder / name) != entry["sha256"]:
            problems.append(f"{name}: SHA-256 differs from the manifest")
    return problems


# --- keys ---------------------------------------------------------------------------------------


def new_recipient_key(kind: str = "x25519") -> tuple[bytes, bytes]:
    """(private PEM, public PEM) of a new recipient key: X25519, or RSA-3072 for RSA-OAEP."""
    private: Any = (
        x25519.X25519PrivateKey.generate() if kind == "x25519" else rsa.generate_private_key(65537, 3072)
    )
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def _hkdf(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def _public_id(public: Any) -> str:
    raw = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(raw).hexdigest()


_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


# --- the stream ---------------------------------------------------------------------------------


class _SealWriter:
    """A file-like writer that encrypts what it gets in chunks and writes them to `out`."""

    def __init__(self, out: BinaryIO, key: bytes, prefix: bytes, aad: bytes, chunk: int) -> None:
        self.out, self.aead, self.prefix, self.aad, self.chunk = out, AESGCM(key), prefix, aad, chunk
        self.buffer = bytearray()
        self.counter = 0

    def write(self, data: bytes) -> int:
        self.buffer += data
        while len(self.buffer) > self.chunk:
            self._emit(bytes(self.buffer[: self.chunk]), last=False)
            del self.buffer[: self.chunk]
        return len(data)

    def _emit(self, plain: bytes, *, last: bool) -> None:
        nonce = self.prefix + struct.pack(">IB", self.counter, 1 if last else 0)
        sealed = self.aead.encrypt(nonce, plain, self.aad)
        self.out.write(struct.pack(">I", len(sealed)) + sealed)
        self.counter += 1

    def close(self) -> None:
        self._emit(bytes(self.buffer), last=True)
        self.buffer = bytearray()


class _OpenReader:
    """A file-like reader of the decrypted stream; raises PackageError on any tampering."""

    def __init__(self, source: BinaryIO, key: bytes, prefix: bytes, aad: bytes) -> None:
        self.source, self.aead, self.prefix, self.aad = source, AESGCM(key), prefix, aad
        self.buffer = b""
        self.counter = 0
        self.done = False

    def _next(self) -> None:
        head = self.source.read(4)
        if len(head) != 4:
            raise PackageError("the package ends early (cut off)")
        (length,) = struct.unpack(">I", head)
        sealed = self.source.read(length)
        if len(sealed) != length:
            raise PackageError("the package ends early (cut off)")
        for last in (0, 1):
            nonce = self.prefix + struct.pack(">IB", self.counter, last)
            try:
                self.buffer += self.aead.decrypt(nonce, sealed, self.aad)
            except InvalidTag:
                continue
            self.counter += 1
            if last:
                self.done = True
                if self.source.read(1):
                    raise PackageError("the package has data after its last chunk")
            return
        raise PackageError(
            f"chunk {self.counter} does not decrypt: the package was changed or is not for this key"
        )

    def read(self, size: int = -1) -> bytes:
        while (size < 0 or len(self.buffer) < size) and not self.done:
            self._next()
        if size < 0:
            size = len(self.buffer)
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out


def seal(
    folder: Path | str, out_file: Path | str, recipient_public_pem: bytes, *, chunk: int = CHUNK, **about: Any
) -> dict[str, Any]:
    """Write the manifest into `folder`, then the sealed package to `out_file`; returns
    {sha256, bytes, recipient, files} (the SHA-256 of the sealed file is what the hub checks)."""
    folder = Path(folder)
    if (folder / "reports/leak-gate.json").exists():
        verdict = orjson.loads((folder / "reports/leak-gate.json").read_bytes()).get("verdict")
        if verdict != "pass":
            raise PackageError("the leak gate blocked this folder: it cannot be sealed")
    else:
        raise PackageError("the folder has no leak-gate verdict: de-identify it first")
    manifest = write_manifest(folder, **about)
    public = serialization.load_pem_public_key(recipient_public_pem)
    key = AESGCM.generate_key(bit_length=256)
    header: dict[str, Any] = {"chunk": chunk, "recipient": _public_id(public), **about}
    if isinstance(public, x25519.X25519PublicKey):
        ephemeral = x25519.X25519PrivateKey.generate()
        epk = ephemeral.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        wrap = _hkdf(ephemeral.exchange(public), b"datenraum-pkg/v1" + epk)
        nonce = os.urandom(12)
        header |= {
            "alg": "X25519-HKDF-SHA256/AES-256-GCM",
            "epk": base64.b64encode(epk).decode(),
            "wrappedKey": base64.b64encode(nonce + AESGCM(wrap).encrypt(nonce, key, epk)).decode(),
        }
    elif isinstance(public, rsa.RSAPublicKey):
        header |= {
            "alg": "RSA-OAEP-SHA256/AES-256-GCM",
            "wrappedKey": base64.b64encode(public.encrypt(key, _OAEP)).decode(),
        }
    else:
        raise PackageError("the recipient key must be X25519 or RSA")
    prefix = os.urandom(7)
    header["noncePrefix"] = base64.b64encode(prefix).decode()
    header_bytes = orjson.dumps(header, option=orjson.OPT_SORT_KEYS)
    aad = hashlib.sha256(header_bytes).digest()
    out_file = Path(out_file)
    tmp = out_file.with_name(f".{out_file.name}.tmp")
    with open(tmp, "wb") as out:
        out.write(MAGIC + struct.pack(">I", len(header_bytes)) + header_bytes)
        writer = _SealWriter(out, key, prefix, aad, chunk)
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            tar.add(folder / MANIFEST, arcname=MANIFEST)
            for name in manifest["files"]:
                tar.add(folder / name, arcname=name)
        writer.close()
    os.replace(tmp, out_file)
    return {
        "sha256": file_sha256(out_file),
        "bytes": out_file.stat().st_size,
        "recipient": header["recipient"],
        "files": len(manifest["files"]),
    }


def read_header(handle: BinaryIO) -> tuple[dict[str, Any], bytes]:
    if handle.read(len(MAGIC)) != MAGIC:
        raise PackageError("not a Datenraum package")
    (length,) = struct.unpack(">I", handle.read(4))
    if length > 1 << 20:
        raise PackageError("the package header is too long")
    header_bytes = handle.read(length)
    try:
        return orjson.loads(header_bytes), header_bytes
    except orjson.JSONDecodeError:
        raise PackageError("the package header is not readable") from None


def _unwrap(header: dict[str, Any], private: Any) -> bytes:
    try:
        wrapped = base64.b64decode(header["wrappedKey"])
        if isinstance(private, x25519.X25519PrivateKey):
            epk = base64.b64decode(header["epk"])
            wrap = _hkdf(
                private.exchange(x25519.X25519PublicKey.from_public_bytes(epk)), b"datenraum-pkg/v1" + epk
            )
            return AESGCM(wrap).decrypt(wrapped[:12], wrapped[12:], epk)
        return private.decrypt(wrapped, _OAEP)
    except (KeyError, ValueError, InvalidTag):
        raise PackageError(
            "the package key does not open with this private key (changed, or not for it)"
        ) from None


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    for member in tar:
        name = Path(member.name)
        if not member.isfile() or name.is_absolute() or ".." in name.parts:
            raise PackageError(
                f"the package holds an entry that is not a plain file inside it: {member.name}"
            )
        yield member


def open_package(package: Path | str, private_pem: bytes, out_dir: Path | str) -> dict[str, Any]:
    """Decrypt and unpack `package` into `out_dir` (new or empty) and check every file against the
    manifest; raises PackageError on any change. Returns the manifest."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise PackageError(f"{out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    private = serialization.load_pem_private_key(private_pem, password=None)
    with open(package, "rb") as handle:
        header, header_bytes = read_header(handle)
        key = _unwrap(header, private)
        reader = _OpenReader(
            handle, key, base64.b64decode(header["noncePrefix"]), hashlib.sha256(header_bytes).digest()
        )
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                for member in _members(tar):
                    target = out / member.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    source = tar.extractfile(member)
                    assert source is not None
                    with open(target, "wb") as written:
                        while block := source.read(_BLOCK):
                            written.write(block)
            reader.read()
        except tarfile.TarError as error:
            raise PackageError(f"the package content is not readable: {error}") from None
        if not reader.done:
            raise PackageError("the package ends early (cut off)")
    problems = verify_manifest(out)
    if problems:
        raise PackageError("the package does not match its manifest: " + "; ".join(problems[:5]))
    return orjson.loads((out / MANIFEST).read_bytes())
