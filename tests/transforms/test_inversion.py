"""Preprocess-and-back round trips: exact grids on oblique, anisotropic, LPS- and permuted-stored
phantoms, slab-wise inversion, and a real TotalSegmentator label map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medimg.errors import GeometryError
from medimg.io import Volume, load_volume
from medimg.io.geometry import SourceGeometry
from medimg.keys import Keys
from medimg.synthetic import ct_phantom, grid_affine
from medimg.transforms import (
    PreprocessConfig,
    PreprocessRecord,
    preprocessing_for,
    to_source_grid,
)


def _phantom(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    axcodes: str,
    rot: tuple[float, float, float],
):  # type: ignore[no-untyped-def]
    return ct_phantom(
        shape, affine=grid_affine(shape, spacing, axcodes=axcodes, rotation_deg=rot), seed=7
    )


GRIDS = {
    "lps-oblique-anisotropic": ((21, 17, 9), (2.0, 1.5, 5.0), "LPS", (8.0, -5.0, 12.0)),
    "permuted-sra": ((9, 21, 17), (5.0, 2.0, 1.5), "SRA", (0.0, 0.0, 0.0)),
    "ras-101": ((101, 6, 5), (0.8, 3.0, 4.0), "RAS", (0.0, 3.0, 0.0)),
}


def _run(phantom, config: PreprocessConfig) -> dict:  # type: ignore[no-untyped-def]
    return preprocessing_for("CT", config)({"image": phantom.image, "label": phantom.label})


@pytest.mark.parametrize("name", list(GRIDS))
def test_label_round_trip_is_exact_when_upsampling(name: str) -> None:
    shape, spacing, axcodes, rot = GRIDS[name]
    ph = _phantom(shape, spacing, axcodes, rot)
    # Every target spacing is finer than the stored one: nearest there and back is exact.
    target = tuple(min(spacing) / f for f in (1.0, 1.3, 1.7))
    cfg = PreprocessConfig(
        target_spacing_mm=target, hu_window="soft_tissue", crop_foreground_above=-500.0
    )
    sample = _run(ph, cfg)
    record = sample[Keys.RECORD]
    back = to_source_grid(sample["label"], record, interp="nearest")
    assert tuple(back.shape) == (1, *shape)
    assert back.dtype == torch.uint8
    assert np.array_equal(back.numpy(), ph.label.array)


def test_lps_to_ras_flips_the_first_two_axes() -> None:
    ph = _phantom((6, 5, 4), (1.0, 1.0, 2.5), "LPS", (0.0, 0.0, 0.0))
    cfg = PreprocessConfig(
        target_spacing_mm=(1.0, 1.0, 2.5), hu_window="soft_tissue", image_interp="linear"
    )
    sample = _run(ph, cfg)
    assert sample[Keys.RECORD].ornt == ((0, -1), (1, -1), (2, 1))
    expected = ph.label.array[:, ::-1, ::-1, :]
    assert np.array_equal(sample["label"].numpy(), expected)
    np.testing.assert_allclose(sample["label"].affine.numpy()[:3, :3].diagonal(), [1.0, 1.0, 2.5])


def test_crop_is_recorded_and_undone_by_padding() -> None:
    ph = _phantom((40, 32, 12), (4.0, 4.5, 7.0), "RAS", (0.0, 0.0, 0.0))
    image = ph.image.array.copy()
    image[:, :6] = -1000.0  # air on the right: the crop must drop it
    vol = Volume(array=image, affine=ph.image.affine, source=ph.image.source)
    cfg = PreprocessConfig(
        target_spacing_mm=(4.0, 4.5, 7.0), hu_window="soft_tissue", crop_foreground_above=-500.0
    )
    sample = preprocessing_for("CT", cfg)({"image": vol})
    record = sample[Keys.RECORD]
    assert record.crop_box[0][0] >= 6
    assert tuple(sample["image"].shape[1:]) == record.grid_shape
    back = to_source_grid(sample["image"], record, interp="nearest", fill=-1.0)
    assert float(back[0, :6].max()) == -1.0
    inside = tuple(slice(a, b) for a, b in record.crop_box)
    windowed = np.clip((image[0] + 160.0) / 400.0, 0.0, 1.0)
    np.testing.assert_allclose(back[0][inside].numpy(), windowed[inside], atol=1e-6)


def test_linear_ramp_comes_back_exactly() -> None:
    # A function linear in world mm is reproduced exactly by linear interpolation, so the
    # prediction of a ramp on the preprocessed grid comes back as the ramp on the stored grid.
    shape, spacing = (21, 13, 9), (3.0, 1.5, 4.5)
    affine = grid_affine(shape, spacing, axcodes="LAI", rotation_deg=(0.0, 10.0, 0.0))
    ph = ct_phantom(shape, affine=affine, seed=1)
    cfg = PreprocessConfig(
        target_spacing_mm=(1.5, 0.75, 1.5), hu_window="bone", image_interp="linear"
    )
    sample = _run(ph, cfg)
    record = sample[Keys.RECORD]

    def ramp(shape_: tuple[int, ...], aff: np.ndarray) -> torch.Tensor:
        ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape_], indexing="ij"), axis=-1)
        world = ijk @ aff[:3, :3].T + aff[:3, 3]
        return torch.from_numpy((world @ np.array([0.3, -0.2, 0.1])).astype(np.float32))[None]

    back = to_source_grid(ramp(record.grid_shape, record.grid_affine), record)
    np.testing.assert_allclose(back.numpy(), ramp(shape, affine).numpy(), atol=1e-3)


@pytest.mark.parametrize("name", ["lps-oblique-anisotropic", "permuted-sra"])
def test_slabs_concatenated_equal_the_whole(name: str) -> None:
    shape, spacing, axcodes, rot = GRIDS[name]
    ph = _phantom(shape, spacing, axcodes, rot)
    cfg = PreprocessConfig(
        target_spacing_mm=(1.7, 1.7, 1.7), hu_window="soft_tissue", crop_foreground_above=-500.0
    )
    sample = _run(ph, cfg)
    record = sample[Keys.RECORD]
    prob = torch.from_numpy(
        np.random.default_rng(0).random((2, *record.grid_shape), dtype=np.float32)
    )
    whole = to_source_grid(prob, record)
    n = shape[-1]
    slabs = [to_source_grid(prob, record, z_range=(z, min(z + 4, n))) for z in range(0, n, 4)]
    # Probabilities: equal up to float32 rounding (a slab's banded products see fewer columns,
    # so BLAS may order a sum's additions differently); labels (pure gathers): bit for bit.
    torch.testing.assert_close(torch.cat(slabs, dim=-1), whole, atol=1e-6, rtol=0.0)
    assert tuple(whole.shape) == (2, *shape)
    labels = sample["label"].as_tensor()
    whole_labels = to_source_grid(labels, record, interp="nearest")
    label_slabs = [
        to_source_grid(labels, record, interp="nearest", z_range=(z, min(z + 3, n)))
        for z in range(0, n, 3)
    ]
    assert torch.equal(torch.cat(label_slabs, dim=-1), whole_labels)


def test_fill_per_channel_outside_the_crop() -> None:
    ph = _phantom((40, 32, 12), (4.0, 4.5, 7.0), "LPS", (0.0, 0.0, 0.0))
    image = ph.image.array.copy()
    image[:, -8:] = -1000.0  # stored axis 0 runs right-to-left: this is air on the right
    vol = Volume(array=image, affine=ph.image.affine, source=ph.image.source)
    cfg = PreprocessConfig(
        target_spacing_mm=(3.0, 3.0, 3.0), hu_window="soft_tissue", crop_foreground_above=-500.0
    )
    sample = preprocessing_for("CT", cfg)({"image": vol})
    record = sample[Keys.RECORD]
    prob = torch.zeros((2, *record.grid_shape))
    prob[1] = 1.0
    back = to_source_grid(prob, record, fill=(1.0, 0.0))
    assert float(back[0, -8:].min()) == 1.0
    assert float(back[1, -8:].max()) == 0.0
    assert float(back[1].max()) == 1.0
    assert torch.equal(back.sum(0), torch.ones(back.shape[1:]))  # every voxel one class
    with pytest.raises(GeometryError, match=r"fill must be one value or one per channel \(2\)"):
        to_source_grid(prob, record, fill=(1.0, 0.0, 0.0))


def test_numpy_in_numpy_out() -> None:
    ph = _phantom((10, 8, 6), (2.0, 2.0, 3.0), "LPS", (0.0, 0.0, 0.0))
    sample = _run(ph, PreprocessConfig(target_spacing_mm=(1.0, 1.0, 1.5), hu_window="lung"))
    back = to_source_grid(sample["label"].numpy(), sample[Keys.RECORD], interp="nearest")
    assert isinstance(back, np.ndarray)
    assert np.array_equal(back, ph.label.array)


def test_inversion_errors() -> None:
    ph = _phantom((10, 8, 6), (2.0, 2.0, 3.0), "LPS", (0.0, 0.0, 0.0))
    sample = _run(ph, PreprocessConfig(target_spacing_mm=(1.0, 1.0, 1.5), hu_window="lung"))
    record = sample[Keys.RECORD]
    with pytest.raises(GeometryError, match="prediction must be"):
        to_source_grid(torch.zeros(1, 3, 3, 3), record)
    with pytest.raises(GeometryError, match="z_range must satisfy 0 <= z0 < z1 <= 6"):
        to_source_grid(sample["label"], record, z_range=(4, 9))
    skewed = PreprocessRecord.from_dict(
        {
            **record.to_dict(),
            "grid_affine": grid_affine(
                record.grid_shape, (1.0, 1.0, 1.5), rotation_deg=(0.0, 0.0, 30.0)
            ).tolist(),
        }
    )
    with pytest.raises(GeometryError, match="diagonal map"):
        to_source_grid(sample["label"], skewed)


def test_record_survives_a_dict_round_trip() -> None:
    ph = _phantom((10, 8, 6), (2.0, 2.0, 3.0), "PLS", (0.0, 5.0, 0.0))
    record = _run(ph, PreprocessConfig(target_spacing_mm=(1.0, 1.0, 1.5), hu_window="lung"))[
        Keys.RECORD
    ]
    again = PreprocessRecord.from_dict(record.to_dict())
    assert again.to_dict() == record.to_dict()


def test_record_order_is_enforced() -> None:
    record = PreprocessRecord.from_source((4, 5, 6), np.diag([1.0, 1.0, 1.0, 1.0]))
    resampled = record.reoriented().resampled((8, 10, 12), np.diag([0.5, 0.5, 0.5, 1.0]))
    with pytest.raises(GeometryError, match="cropping must come before resampling"):
        resampled.cropped(((0, 2), (0, 2), (0, 2)))
    with pytest.raises(GeometryError, match="reorientation must be the first grid change"):
        resampled.reoriented()
    with pytest.raises(GeometryError, match="an affine must be a 4x4 matrix"):
        record.resampled((1, 1, 1), np.eye(3))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def _lps_copy(vol: Volume) -> Volume:
    """The same world image stored LPS (first two axes reversed), as DICOM-derived files are."""
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = [n - 1 for n in vol.spatial_shape[:2]]
    affine = vol.affine @ flip
    array = np.ascontiguousarray(vol.array[:, ::-1, ::-1, :])
    source = SourceGeometry(
        path=vol.source.path,
        format=vol.source.format,
        shape=vol.spatial_shape,
        affine=affine,
        dtype=vol.source.dtype,
    )
    return Volume(array=array, affine=affine, source=source)


@pytest.mark.realdata
def test_totalsegmentator_labels_round_trip(realdata: Path) -> None:
    folder = realdata / "labelled" / "totalsegmentator"
    image = _lps_copy(load_volume(folder / "example_ct_sm.nii.gz"))
    label = _lps_copy(load_volume(folder / "example_seg.nii.gz"))
    organs = [int(v) for v in np.unique(label.array) if v != 0]
    # Nearest at 1.5 mm (finer than the stored 3 mm) and back: every organ identical.
    cfg = PreprocessConfig(
        target_spacing_mm=(1.5, 1.5, 1.5), hu_window="soft_tissue", crop_foreground_above=-900.0
    )
    sample = preprocessing_for("CT", cfg)({"image": image, "label": label})
    back = to_source_grid(sample["label"], sample[Keys.RECORD], interp="nearest").numpy()
    assert back.shape == label.array.shape
    for v in organs:
        assert _dice(back == v, label.array == v) == 1.0, v
    # Linear one-hot forward to 2 mm, probabilities back linearly, argmax: Dice >= 0.95 for
    # every organ with at least 1000 voxels (smaller ones are a few voxels thick at 3 mm).
    cfg = PreprocessConfig(
        target_spacing_mm=(2.0, 2.0, 2.0), hu_window="soft_tissue", label_interp="linear_onehot"
    )
    sample = preprocessing_for("CT", cfg)({"image": image, "label": label})
    lab = sample["label"].as_tensor()
    values = [0, *organs]
    onehot = torch.stack([(lab[0] == v).float() for v in values])
    probs = to_source_grid(onehot, sample[Keys.RECORD])
    back = np.asarray(values, dtype=np.uint8)[probs.argmax(0).numpy()]
    scores = {
        v: _dice(back == v, label.array[0] == v) for v in organs if (label.array == v).sum() >= 1000
    }
    assert len(scores) >= 10
    assert min(scores.values()) >= 0.95, scores


def test_inversion_equals_monai_invert_on_an_anisotropic_lps_file(tmp_path: Path) -> None:
    import warnings

    from monai.data import MetaTensor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns about optional DICOM decoder plugins
        from monai.transforms import (
            Compose,
            EnsureChannelFirstd,
            LoadImaged,
            Orientationd,
            Spacingd,
        )

        stock = Compose(
            [
                LoadImaged("image", reader="NibabelReader"),
                EnsureChannelFirstd("image"),
                Orientationd("image", axcodes="RAS"),
                Spacingd("image", pixdim=(1.0, 0.9, 1.6), mode="bilinear"),
            ]
        )
    shape = (15, 13, 7)
    path, _ = ct_phantom(shape, affine=grid_affine(shape, (1.3, 1.1, 3.2), axcodes="LPS")).write(
        tmp_path, "ct"
    )
    cfg = PreprocessConfig(
        target_spacing_mm=(1.0, 0.9, 1.6), hu_window="soft_tissue", image_interp="linear"
    )
    ours = preprocessing_for("CT", cfg)({"image": str(path)})
    out = stock({"image": str(path)})["image"]
    assert tuple(out.shape[1:]) == ours[Keys.RECORD].grid_shape
    prob = torch.from_numpy(np.random.default_rng(3).random((2, *out.shape[1:]), dtype=np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI: "Setting affine, but the meta has an affine"
        pred = MetaTensor(prob.clone(), affine=out.affine, meta=dict(out.meta))
        pred.applied_operations = list(out.applied_operations)
        theirs = stock.inverse({"image": pred})["image"]
    back = to_source_grid(prob, ours[Keys.RECORD])
    np.testing.assert_allclose(back.numpy(), theirs.numpy(), atol=1e-5)
