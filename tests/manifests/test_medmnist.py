"""medimg import medmnist: official split into NIfTI + manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medimg.cli import main
from medimg.errors import ConfigError, ImageReadError
from medimg.io import load_volume
from medimg.manifests import load_manifest
from medimg.manifests.medmnist import import_medmnist


def _fake_npz(
    path: Path, *, ndim: int = 3, n: tuple[int, int, int] = (5, 2, 3), labels: int = 2
) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n, strict=True):
        arrays[f"{split}_images"] = rng.integers(
            0, 255, size=(count,) + (6,) * ndim, dtype=np.uint8
        )
        arrays[f"{split}_labels"] = (np.arange(count) % labels).reshape(-1, 1).astype(np.uint8)
    np.savez(path, **arrays)
    return path


def test_import_keeps_the_official_split_and_voxels(tmp_path: Path) -> None:
    npz = _fake_npz(tmp_path / "adrenalmnist3d.npz")
    manifest_path = import_medmnist(npz, tmp_path / "out")
    manifest = load_manifest(manifest_path)
    assert [len(manifest.split(s)) for s in ("training", "validation", "test")] == [5, 2, 3]
    assert manifest.classes == ("normal", "hyperplasia")
    assert manifest.modalities[0].value == "CT"
    # Case val_00001 is the second validation image, class 1 -> "hyperplasia".
    case = manifest.split("validation")[1]
    assert case.case_id == "val_00001"
    assert case.class_name == "hyperplasia"
    with np.load(npz) as data:
        expected = data["val_images"][1]
    np.testing.assert_array_equal(load_volume(tmp_path / "out" / case.images[0]).array[0], expected)


def test_2d_set_needs_a_modality_and_gets_plane_grids(tmp_path: Path) -> None:
    npz = _fake_npz(tmp_path / "bloodmnist.npz", ndim=2, labels=3)
    with pytest.raises(
        ConfigError, match=r"modality of 'bloodmnist' is unknown; pass modality='CT', 'MR' or 'XR'"
    ):
        import_medmnist(npz, tmp_path / "out")
    manifest = load_manifest(import_medmnist(npz, tmp_path / "out", modality="XR"))
    assert manifest.classes == ("0", "1", "2")
    image = load_volume(tmp_path / "out" / manifest.split("training")[0].images[0], ndim=2)
    assert image.array.shape == (1, 6, 6)


def test_bad_files(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", images=np.zeros((2, 3, 3)))
    with pytest.raises(
        ImageReadError,
        match=r"x\.npz: not a MedMNIST file: missing arrays train_images, train_labels",
    ):
        import_medmnist(tmp_path / "x.npz", tmp_path / "out")
    multi = {
        f"{s}_{k}": np.zeros((2, 3) if k == "labels" else (2, 4, 4))
        for s in ("train", "val", "test")
        for k in ("images", "labels")
    }
    np.savez(tmp_path / "chestmnist.npz", **multi)
    with pytest.raises(
        ImageReadError, match=r"multi-label set \(3 labels per image\) is not supported"
    ):
        import_medmnist(tmp_path / "chestmnist.npz", tmp_path / "out")
    npz = _fake_npz(tmp_path / "organmnist3d.npz", labels=2)
    with pytest.raises(
        ConfigError, match=r"class_names must name all 2 label values, got 1: \('a',\)"
    ):
        import_medmnist(npz, tmp_path / "out", class_names=("a",))


def test_cli_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    npz = _fake_npz(tmp_path / "nodulemnist3d.npz", n=(2, 1, 1))
    assert main(["import", "medmnist", str(npz), str(tmp_path / "out")]) == 0
    assert main(["import", "medmnist", str(npz), str(tmp_path / "out")]) == 2
    assert "exists; pass overwrite=True (--force)" in capsys.readouterr().err
    assert main(["import", "medmnist", str(npz), str(tmp_path / "out"), "--force"]) == 0


@pytest.mark.realdata
def test_real_adrenalmnist3d_split_sizes(realdata: Path, tmp_path: Path) -> None:
    # Official split: train 1188 / val 98 / test 298 (MedMNIST v2).
    manifest = load_manifest(
        import_medmnist(realdata / "classification/adrenalmnist3d.npz", tmp_path), check_files=False
    )
    assert [len(manifest.split(s)) for s in ("training", "validation", "test")] == [1188, 98, 298]
