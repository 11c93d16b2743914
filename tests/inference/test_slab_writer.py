from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest
import torch

from medimg.errors import ConfigError, GeometryError, OutputExistsError
from medimg.inference import (
    InferenceConfig,
    Slab,
    predict_to_nifti,
    predict_volume,
    write_slabs_nifti,
)
from medimg.io import save_volume
from tests.inference.conftest import conv_net

AFFINE = np.array(
    [[0.0, -1.5, 0.0, 10.0], [2.0, 0.0, 0.0, -4.0], [0.0, 0.0, 2.5, 7.0], [0, 0, 0, 1]]
)


def _labels_slabs(labels: np.ndarray, cuts: list[int]) -> list[Slab]:
    edges = [0, *cuts, labels.shape[-1]]
    return [
        Slab(a, torch.from_numpy(np.ascontiguousarray(labels[..., a:b])))
        for a, b in itertools.pairwise(edges)
    ]


@pytest.mark.parametrize("name", ["out.nii", "out.nii.gz"])
def test_slabs_written_equal_the_array(tmp_path, name) -> None:
    labels = np.random.default_rng(0).integers(0, 5, size=(7, 6, 9)).astype(np.uint8)
    slabs = _labels_slabs(labels, [2, 3, 7])
    if name == "out.nii":
        slabs = slabs[::-1]  # any order is fine for uncompressed output
    path = write_slabs_nifti(slabs, tmp_path / name, shape=(7, 6, 9), affine=AFFINE)
    img = nib.load(path)
    np.testing.assert_array_equal(np.asarray(img.dataobj), labels)
    assert img.get_data_dtype() == np.uint8
    np.testing.assert_allclose(img.affine, AFFINE)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary left behind


def test_multichannel_slabs_are_written_channel_last(tmp_path) -> None:
    probs = np.random.default_rng(0).random((3, 5, 4, 6)).astype(np.float32)
    slabs = [
        Slab(0, torch.from_numpy(probs[..., :4].copy())),
        Slab(4, torch.from_numpy(probs[..., 4:].copy())),
    ]
    path = write_slabs_nifti(
        slabs, tmp_path / "p.nii", shape=(5, 4, 6, 3), affine=AFFINE, dtype=np.float32
    )
    np.testing.assert_array_equal(np.asarray(nib.load(path).dataobj), np.moveaxis(probs, 0, -1))


def test_predict_to_nifti_matches_predict_volume(tmp_path, image) -> None:
    src = save_volume(image, tmp_path / "img.nii", like=AFFINE)
    net = conv_net()
    for output in ("labels", "probabilities"):
        cfg = InferenceConfig(roi_size_vox=(16, 16, 16), output=output)
        ref = predict_volume(net, image, cfg)
        out = predict_to_nifti(net, src, tmp_path / f"{output}.nii", cfg)
        got = np.asarray(nib.load(out).dataobj)
        got = got if output == "labels" else np.moveaxis(got, -1, 0)
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_allclose(nib.load(out).affine, AFFINE)


def test_writer_errors(tmp_path) -> None:
    labels = np.zeros((4, 3, 5), np.uint8)
    ok = _labels_slabs(labels, [2])
    kw = {"shape": (4, 3, 5), "affine": AFFINE}
    with pytest.raises(ConfigError, match=r"slab output must be a .nii or .nii.gz file"):
        write_slabs_nifti(ok, tmp_path / "x.mha", **kw)
    with pytest.raises(
        ConfigError, match=r"a .nii.gz output is written as one stream and must be 3D"
    ):
        write_slabs_nifti(ok, tmp_path / "x.nii.gz", shape=(4, 3, 5, 2), affine=AFFINE)
    with pytest.raises(
        ConfigError, match=r"slab must be \(4, 3\) x depth within Z 0..5, got shape"
    ):
        write_slabs_nifti([Slab(0, torch.zeros(4, 2, 5))], tmp_path / "x.nii", **kw)
    with pytest.raises(ConfigError, match=r"slabs must not overlap, Z 0..2 was written twice"):
        write_slabs_nifti([*ok, ok[0]], tmp_path / "x.nii", **kw)
    with pytest.raises(ConfigError, match=r"needs slabs in Z order, got z_start 2 before 0"):
        write_slabs_nifti(ok[::-1], tmp_path / "x.nii.gz", **kw)
    with pytest.raises(ConfigError, match=r"slabs must cover Z \(0..5\) exactly once, got 2 of 5"):
        write_slabs_nifti(ok[:1], tmp_path / "x.nii", **kw)
    assert list(tmp_path.iterdir()) == []  # failed writes leave nothing behind
    write_slabs_nifti(ok, tmp_path / "x.nii", **kw)
    with pytest.raises(OutputExistsError, match=r"exists; pass overwrite=True"):
        write_slabs_nifti(ok, tmp_path / "x.nii", **kw)


def test_predict_to_nifti_needs_a_grid(tmp_path, image) -> None:
    with pytest.raises(GeometryError, match=r"the output grid must be known, got an image without"):
        predict_to_nifti(conv_net(), image, tmp_path / "o.nii")
