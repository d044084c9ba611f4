"""The vendored form renderer (npm `lforms`, see `assets/lforms/README.md`) as package data.

The hub portal and the site EDC both serve these files, so both use `asset` (which refuses any name that is
not one of the vendored files) and put the same `STYLES` into the page's head and `SCRIPTS` at the end of
its body, in this order: zone.js before the web component, the FHIR support after it. At the end of the
body because the web component appends its screen-reader log to `document.body` while it loads.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

LFORMS_VERSION = "40.1.3"

STYLES: tuple[str, ...] = ("webcomponent/styles.css",)
SCRIPTS: tuple[str, ...] = (
    "webcomponent/assets/lib/zone.min.js",
    "webcomponent/lhc-forms.js",
    "fhir/R4/lformsFHIR.min.js",
)

_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".md": "text/markdown; charset=utf-8",
}


class UnknownAsset(LookupError):
    """A name that is not one of the vendored lforms files."""


def folder() -> Traversable:
    """The folder of the vendored files (inside the installed package)."""
    return files("datenraum.studies").joinpath("assets", "lforms")


def names() -> tuple[str, ...]:
    """Every vendored file, as a '/'-separated name relative to `folder()`."""
    found: list[str] = []

    def walk(node: Traversable, prefix: str) -> None:
        for child in node.iterdir():
            name = f"{prefix}{child.name}"
            if child.is_dir():
                walk(child, name + "/")
            else:
                found.append(name)

    walk(folder(), "")
    return tuple(sorted(found))


def media_type(name: str) -> str:
    """The Content-Type a server sends the file `name` with."""
    suffix = name[name.rfind(".") :] if "." in name else ""
    return _MEDIA_TYPES.get(suffix, "application/octet-stream")


def asset(name: str) -> bytes:
    """The bytes of one vendored file. Only the listed names are served, so a request path such as
    `../../hub/config.py` cannot read anything else of the package."""
    if name not in names():
        raise UnknownAsset(f"no lforms file {name!r}")
    node = folder()
    for part in name.split("/"):
        node = node.joinpath(part)
    return node.read_bytes()
