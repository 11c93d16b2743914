"""Labels on the stored grid slab by slab: equal to the whole-volume inversion, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medimg.errors import ConfigError
from medimg.inference import source_label_slabs, write_slabs_nifti
from medimg.io import Volume, load_volume
from medimg.keys import Keys
from medimg.synthetic import ct_phantom, grid_affine
from medimg.transforms import PreprocessConfig, PreprocessRecord, preprocessing_for, to_source_grid


def test_slabs_equal_the_whole_volume_labels_on_an_oblique_lps_phantom(tmp_path: Path) -> None:
    shape = (21, 17, 9)
    affine = grid_affine(shape, (2.0, 1.5, 5.0), axcodes="LPS", rotation_deg=(8.0, -5.0, 12.0))
    ph = ct_phantom(shape, affine=affine, seed=7)
    image = ph.image.array.copy()
    image[:, -5:] = -1000.0  # air at the end of stored axis 0: the crop drops it
    vol = Volume(array=image, affine=ph.image.affine, source=ph.image.source)
    cfg = PreprocessConfig(
        target_spacing_mm=(1.7, 1.7, 1.7), hu_window="soft_tissue", crop_foreground_above=-500.0
    )
    record = preprocessing_for("CT", cfg)({"image": vol})[Keys.RECORD]
    assert record.ornt[0][1] == -1  # stored axis 0 runs right to left
    assert record.crop_box != tuple((0, n) for n in shape)
    probs = torch.from_numpy(
        np.random.default_rng(0).random((3, *record.grid_shape), dtype=np.float32)
    ).softmax(dim=0)
    whole = to_source_grid(probs, record, fill=(1.0, 0.0, 0.0)).argmax(dim=0).to(torch.uint8)
    # 2 planes of 3 x 21 x 17 float32 per slab: slabs of depth 2, 2, 2, 2, 1
    slabs = list(source_label_slabs(probs, record, slab_bytes=2 * 3 * 21 * 17 * 4))
    assert [(s.z_start, s.depth) for s in slabs] == [(0, 2), (2, 2), (4, 2), (6, 2), (8, 1)]
    assert all(s.data.dtype == torch.uint8 for s in slabs)
    assert torch.equal(torch.cat([s.data for s in slabs], dim=-1), whole)
    assert set(torch.unique(whole).tolist()) == {0, 1, 2}
    # outside the crop box everything is background
    assert int(whole[-5:].max()) == 0
    # streamed to disk: the same labels on the stored (oblique, LPS) grid
    out = write_slabs_nifti(
        source_label_slabs(probs, record, slab_bytes=1), tmp_path / "labels.nii.gz",
        shape=record.source_shape, affine=record.source_affine,
    )  # fmt: skip
    written = load_volume(out)
    assert np.array_equal(written.array[0], whole.numpy())
    np.testing.assert_allclose(written.affine, affine, atol=1e-5)


def test_more_than_256_classes_is_refused() -> None:
    record = PreprocessRecord.from_source((2, 2, 2), np.eye(4))
    with pytest.raises(ConfigError, match=r"at most 256 classes, got 257"):
        next(source_label_slabs(torch.zeros(257, 2, 2, 2), record))
