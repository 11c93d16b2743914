"""The detection task: boxes world mm -> chain grid -> world mm and stored voxels, exactly.

Grids are oblique (rotated 8 deg about z, 4 about x), anisotropic and LPS-stored, so an axis
swap, a missed flip or a missed rotation moves a box by many voxels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medimg.errors import CaseError, ConfigError
from medimg.io import save_volume
from medimg.keys import Keys
from medimg.manifests import Box, ResolvedCase
from medimg.manifests.boxes import world_to_voxel
from medimg.networks import Detections, DetectorConfig
from medimg.synthetic.phantoms import grid_affine
from medimg.tasks import TASKS, task_for
from medimg.tasks._detection_boxes import boxes_to_grid, map_boxes, world_centre_size
from medimg.tasks._detection_predict import case_document
from medimg.tasks._detection_report import findings_of
from medimg.tasks._detection_train import crop, load_detector, pack, unpack
from medimg.tasks.detection import (
    DetectionConfig,
    DetectionEvaluateOptions,
    DetectionPredictOptions,
)
from medimg.training import apply_chain
from medimg.transforms import PreprocessConfig, preprocessing_for

SHAPE = (40, 36, 20)
SPACING = (1.5, 1.7, 3.0)
AFFINE = grid_affine(SHAPE, SPACING, axcodes="LPS", rotation_deg=(4.0, 0.0, 8.0))
CENTRE_MM = (7.3, -5.1, 4.4)  # near the world origin, where the grid is centred
DIAMETER_MM = 9.0


def _nodule_image(path: Path) -> Path:
    """An LPS-stored oblique image: -900 HU with a 40 HU sphere of DIAMETER_MM at CENTRE_MM."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"), -1)
    world = idx @ AFFINE[:3, :3].T + AFFINE[:3, 3]
    inside = np.linalg.norm(world - np.array(CENTRE_MM), axis=-1) < DIAMETER_MM / 2
    image = np.where(inside, 40.0, -900.0).astype(np.float32)
    return save_volume(image[None], path, like=AFFINE)


def _box() -> Box:
    return Box(center_mm=CENTRE_MM, size_mm=(DIAMETER_MM,) * 3, class_name="nodule")


def test_task_is_registered() -> None:
    assert task_for("detection") is TASKS["detection"]
    assert TASKS["detection"].metric == "CPM"


def test_world_box_through_the_chain_and_back_is_the_same_box(tmp_path: Path) -> None:
    # a fake detector output: exactly the truth's box on the chain grid, scored 0.9
    image = _nodule_image(tmp_path / "lps.nii.gz")
    chain = preprocessing_for("CT", PreprocessConfig(target_spacing_mm=(2.0, 2.0, 2.0),
                                                     hu_window="lung"))  # fmt: skip
    sample = apply_chain(chain, {Keys.IMAGE.value: str(image)})
    record = sample[Keys.RECORD]
    boxes, labels = boxes_to_grid([_box()], ["nodule"], record.grid_affine)
    # a sphere of radius 4.5 mm is 2.25 voxels of 2 mm on any (rotated) grid
    np.testing.assert_allclose(boxes[0, 3:] - boxes[0, :3], [4.5, 4.5, 4.5], atol=1e-4)
    # the chain grid's box centre is on the sphere drawn in the preprocessed image
    centre = np.round((boxes[0, :3] + boxes[0, 3:]) / 2).astype(int)
    assert float(np.asarray(sample[Keys.IMAGE.value])[(0, *centre)]) > 0.7  # 40 HU in lung window
    found = Detections(boxes, np.array([0.9], np.float32), labels)
    doc = case_document("c0", found, record, {0: "nodule"}, 0.0)
    (written,) = doc["boxes"]
    np.testing.assert_allclose(written["center_mm"], CENTRE_MM, atol=1e-3)
    np.testing.assert_allclose(written["size_mm"], [DIAMETER_MM] * 3, atol=1e-3)
    # stored-grid voxels: the world centre through the stored (LPS) affine; size = d / spacing
    expected = world_to_voxel(np.array([CENTRE_MM]), AFFINE)[0]
    np.testing.assert_allclose(written["center_vox"], expected, atol=1e-3)
    np.testing.assert_allclose(written["size_vox"], np.divide(DIAMETER_MM, SPACING), atol=1e-3)
    assert doc["stored_grid"]["shape"] == list(SHAPE)
    assert written["class"] == "nodule"
    assert written["score"] == pytest.approx(0.9)


def test_min_score_drops_weak_boxes(tmp_path: Path) -> None:
    chain = preprocessing_for("CT", PreprocessConfig(target_spacing_mm=(2.0, 2.0, 2.0),
                                                     hu_window="lung"))  # fmt: skip
    record = apply_chain(chain, {Keys.IMAGE.value: str(_nodule_image(tmp_path / "a.nii.gz"))})[
        Keys.RECORD
    ]
    boxes = np.array([[1, 1, 1, 3, 3, 3], [4, 4, 4, 6, 6, 6]], np.float32)
    found = Detections(boxes, np.array([0.8, 0.1], np.float32), np.array([0, 0]))
    assert len(case_document("c", found, record, {0: "n"}, 0.5)["boxes"]) == 1


