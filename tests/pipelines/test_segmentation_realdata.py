"""The segmentation pipeline end to end on a real CT (TotalSegmentator's example, Apache-2.0).

A few training iterations on two labels (liver = 5, spleen = 1 in TotalSegmentator's map) show
that the pipeline runs on real scanner geometry and writes its prediction on the input's grid.
Learning is not the point here: the synthetic demo test checks Dice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from medimg.io import load_volume, save_volume
from medimg.training import TrainConfig
from pipelines.segmentation import SegmentationConfig, evaluate, predict, train

pytestmark = pytest.mark.realdata


def _manifest(realdata: Path, tmp_path: Path) -> Path:
    folder = realdata / "labelled" / "totalsegmentator"
    seg = load_volume(folder / "example_seg.nii.gz")
    two = np.zeros(seg.array.shape, dtype=np.uint8)
    two[seg.array == 5] = 1  # liver
    two[seg.array == 1] = 2  # spleen
    save_volume(two, tmp_path / "liver_spleen.nii.gz", like=seg)
    image = os.path.relpath(folder / "example_ct_sm.nii.gz", tmp_path)
    case = {"image": image, "label": "liver_spleen.nii.gz"}
    record = {
        "schema_version": 1,
        "name": "totalsegmentator_liver_spleen",
        "channels": [{"name": "CT", "modality": "CT"}],
        "labels": [
            {"value": 0, "name": "background"},
            {"value": 1, "name": "liver"},
            {"value": 2, "name": "spleen"},
        ],
        "allow_paths_outside_root": True,
        "training": [{"id": "ts_train", **case}],
        "validation": [{"id": "ts_val", **case}],
        "test": [{"id": "ts_test", **case}],
    }
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(record))
    return path


def test_real_ct_trains_and_predicts_on_the_input_grid(realdata: Path, tmp_path: Path) -> None:
    manifest = _manifest(realdata, tmp_path)
    cfg = SegmentationConfig(
        manifest=manifest,
        out_dir=tmp_path / "run",
        network="dynunet",
        base_features=4,
        roi_size_vox=(32, 32, 16),
        batch_size=2,
        samples_per_case=2,
        train=TrainConfig(max_epochs=2, learning_rate=1e-2, device="cpu"),
    )
    result = train(cfg)
    assert result.fit.epochs_run == 2
    (case,) = predict(cfg).cases
    assert case.status == "written"
    image = load_volume(realdata / "labelled/totalsegmentator/example_ct_sm.nii.gz")
    prediction = load_volume(case.path)
    assert prediction.spatial_shape == image.spatial_shape == (122, 101, 30)
    np.testing.assert_allclose(prediction.affine, image.affine, atol=1e-5)
    assert set(np.unique(prediction.array)) <= {0, 1, 2}
    scores = evaluate(cfg)
    assert {s.name for s in scores.cases[0].labels} == {"liver", "spleen"}
