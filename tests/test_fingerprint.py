"""Fingerprint: statistics equal hand computations from the arrays; axis order RAS; caching."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medimg.fingerprint import (
    FINGERPRINT_VERSION,
    Fingerprint,
    compute_fingerprint,
    fingerprint_path,
    load_or_compute_fingerprint,
)
from medimg.io import save_volume
from medimg.modality import Modality
from medimg.synthetic import grid_affine
from medimg.synthetic.datasets import (
    write_ct_segmentation_dataset,
    write_xray_classification_dataset,
)

# stored axes point P, S, R with 1.0, 4.0, 2.0 mm: in RAS order spacing is (2.0, 1.0, 4.0)
STORED_SHAPE = (12, 10, 8)
AFFINE = grid_affine(STORED_SHAPE, (1.0, 4.0, 2.0), axcodes="PSR")


def _write_permuted_dataset(root: Path) -> Path:
    cases = []
    for k in range(2):
        image = np.arange(np.prod(STORED_SHAPE), dtype=np.float32).reshape(STORED_SHAPE) + k
        label = np.zeros(STORED_SHAPE, np.uint8)
        label[2:5, 3:6, 1:4] = 1  # 27 voxels
        label[6:7, 0:2, 0:1] = 2  # 2 voxels
        save_volume(image[None], root / f"i{k}.nii.gz", like=AFFINE)
        save_volume(label[None], root / f"l{k}.nii.gz", like=AFFINE)
        cases.append({"id": f"c{k}", "image": f"i{k}.nii.gz", "label": f"l{k}.nii.gz"})
    record = {
        "schema_version": 1,
        "name": "permuted",
        "channels": [{"name": "CT", "modality": "CT"}],
        "labels": [{"value": v, "name": n} for v, n in enumerate(["bg", "box", "bar", "unused"])],
        "training": cases,
    }
    path = root / "m.json"
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


def test_known_answers_on_permuted_anisotropic_grid(tmp_path: Path) -> None:
    fp = compute_fingerprint(_write_permuted_dataset(tmp_path))
    assert fp.spacings_mm == ((2.0, 1.0, 4.0), (2.0, 1.0, 4.0))
    assert fp.shapes_vox == ((8, 12, 10), (8, 12, 10))  # stored (P, S, R) -> (R, A, S)
    assert fp.median_spacing_mm == (2.0, 1.0, 4.0)
    assert fp.anisotropy_ratio == 4.0
    assert fp.anisotropic
    assert fp.lowres_axis == 2
    # foreground: voxel indices of the 27-box and the 2-bar, plus k (0 or 1) per case
    flat = np.arange(np.prod(STORED_SHAPE)).reshape(STORED_SHAPE)
    mask = np.zeros(STORED_SHAPE, bool)
    mask[2:5, 3:6, 1:4] = True
    mask[6:7, 0:2, 0:1] = True
    values = np.concatenate([flat[mask], flat[mask] + 1]).astype(np.float64)
    (stats,) = fp.intensity
    assert stats.n_voxels == 58
    assert stats.mean == pytest.approx(values.mean(), rel=1e-12)
    assert stats.std == pytest.approx(values.std(), rel=1e-12)
    assert (stats.min, stats.max) == (values.min(), values.max())
    assert stats.percentile_00_5 == pytest.approx(np.percentile(values, 0.5))
    assert stats.percentile_99_5 == pytest.approx(np.percentile(values, 99.5))
    assert stats.median == pytest.approx(np.median(values))
    n = 960
    assert fp.label_fractions == {0: (n - 29) / n, 1: 27 / n, 2: 2 / n, 3: 0.0}
    assert fp.intensity_source == "foreground"
    assert fp.class_counts == {}


def test_synthetic_ct_set_equals_statistics_from_the_files(tmp_path: Path) -> None:
    manifest = write_ct_segmentation_dataset(tmp_path, 3, seed=4)
    fp = compute_fingerprint(manifest)
    spacings, shapes, fg, label_counts = [], [], [], np.zeros(4, np.int64)
    for k in range(3):  # independent path: nibabel's canonical (RAS) reorientation
        image = nib.as_closest_canonical(nib.load(tmp_path / f"imagesTr/case_{k:03d}.nii.gz"))
        label = nib.as_closest_canonical(nib.load(tmp_path / f"labelsTr/case_{k:03d}.nii.gz"))
        spacings.append(np.linalg.norm(image.affine[:3, :3], axis=0))
        shapes.append(image.shape)
        lab = np.asarray(label.dataobj)
        fg.append(np.asarray(image.dataobj, np.float64)[lab > 0])
        label_counts += np.bincount(lab.ravel(), minlength=4)
    values = np.concatenate(fg)
    np.testing.assert_allclose(fp.spacings_mm, spacings, atol=1e-5)
    assert fp.shapes_vox == tuple(tuple(s) for s in shapes)
    np.testing.assert_allclose(fp.median_spacing_mm, np.median(spacings, axis=0), atol=1e-5)
    np.testing.assert_allclose(fp.p10_spacing_mm, np.percentile(spacings, 10, axis=0), atol=1e-5)
    assert fp.median_shape_vox == tuple(int(v) for v in np.rint(np.median(shapes, axis=0)))
    (stats,) = fp.intensity
    assert stats.n_voxels == values.size
    assert stats.mean == pytest.approx(values.mean(), rel=1e-9)
    assert stats.std == pytest.approx(values.std(), rel=1e-9)
    assert stats.percentile_00_5 == pytest.approx(np.percentile(values, 0.5))
    assert stats.percentile_99_5 == pytest.approx(np.percentile(values, 99.5))
    expected = {v: label_counts[v] / label_counts.sum() for v in range(4)}
    assert fp.label_fractions == pytest.approx(expected)


def test_subsampling_bounds_samples_but_keeps_exact_moments(tmp_path: Path) -> None:
    path = _write_permuted_dataset(tmp_path)
    full = compute_fingerprint(path)
    sampled = compute_fingerprint(path, max_samples=20, seed=3)
    assert sampled.samples_per_case == 10
    a, b = full.intensity[0], sampled.intensity[0]
    assert (b.mean, b.std, b.min, b.max, b.n_voxels) == (a.mean, a.std, a.min, a.max, a.n_voxels)
    assert a.min <= b.percentile_00_5 <= b.percentile_99_5 <= a.max
    assert compute_fingerprint(path, max_samples=20, seed=3) == sampled  # seeded
    with pytest.raises(ValueError, match="max_samples must be >= 1, got 0"):
        compute_fingerprint(path, max_samples=0)


def test_classification_counts_and_all_voxel_intensities(tmp_path: Path) -> None:
    manifest = write_xray_classification_dataset(tmp_path, 5, seed=1)
    fp = compute_fingerprint(manifest)  # training = cases 0..3 (case 4 is test)
    assert fp.class_counts == {"normal": 2, "nodule": 2}
    assert fp.modalities == (Modality.XR,)
    assert fp.intensity_source == "all"
    assert fp.label_fractions == {}
    assert fp.spacings_mm == ((5.0, 5.0),) * 4
    assert fp.intensity[0].n_voxels == 4 * 64 * 80


def test_saved_next_to_manifest_reused_while_unchanged(tmp_path: Path) -> None:
    path = _write_permuted_dataset(tmp_path)
    first = load_or_compute_fingerprint(path)
    saved = fingerprint_path(path)
    assert saved == tmp_path / "m.fingerprint.json"
    assert Fingerprint.from_json(saved.read_text()) == first
    stamp = saved.stat().st_mtime_ns
    assert load_or_compute_fingerprint(path) == first
    assert saved.stat().st_mtime_ns == stamp  # reused, not rewritten
    record = json.loads(path.read_text())
    record["training"].pop()
    path.write_text(json.dumps(record), encoding="utf-8")
    second = load_or_compute_fingerprint(path)
    assert second.n_cases == 1
    assert second.manifest_sha256 != first.manifest_sha256


def test_from_json_refuses_other_versions(tmp_path: Path) -> None:
    fp = compute_fingerprint(_write_permuted_dataset(tmp_path))
    record = json.loads(fp.to_json())
    assert record["fingerprint_version"] == FINGERPRINT_VERSION
    record["fingerprint_version"] = 99
    with pytest.raises(ValueError, match=r"fingerprint_version must be 1, got 99; recompute"):
        Fingerprint.from_json(json.dumps(record))