@settings(max_examples=60, deadline=None)
@given(
    rot=st.tuples(*[st.floats(-30, 30)] * 3),
    spacing=st.tuples(*[st.floats(0.5, 4.0)] * 3),
    radius=st.floats(0.5, 20.0),
)
def test_a_sphere_maps_exactly_both_ways(
    rot: tuple[float, float, float], spacing: tuple[float, float, float], radius: float
) -> None:
    affine = grid_affine((10, 10, 10), spacing, axcodes="LPS", rotation_deg=rot)
    box = Box(center_mm=(1.0, -2.0, 3.0), size_mm=(2 * radius,) * 3, class_name="n")
    vox, _ = boxes_to_grid([box], ["n"], affine)
    np.testing.assert_allclose(vox[0, 3:] - vox[0, :3], np.multiply(2 * radius, 1 / np.array(spacing)),
                               rtol=1e-4)  # fmt: skip
    centre, size = world_centre_size(vox, affine)
    np.testing.assert_allclose(centre[0], box.center_mm, atol=1e-3)
    np.testing.assert_allclose(size[0], box.size_mm, rtol=1e-4)


def test_map_boxes_of_a_flip_and_scale_is_exact_for_any_box() -> None:
    # x flipped about voxel 9 with 2 mm voxels: box [1, 3] -> [2*(9-3), 2*(9-1)] = [12, 16]
    m = np.diag([-2.0, 1.0, 1.0, 1.0])
    m[0, 3] = 18.0
    out = map_boxes(np.array([[1.0, 0.0, 0.0, 3.0, 5.0, 1.0]]), m)
    assert out.tolist() == [[12.0, 0.0, 0.0, 16.0, 5.0, 1.0]]


def test_pack_and_unpack_keep_each_images_boxes() -> None:
    boxes = [np.array([[0, 0, 0, 2, 2, 2]], np.float32), np.zeros((0, 6), np.float32)]
    labels = [np.array([1]), np.zeros(0, np.int64)]
    packed = pack(boxes, labels)
    assert tuple(packed.shape) == (2, 1, 7)
    got_boxes, got_labels = unpack(packed)
    assert got_boxes[0].tolist() == [[0, 0, 0, 2, 2, 2]]
    assert got_labels[0].tolist() == [1]
    assert got_boxes[1].shape == (0, 6)


def test_a_crop_shifts_the_boxes_it_keeps() -> None:
    import torch

    image = torch.zeros((1, 20, 20, 20))
    boxes = np.array([[10, 10, 10, 14, 14, 14]], np.float32)
    sample = {Keys.IMAGE.value: image, "boxes": boxes, "labels": np.array([0])}
    for seed in range(6):
        patch, kept, _ = crop(sample, (8, 8, 8), np.random.default_rng(seed))
        assert tuple(patch.shape) == (1, 8, 8, 8)
        if len(kept):  # the centre (12, 12, 12) is inside the crop, shifted by its start
            centre = (kept[0, :3] + kept[0, 3:]) / 2
            assert np.all((centre >= 0) & (centre <= 7))


def test_findings_read_world_boxes_and_classes(tmp_path: Path) -> None:
    case = ResolvedCase(split="test", case_id="c", images=(tmp_path / "x.nii.gz",), boxes=(_box(),))
    doc = {"boxes": [{"center_mm": list(CENTRE_MM), "size_mm": [9, 9, 9], "score": 0.7,
                      "class": "nodule"}]}  # fmt: skip
    scan = findings_of(case, ["nodule"], doc, tmp_path / "c.json")
    assert scan.lesions[0].diameter_mm == DIAMETER_MM
    assert scan.detections[0].center_mm == pytest.approx(CENTRE_MM)
    with pytest.raises(CaseError, match=r"c\.json boxes\[0\] must have center_mm"):
        findings_of(case, ["nodule"], {"boxes": [{"class": "mass"}]}, tmp_path / "c.json")


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="patch_size_vox must be 3 positive multiples of"):
        DetectionConfig(manifest=Path("m.json"), out_dir=Path("o"), patch_size_vox=(30, 32, 32))
    with pytest.raises(ConfigError, match=r"min_score must be in \[0, 1\], got 2"):
        DetectionPredictOptions(min_score=2)
    with pytest.raises(ConfigError, match=r"iou_threshold must be in \(0, 1\], got 0"):
        DetectionEvaluateOptions(iou_threshold=0)
    from medimg.transforms import AugmentConfig

    with pytest.raises(ConfigError, match="augment must be None for detection"):
        DetectionConfig(manifest=Path("m.json"), out_dir=Path("o"), augment=AugmentConfig())
    cfg = DetectionConfig(manifest=Path("m.json"), out_dir=Path("o"), detector=DetectorConfig())
    assert cfg.model_dir == Path("o/model")
    assert cfg.predictions_dir == Path("o/predictions")


def test_a_segmentation_model_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text(json.dumps({
        "network": {"name": "unet"}, "preprocess": {}, "modality": "CT", "outputs": {},
        "checkpoint": "best.pt", "checkpoint_sha256": "0" * 64, "fingerprint": None,
    }))  # fmt: skip
    with pytest.raises(ConfigError, match="must be a detection model, got a 'unet' network"):
        load_detector(tmp_path)
    with pytest.raises(ConfigError, match=r"must hold model\.json, got none"):
        load_detector(tmp_path / "nothing")


def test_the_task_loads_its_model_through_the_detector_loader(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"must hold model\.json, got none"):
        TASKS["detection"].load_model(tmp_path / "nothing")
