"""Chest-CT detection phantoms: nodules where their boxes say, in range, among vessels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from medimg.cli import main
from medimg.errors import ConfigError
from medimg.io import load_volume, save_volume
from medimg.manifests import load_manifest
from medimg.manifests.boxes import box_grid_problems, world_to_voxel
from medimg.synthetic import (
    ChestSettings,
    Nodule,
    chest_ct_phantom,
    grid_affine,
    insert_nodules,
    write_ct_detection_dataset,
)
from medimg.synthetic.detection_datasets import chest_case_grid

QUIET = ChestSettings(vessels_per_lung=0, noise_hu=0.0)
SHAPE = (64, 40, 30)
SPACING_MM = (2.0, 2.0, 3.0)


def _blob_centroid(image: np.ndarray, near_vox: np.ndarray, half_vox: int = 5) -> np.ndarray:
    """Centroid (voxels) of the HU above lung (-850) in a window of +-`half_vox` around a voxel.

    The window (10 mm and more around a nodule of 8 to 10 mm) holds only lung and the nodule,
    so the centroid is the nodule's wherever it was drawn; a misplaced nodule shifts it.
    """
    lo = np.round(near_vox).astype(int) - half_vox
    assert (lo >= 0).all()
    window = image[tuple(slice(a, a + 2 * half_vox + 1) for a in lo)]
    return np.asarray(ndimage.center_of_mass(np.clip(window + 850.0, 0.0, None))) + lo


def test_a_nodule_on_an_lps_grid_lands_on_the_hand_worked_voxel(tmp_path: Path) -> None:
    # LPS, 64 x 40 x 30 at 2 x 2 x 3 mm, centred on the origin: columns (-2, 0, 0), (0, -2, 0),
    # (0, 0, 3); origin -(cols @ (31.5, 19.5, 14.5)) = (63, 39, -43.5). The nodule at RAS
    # (-41, 5, 4.5) (in the right lung, centred near (-42, 5, 0)) is at
    # i = (-41 - 63) / -2 = 52, j = (5 - 39) / -2 = 17, k = (4.5 + 43.5) / 3 = 16.
    affine = grid_affine(SHAPE, SPACING_MM, axcodes="LPS")
    nodule = Nodule((-41.0, 5.0, 4.5), 8.0)
    phantom = chest_ct_phantom(SHAPE, affine=affine, nodules=[nodule], settings=QUIET)
    path = save_volume(phantom.image.array, tmp_path / "ct.nii.gz", like=phantom.image)
    stored = load_volume(path)
    assert "".join(stored.axcodes) == "LPS"
    assert world_to_voxel(np.array([nodule.center_mm]), stored.affine).round(6).tolist() == [
        [52.0, 17.0, 16.0]
    ]
    found = _blob_centroid(stored.array[0], np.array([52.0, 17.0, 16.0]))
    assert np.abs(found - [52.0, 17.0, 16.0]).max() < 1.0, found


def test_a_nodule_on_an_oblique_lps_grid_is_where_its_box_centre_maps(tmp_path: Path) -> None:
    affine = grid_affine(SHAPE, SPACING_MM, axcodes="LPS", rotation_deg=(8.0, 0.0, 25.0))
    nodule = Nodule((45.0, 0.0, 25.0), 10.0)  # in the left lung, above the heart
    phantom = chest_ct_phantom(SHAPE, affine=affine, nodules=[nodule], settings=QUIET)
    stored = load_volume(save_volume(phantom.image.array, tmp_path / "o.nii.gz", like=affine))
    box = phantom.boxes()[0]
    assert box.size_mm == (10.0, 10.0, 10.0)
    expected = world_to_voxel(np.array([box.center_mm]), stored.affine)[0]
    found = _blob_centroid(stored.array[0], expected)
    assert np.abs(found - expected).max() < 1.0, (found, expected)
    # once reoriented to RAS the same world point is found at the RAS voxel
    ras = stored.to_ras()
    expected_ras = world_to_voxel(np.array([box.center_mm]), ras.affine)[0]
    assert np.abs(_blob_centroid(ras.array[0], expected_ras) - expected_ras).max() < 1.0


@pytest.mark.parametrize("seed", range(4))
def test_drawn_nodules_are_in_range_inside_a_lung_and_inside_the_grid(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape, affine = chest_case_grid(rng, seed)
    phantom = chest_ct_phantom(
        shape, affine=affine, seed=rng, settings=ChestSettings(n_nodules=3, vessels_per_lung=1)
    )
    assert len(phantom.nodules) == 3
    lungs = [phantom.structures["lung_right"], phantom.structures["lung_left"]]
    for nodule in phantom.nodules:
        assert 3.0 <= nodule.diameter_mm <= 30.0
        assert 10.0 <= nodule.hu <= 60.0  # solid: near soft tissue
        centre = np.array(nodule.center_mm).reshape(3, 1)
        assert any(lung.contains(centre)[0] for lung in lungs)
    assert box_grid_problems("case", phantom.boxes(), phantom.image.source, "ct") == []


def test_vessels_are_tube_distractors_in_the_lungs() -> None:
    affine = grid_affine(SHAPE, SPACING_MM, axcodes="RAS", rotation_deg=(0.0, 0.0, 10.0))
    quiet = ChestSettings(n_nodules=0, vessels_per_lung=4, noise_hu=0.0)
    phantom = chest_ct_phantom(SHAPE, affine=affine, seed=3, settings=quiet)
    without = chest_ct_phantom(
        SHAPE, affine=affine, seed=3, settings=ChestSettings(n_nodules=0, vessels_per_lung=0)
    )
    # 4 tubes per lung, each with one branch; every tube is longer than it is wide
    assert len(phantom.vessels) == 2 * 4 * 2
    assert without.vessels == ()
    assert all(v.length_mm > 4 * v.start_radius_mm for v in phantom.vessels)
    lungs = [phantom.structures["lung_right"], phantom.structures["lung_left"]]
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"))
    world = np.einsum("ij,j...->i...", affine[:3, :3], ijk) + affine[:3, 3].reshape(3, 1, 1, 1)
    in_lung = lungs[0].contains(world) | lungs[1].contains(world)
    in_lung &= ~phantom.structures["heart"].contains(world)
    bright = phantom.image.array[0] > -400.0
    assert (bright & in_lung).sum() > 20  # soft-tissue voxels inside the lungs: the vessels
    assert ((without.image.array[0] > -400.0) & in_lung).sum() == 0
    assert phantom.label.sum() == 0  # no nodule: vessels are not in the nodule mask


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"diameter_range_mm must be \(low, high\) with 0 < low"):
        ChestSettings(diameter_range_mm=(30.0, 3.0))
    with pytest.raises(ConfigError, match=r"n_nodules must be >= 0 or None, got -1"):
        ChestSettings(n_nodules=-1)
    with pytest.raises(ConfigError, match=r"vessels_per_lung and noise_hu must be >= 0"):
        ChestSettings(noise_hu=-1.0)


def test_the_dataset_has_three_splits_and_validates(tmp_path: Path) -> None:
    path = write_ct_detection_dataset(tmp_path / "d", 5, seed=0)
    assert main(["validate", str(path)]) == 0
    manifest = load_manifest(path)
    assert manifest.schema_version == 2
    assert manifest.task == "detection"
    assert [len(manifest.split(s)) for s in ("training", "validation", "test")] == [3, 1, 1]
    record = json.loads(path.read_text(encoding="utf-8"))
    axcodes = [c["metadata"]["axcodes"] for c in record["training"]]
    assert axcodes == ["RAS", "LPS", "RAS"]
    # case k does not depend on how many cases are drawn
    one = write_ct_detection_dataset(tmp_path / "one", 1, seed=0)
    assert json.loads(one.read_text())["training"][0] == record["training"][0]


def test_masks_give_a_segmentation_manifest_of_the_same_cases_and_nodules(tmp_path: Path) -> None:
    assert main(["synth", "ct-det", str(tmp_path), "--cases", "5", "--masks"]) == 0
    det = json.loads((tmp_path / "dataset.json").read_text(encoding="utf-8"))
    seg_path = tmp_path / "dataset_segmentation.json"
    assert main(["validate", str(seg_path)]) == 0
    seg = load_manifest(seg_path)
    assert seg.task == "segmentation"
    for split in ("training", "validation", "test"):
        assert [c.case_id for c in seg.split(split)] == [c["id"] for c in det.get(split, [])]
    # each box's world centre is the centre of mass of one mask component (within a voxel)
    for case in det["training"]:
        mask = load_volume(tmp_path / f"labelsTr/{case['id']}.nii.gz")
        components, n = ndimage.label(mask.array[0] > 0, structure=np.ones((3, 3, 3)))
        assert n == len(case["boxes"])
        centres = ndimage.center_of_mass(mask.array[0] > 0, components, range(1, n + 1))
        world = [mask.affine[:3, :3] @ np.asarray(c) + mask.affine[:3, 3] for c in centres]
        voxel = float(max(mask.spacing_mm))
        for box in case["boxes"]:
            assert min(np.linalg.norm(w - box["center_mm"]) for w in world) < voxel


def test_synth_ct_det_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["synth", "ct-det", str(tmp_path), "--cases", "1"]) == 0
    assert main(["synth", "ct-det", str(tmp_path), "--cases", "1"]) == 2
    assert "exists; pass overwrite=True (--force) to replace it" in capsys.readouterr().err


def test_a_background_without_lungs_is_refused() -> None:
    flat = chest_ct_phantom((20, 20, 10), (4.0, 4.0, 4.0), settings=QUIET).image
    soft = type(flat)(array=np.full_like(flat.array, 40.0), affine=flat.affine, source=flat.source)
    with pytest.raises(ConfigError, match=r"no lung region \(darker than -400 HU"):
        insert_nodules(soft, seed=0)


@pytest.mark.realdata
def test_nodules_go_into_the_lungs_of_the_real_ct(realdata: Path, tmp_path: Path) -> None:
    # TotalSegmentator's example CT (122 x 101 x 30 at 3 mm) shows the lung bases
    ct_path = realdata / "labelled" / "totalsegmentator" / "example_ct_sm.nii.gz"
    background = load_volume(ct_path)
    phantom = insert_nodules(background, seed=1, settings=ChestSettings(n_nodules=3))
    assert len(phantom.nodules) == 3
    for nodule in phantom.nodules:
        ijk = np.round(world_to_voxel(np.array([nodule.center_mm]), background.affine)[0])
        assert -950.0 <= background.array[0][tuple(ijk.astype(int))] <= -500.0  # was lung
        assert 3.0 <= nodule.diameter_mm <= 30.0
    assert box_grid_problems("c", phantom.boxes(), background.source, "ct") == []
    out = tmp_path / "real"
    argv = ["synth", "ct-det", str(out), "--cases", "2", "--background", str(ct_path)]
    assert main(argv) == 0
    assert main(["validate", str(out / "dataset.json")]) == 0
