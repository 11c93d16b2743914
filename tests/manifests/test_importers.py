"""MSD and nnU-Net v2 dataset.json files load directly and convert with one command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from medimg.errors import ManifestError
from medimg.manifests import load_manifest
from medimg.manifests.importers import convert_dataset_json, write_converted_manifest
from medimg.modality import Modality


def msd_record() -> dict[str, Any]:
    return {
        "name": "Task99_Tiny",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "box"},
        "numTraining": 2,
        "training": [
            {"image": "./images/a.nii.gz", "label": "./labels/a.nii.gz"},
            {"image": "./images/b.nii.gz", "label": "./labels/b.nii.gz"},
        ],
        "test": ["./images/c.nii.gz"],
    }


def test_msd_dataset_json_loads_directly(seg_dir: tuple[Path, dict[str, Any]]) -> None:
    root, _ = seg_dir
    shutil.copy(root / "images" / "a.nii.gz", root / "images" / "c.nii.gz")
    (root / "dataset.json").write_text(json.dumps(msd_record()), encoding="utf-8")
    manifest = load_manifest(root / "dataset.json")  # files checked too
    assert [c.case_id for _, _, c in manifest.cases()] == ["a", "b", "c"]
    assert manifest.training[0].label == "labels/a.nii.gz"
    assert manifest.channels[0].modality is Modality.CT
    assert [(d.value, d.name) for d in manifest.labels or ()] == [(0, "background"), (1, "box")]


def test_nnunet_v2_folders_load_directly(seg_dir: tuple[Path, dict[str, Any]]) -> None:
    root, _ = seg_dir
    for folder, case in (("imagesTr", "a"), ("imagesTr", "b"), ("imagesTs", "c")):
        (root / folder).mkdir(exist_ok=True)
        shutil.copy(
            root / "images" / f"{case if case != 'c' else 'a'}.nii.gz",
            root / folder / f"{case}_0000.nii.gz",
        )
    shutil.copytree(root / "labels", root / "labelsTr")
    record = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "box": 1},
        "numTraining": 2,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(record), encoding="utf-8")
    manifest = load_manifest(root / "dataset.json")
    assert manifest.training[1].images == ("imagesTr/b_0000.nii.gz",)
    assert manifest.training[1].label == "labelsTr/b.nii.gz"
    assert manifest.split("test")[0].case_id == "c"


def test_unconvertible_parts_are_all_reported(tmp_path: Path) -> None:
    record = {
        "channel_names": {"0": "zscore", "1": "T2"},
        "labels": {"background": 0, "whole": [1, 2]},
        "numTraining": 0,
    }
    with pytest.raises(ManifestError) as info:
        convert_dataset_json(record, tmp_path / "dataset.json")
    assert info.value.problems[0].startswith(
        "channel_names.0: 'zscore' names no modality medimg knows (known: "
    )
    assert info.value.problems[0].endswith("; pass the modality (--modality CT|MR|XR)")
    assert info.value.problems[1:] == (
        "labels.whole: region-based label [1, 2] is not supported; list plain integer labels only",
        "file_ending: must be a suffix like '.nii.gz', got None",
    )
    with pytest.raises(ManifestError, match=r"neither an MSD dataset.json \(no 'modality'\)"):
        convert_dataset_json({"name": "x"}, tmp_path / "dataset.json")


def test_modality_override_and_explicit_nnunet_dataset(tmp_path: Path) -> None:
    record = {
        "channel_names": {"0": "zscore"},
        "labels": {"background": 0},
        "dataset": {"p1": {"images": ["x/p1.nii.gz"], "label": "y/p1.nii.gz"}},
    }
    out = convert_dataset_json(record, tmp_path / "dataset.json", modality=Modality.MR)
    assert out["channels"] == [{"name": "zscore", "modality": "MR"}]
    assert out["training"] == [{"id": "p1", "image": "x/p1.nii.gz", "label": "y/p1.nii.gz"}]


def test_import_command_rewrites_paths(
    seg_dir: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    from medimg.cli import main

    root, _ = seg_dir
    record = msd_record()
    del record["test"]
    source = root / "msd" / "dataset.json"
    source.parent.mkdir()
    source.write_text(
        json.dumps(record).replace("./images", "../images").replace("./labels", "../labels")
    )
    out = root / "converted" / "m.json"
    assert main(["manifest", "import", str(source), "-o", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["training"][0]["image"] == "../images/a.nii.gz"
    assert written["allow_paths_outside_root"] is True
    assert load_manifest(out).name == "Task99_Tiny"
    assert main(["manifest", "import", str(source), "-o", str(out)]) == 2  # exists, no --force
    with pytest.raises(ManifestError, match=r"training: must list at least one case"):
        write_converted_manifest(
            _write(root / "empty.json", {**record, "training": []}), root / "e.json"
        )


def _write(path: Path, record: dict[str, Any]) -> Path:
    path.write_text(json.dumps(record), encoding="utf-8")
    return path
