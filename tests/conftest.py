"""Shared fixtures: the one way tests find the real third-party data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_DEFAULT_REALDATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    """Folder of the real third-party test data (``../shared/realdata`` or ``$MEDIMG_REALDATA``).

    Tests that use it are skipped, with the reason, when it is absent (a user's fresh clone).
    """
    root = Path(os.environ.get("MEDIMG_REALDATA", _DEFAULT_REALDATA)).resolve()
    if not (root / "README.md").is_file():
        pytest.skip(f"real test data not found at {root} (set MEDIMG_REALDATA to its folder)")
    return root
