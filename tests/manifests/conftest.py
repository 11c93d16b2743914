"""Fixtures for manifest tests: tiny on-disk datasets."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from manifest_helpers import write_pair


@pytest.fixture
def seg_dir(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """Folder with cases a, b (image + label) and the manifest record over them (not written)."""
    cases = []
    for case_id in ("a", "b"):
        image, label = write_pair(tmp_path, case_id)
        cases.append({"id": case_id, "image": image, "label": label})
    record = {
        "schema_version": 1,
        "name": "tiny",
        "channels": [{"name": "CT", "modality": "CT"}],
        "labels": [{"value": 0, "name": "background"}, {"value": 1, "name": "box"}],
        "training": cases,
    }
    return tmp_path, record


@pytest.fixture
def write_manifest() -> Callable[[Path, dict[str, Any]], Path]:
    def _write(folder: Path, record: dict[str, Any]) -> Path:
        path = folder / "dataset.json"
        path.write_text(json.dumps(record), encoding="utf-8")
        return path

    return _write
