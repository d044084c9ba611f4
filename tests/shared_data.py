"""Where the shared reference data are: `../shared/data` beside the checkout, or DATENRAUM_SHARED_DATA."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The shared data lie beside the checkout (../shared/data), in CI as on a developer's machine.
SHARED_DATA = Path(
    os.environ.get("DATENRAUM_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)


def shared_data_folder(name: str) -> Path:
    """A folder of the shared reference data. Missing, it skips the test on a developer's machine and fails
    it in CI, where a skip would hide that the test ran on nothing."""
    folder = SHARED_DATA / name
    if not folder.is_dir():
        message = f"reference data {folder} is not available (set DATENRAUM_SHARED_DATA)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return folder
