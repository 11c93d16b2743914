"""Every manifest in data_manifests/ validates; the synthetic ones match what their generator writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from medimg.cli import main
from medimg.manifests import load_manifest
from medimg.synthetic.datasets import (
    write_ct_segmentation_dataset,
    write_xray_classification_dataset,
)

FOLDER = Path(__file__).resolve().parents[1] / "data_manifests"
MANIFESTS = sorted(
    p for p in FOLDER.glob("*.json") if p.name != "schema.json" and p.stem.count(".") == 0
)
REALDATA = [p for p in MANIFESTS if p.name.startswith("realdata")]


def test_the_expected_manifests_are_there() -> None:
    assert [p.name for p in MANIFESTS] == [
        "realdata_ct.json",
        "realdata_mr.json",
        "synthetic_ct_seg.json",
        "synthetic_xray_cls.json",
    ]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_schema_of_every_committed_manifest(path: Path) -> None:
    assert load_manifest(path, check_files=False).schema_version == 1


@pytest.mark.realdata
@pytest.mark.parametrize("path", REALDATA, ids=lambda p: p.name)
def test_realdata_manifests_validate_fully(path: Path, realdata: Path) -> None:
    # the manifests reach ../shared/realdata relative to themselves; the fixture proves it exists
    if Path(os.path.normpath(FOLDER / "../../shared/realdata")).resolve() != realdata:
        pytest.skip(f"manifests point at ../shared/realdata, data is at {realdata}")
    assert main(["validate", str(path)]) == 0


@pytest.mark.parametrize(
    ("name", "write", "n_cases"),
    [
        ("synthetic_ct_seg.json", write_ct_segmentation_dataset, 10),
        ("synthetic_xray_cls.json", write_xray_classification_dataset, 20),
    ],
)
def test_generated_synthetic_set_validates_and_matches_the_committed_manifest(
    tmp_path: Path, name: str, write: object, n_cases: int
) -> None:
    manifest = write(tmp_path, n_cases, seed=0)  # type: ignore[operator]
    assert main(["validate", str(manifest)]) == 0
    committed = json.loads((FOLDER / name).read_text(encoding="utf-8"))
    assert json.loads(manifest.read_text(encoding="utf-8")) == committed
