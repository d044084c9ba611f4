"""The vendored form renderer is package data: found through importlib.resources, served by name only."""

from __future__ import annotations

import re

import pytest

from datenraum.studies import lforms


def test_every_file_a_page_loads_is_package_data() -> None:
    for name in (*lforms.STYLES, *lforms.SCRIPTS):
        assert name in lforms.names()
        assert len(lforms.asset(name)) > 10_000, name


def test_the_images_the_stylesheet_references_are_vendored_beside_it() -> None:
    css = lforms.asset("webcomponent/styles.css").decode()
    for image in re.findall(r"url\(([^)]+)\)", css):
        assert f"webcomponent/{image}" in lforms.names()


def test_the_licence_and_the_readme_state_the_vendored_version() -> None:
    readme = lforms.asset("README.md").decode()
    assert f"lforms` {lforms.LFORMS_VERSION}" in readme
    assert "LHNCBC" in lforms.asset("LICENSE.md").decode()
    assert f'lformsVersion="{lforms.LFORMS_VERSION}"' in lforms.asset("webcomponent/lhc-forms.js").decode()


@pytest.mark.parametrize(
    "name", ["../lforms.py", "webcomponent/../../../__init__.py", "/etc/passwd", "webcomponent", ""]
)
def test_a_name_outside_the_vendored_files_is_refused(name: str) -> None:
    with pytest.raises(lforms.UnknownAsset):
        lforms.asset(name)


def test_media_types_are_the_ones_browsers_need() -> None:
    assert lforms.media_type("webcomponent/lhc-forms.js").startswith("text/javascript")
    assert lforms.media_type("webcomponent/styles.css").startswith("text/css")
    assert lforms.media_type("webcomponent/magnifying_glass.png") == "image/png"
