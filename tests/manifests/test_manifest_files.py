"""Content-layer problems: files, headers, grids, channels, 2D/3D, label values, DICOM folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from manifest_helpers import AFFINE, SHAPE

from medimg.errors import ManifestError
from medimg.io import save_volume
from medimg.manifests import Tolerances, load_manifest
from medimg.synthetic import xray_phantom

Writer = Callable[[Path, dict[str, Any]], Path]


def problems(path: Path, **kwargs: Any) -> tuple[str, ...]:
    with pytest.raises(ManifestError) as info:
        load_manifest(path, **kwargs)
    return info.value.problems


def test_clean_dataset_validates(
    seg_dir: tuple[Path, dict[str, Any]], write_manifest: Writer
) -> None:
    root, record = seg_dir
    manifest = load_manifest(write_manifest(root, record))
    assert len(manifest.training) == 2


def test_missing_and_unreadable_files(
    seg_dir: tuple[Path, dict[str, Any]], write_manifest: Writer
) -> None:
    root, record = seg_dir
    record["training"][0]["image"] = "images/zz.nii.gz"
    (root / "labels" / "b.nii.gz").write_bytes(b"not a nifti")
    found = problems(write_manifest(root, record))
    assert found[0] == (
        f"training[0].image: file not found: images/zz.nii.gz (resolved: {root}/images/zz.nii.gz)"
        "; fix the path"
    )
    assert found[1].startswith("training[1].label: cannot read labels/b.nii.gz: ")
    assert len(found) == 2


def test_label_grid_shifted_by_half_a_millimetre(
    seg_dir: tuple[Path, dict[str, Any]], write_manifest: Writer
) -> None:
    root, record = seg_dir
    shifted = AFFINE.copy()
    shifted[0, 3] += 0.3
    shifted[1, 3] += 0.4  # every corner moves by sqrt(0.3**2 + 0.4**2) = 0.5 mm
    save_volume(
        np.zeros((1, *SHAPE), np.uint8), root / "labels" / "a.nii.gz", like=shifted, overwrite=True
    )
    path = write_manifest(root, record)
    assert problems(path) == (
        "training[0].label: grid differs from training[0].image by 0.5 mm (tolerance 0.001 mm); "
        "resample it onto the image grid or fix its affine",
    )
    assert load_manifest(path, tolerances=Tolerances(grid_mm=0.6)).name == "tiny"


def test_label_shape_differs(seg_dir: tuple[Path, dict[str, Any]], write_manifest: Writer) -> None:
    root, record = seg_dir
    save_volume(
        np.zeros((1, 12, 10, 7), np.uint8),
        root / "labels" / "b.nii.gz",
        like=AFFINE,
        overwrite=True,
    )
    assert problems(write_manifest(root, record)) == (
        "training[1].label: grid shape (12, 10, 7) differs from training[1].image shape "
        "(12, 10, 8); resample it onto the image grid",
    )


def test_undeclared_and_non_integer_label_values(
    seg_dir: tuple[Path, dict[str, Any]], write_manifest: Writer
) -> None:
    root, record = seg_dir
    labels = np.zeros((1, *SHAPE), np.float32)
    labels[0, 0, 0, 0], labels[0, 1, 0, 0] = 7, 3
    save_volume(labels.astype(np.uint8), root / "labels" / "a.nii.gz", like=AFFINE, overwrite=True)
    labels[0, 2, 0, 0] = 0.5
    save_volume(labels, root / "labels" / "b.nii.gz", like=AFFINE, overwrite=True)
    path = write_manifest(root, record)
    assert problems(path) == (
        "training[0].label: holds undeclared label value(s) [3, 7] (declared: [0, 1]); add them "
        "to 'labels' or fix the label map",
        "training[1].label: holds non-integer values; label maps must hold integers",
    )
    assert load_manifest(path, tolerances=Tolerances(check_label_values=False)).name == "tiny"


def test_channel_count_mismatch(
    seg_dir: tuple[Path, dict[str, Any]], write_manifest: Writer
) -> None:
    root, record = seg_dir
    save_volume(np.zeros((2, *SHAPE), np.float32), root / "images" / "two.nii.gz", like=AFFINE)
    record["training"][0]["image"] = "images/two.nii.gz"
    record["channels"].append({"name": "PET-like", "modality": "CT"})
    record["training"][1]["image"] = ["images/two.nii.gz", "images/b.nii.gz"]
    found = problems(write_manifest(root, record))
    assert found == (
        "channels: 2 channels declared, but training and prediction in this version of medimg "
        "read one single-channel image per case (multi-channel input is not implemented yet); "
        "keep one channel, or train elsewhere",
        "training[1].image[0]: holds 2 channels, expected 1 (channel 'CT'); give a "
        "single-channel file",
    )
    record["channels"].pop()
    record["training"][1]["image"] = "images/b.nii.gz"
    assert problems(write_manifest(root, record)) == (
        "training[0].image: holds 2 channel(s), the manifest declares 1; fix 'channels' or give "
        "one path per channel",
    )


def test_channels_on_different_grids(
    seg_dir: tuple[Path, dict[str, Any]], write_manifest: Writer
) -> None:
    root, record = seg_dir
    record["channels"].append({"name": "T1", "modality": "MR"})
    record["training"][0]["image"] = ["images/a.nii.gz", "images/a.nii.gz"]
    other = AFFINE.copy()
    other[2, 3] += 2.0
    save_volume(np.zeros(SHAPE, np.float32), root / "images" / "b_t1.nii.gz", like=other)
    record["training"][1]["image"] = ["images/b.nii.gz", "images/b_t1.nii.gz"]
    assert problems(write_manifest(root, record)) == (
        "channels: 2 channels declared, but training and prediction in this version of medimg "
        "read one single-channel image per case (multi-channel input is not implemented yet); "
        "keep one channel, or train elsewhere",
        "training[1].image[1]: grid differs from training[1].image[0] by 2 mm (tolerance 0.001 "
        "mm); resample it onto the image grid or fix its affine",
    )


def test_2d_image_for_a_3d_modality_and_back(
    seg_dir: tuple[Path, dict[str, Any]], write_manifest: Writer
) -> None:
    root, record = seg_dir
    flat = xray_phantom((12, 10), seed=0).image
    save_volume(flat.array, root / "images" / "flat.nii.gz", like=flat)
    record["training"][0] = {"id": "a", "image": "images/flat.nii.gz"}
    assert problems(write_manifest(root, record)) == (
        "training[0].image: is 2D (shape (12, 10)) but CT images are 3D; fix the channel's "
        "modality or the file",
    )
    record["channels"][0]["modality"] = "XR"
    found = problems(write_manifest(root, record))
    assert found[0] == (
        "training[1].image: is 3D (shape (12, 10, 8)) but XR images are 2D; fix the channel's "
        "modality or the file"
    )


def test_a_folder_is_read_as_a_dicom_series_and_an_empty_one_says_so(
    seg_dir: tuple[Path, dict[str, Any]], write_manifest: Writer
) -> None:
    # a folder is a DICOM series to the one read path (medimg.io.read_image), as to training;
    # tests/manifests/test_dicom_cases.py checks real series end to end
    root, record = seg_dir
    (root / "series_a").mkdir()
    record["training"][0]["image"] = "series_a"
    (found,) = problems(write_manifest(root, record))
    assert found == (
        f"training[0].image: cannot read series_a: {root}/series_a: holds no DICOM image (0 "
        "files left out); point to the folder that holds the series' .dcm files"
    )


def test_label_stored_in_another_voxel_order_on_the_same_world_grid_passes(
    seg_dir: tuple[Path, dict[str, Any]], write_manifest: Writer
) -> None:
    # flip the first stored axis: same voxel centres in the world, reversed storage order
    # (a DICOM series read LPS with its segmentation saved LAS is this case)
    root, record = seg_dir
    n = SHAPE[0]
    flipped = AFFINE @ np.array([[-1.0, 0, 0, n - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    label = np.zeros(SHAPE, np.uint8)
    label[n - 5 : n - 2, 3:6, 1:4] = 1
    save_volume(label[None], root / "labels" / "a.nii.gz", like=flipped, overwrite=True)
    assert load_manifest(write_manifest(root, record)).name == "tiny"
