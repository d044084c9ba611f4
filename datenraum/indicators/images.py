"""Charts as images: SVG and PDF from the same Vega-Lite spec the page renders in the browser, for the
weekly report, e-mail and downloads. vl-convert runs Vega in an embedded engine (no browser, no network:
the specs inline their data); it is imported on first use, because it takes a while to load and the hub
starts without it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["IMAGE_FORMATS", "VEGA_LITE_VERSION", "render_chart"]

IMAGE_FORMATS = ("svg", "pdf")
#: The Vega-Lite version of vl-convert's bundle nearest to the vendored one (6.5.0), same major version.
VEGA_LITE_VERSION = "6.4"


def render_chart(spec: dict[str, Any], image_format: str) -> bytes:
    """The chart of `spec` as SVG (UTF-8) or PDF bytes."""
    import vl_convert

    if image_format == "svg":
        return vl_convert.vegalite_to_svg(spec, vl_version=VEGA_LITE_VERSION).encode()
    if image_format == "pdf":
        return vl_convert.vegalite_to_pdf(spec, vl_version=VEGA_LITE_VERSION)
    raise ValueError(f"image format {image_format!r}: expected one of {', '.join(IMAGE_FORMATS)}")
