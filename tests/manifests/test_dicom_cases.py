"""A manifest whose case images are DICOM series folders validates, trains and predicts.

Images are DICOM series (medimg.synthetic.dicom) of CT phantoms on oblique, anisotropic grids,
stored LPS or RAS; labels are NIfTI on each series' grid. Every stage reads the folders
through medimg.io.read_image: validate, fingerprint, training's chain, and medimg predict,
which writes <case>.nii.gz on the series' grid and resumes only while every slice file is
unchanged.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from medimg.cli import main
from medimg.fingerprint import Fingerprint, fingerprint_path
from medimg.io import load_volume, read_image_header, save_volume
from medimg.manifests.load import save_manifest
from medimg.synthetic import CT_LABELS, ct_phantom, grid_affine
from medimg.synthetic.datasets import CT_FIELD_OF_VIEW_MM
from medimg.synthetic.dicom import DicomSeriesSpec, write_dicom_series
from medimg.training import TrainConfig
from pipelines.segmentation import SegmentationConfig, train

SPACING_MM = (4.0, 4.5, 6.0)
ROTATION_DEG = ((8.0, -5.0, 15.0), (0.0, 6.0, -9.0), (-4.0, 0.0, 12.0), (5.0, 7.0, 20.0))


def _grid(k: int) -> tuple[tuple[int, int, int], np.ndarray]:
    fov = CT_FIELD_OF_VIEW_MM
    x, y, z = (math.ceil(f / s) for f, s in zip(fov, SPACING_MM, strict=True))  # (40, 32, 24)
    axcodes = "LPS" if k % 2 else "RAS"
    affine = grid_affine((x, y, z), SPACING_MM, axcodes=axcodes, rotation_deg=ROTATION_DEG[k])
    return (x, y, z), affine


def _write_case(root: Path, k: int) -> dict[str, str]:
    shape, affine = _grid(k)
    phantom = ct_phantom(shape, affine=affine, seed=k)
    case_id = f"case_{k}"
    series = root / "dicom" / case_id
    values = np.round(phantom.image.array[0])
    write_dicom_series(values, affine, series, DicomSeriesSpec(seed=k), shuffle_seed=k)
    label = root / "labels" / f"{case_id}.nii.gz"
    save_volume(phantom.label.array, label, like=read_image_header(series))  # the series' grid
    return {"id": case_id, "image": f"dicom/{case_id}", "label": f"labels/{case_id}.nii.gz"}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dicom_data")
    cases = [_write_case(root, k) for k in range(4)]
    record = {
        "schema_version": 1,
        "name": "dicom_ct",
        "channels": [{"name": "CT", "modality": "CT"}],
        "labels": [{"value": v, "name": n} for v, n in CT_LABELS.items()],
        "training": cases[:3],
        "test": cases[3:],
    }
    return save_manifest(record, root / "dataset.json")


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def test_validate_and_fingerprint_read_the_series(
    manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run(["validate", str(manifest)], capsys)
    assert (code, err) == (0, "")
    assert _run(["fingerprint", str(manifest)], capsys)[0] == 0
    fp = Fingerprint.from_json(fingerprint_path(manifest).read_text())
    assert fp.n_cases == 3
    # spacings in RAS axis order: the rotations stay under 45 degrees, so no axis swap
    np.testing.assert_allclose(fp.median_spacing_mm, SPACING_MM, atol=1e-6)
    roles = [(i.case_id, i.role) for i in fp.inputs if i.case_id == "case_0"]
    n_slices = _grid(0)[0][2]
    assert roles == [
        *(("case_0", f"image: {k + 1:04d}.dcm") for k in range(n_slices)),
        ("case_0", "label"),
    ]


def test_validate_checks_a_series_like_a_file(
    manifest: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # a label on another grid, and a folder holding two series, are reported per case
    record = json.loads(manifest.read_text())
    record["training"][0]["label"] = "labels/case_1.nii.gz"
    study = manifest.parent / "study"
    if not study.exists():
        shape, affine = _grid(2)
        write_dicom_series(np.zeros(shape), affine, study / "a", DicomSeriesSpec(seed=5))
        spec = DicomSeriesSpec(series_number=2, seed=6)
        write_dicom_series(np.zeros(shape), affine, study / "b", spec)
    record["training"][1]["image"] = "study"
    bad = manifest.parent / "bad.json"
    bad.write_text(json.dumps(record))
    code, err = _run(["validate", str(bad)], capsys)
    assert code == 2
    assert "training[0].label: grid differs from training[0].image by" in err
    expected = f"training[1].image: cannot read study: {study}: holds 2 DICOM volumes (series 1 "
    assert expected in err


def test_a_dicom_manifest_trains_and_predicts_on_the_series_grid(
    manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = SegmentationConfig(
        manifest=manifest,
        out_dir=tmp_path / "run",
        network="dynunet",
        base_features=4,
        roi_size_vox=(16, 16, 8),
        batch_size=2,
        samples_per_case=1,
        train=TrainConfig(max_epochs=1, learning_rate=1e-2, device="cpu"),
    )
    trained = train(cfg)
    assert trained.fit.epochs_run == 1
    out = tmp_path / "pred"
    argv = ["predict", "--model", str(tmp_path / "run"), "--manifest", str(manifest)]
    argv += ["--out", str(out)]
    assert _run(argv, capsys)[0] == 0
    series = manifest.parent / "dicom" / "case_3"
    shape, designed = _grid(3)
    prediction = load_volume(out / "case_3.nii.gz")
    assert prediction.spatial_shape == shape
    np.testing.assert_allclose(prediction.affine, read_image_header(series).affine, atol=1e-6)
    np.testing.assert_allclose(prediction.affine, designed, atol=1e-4)  # oblique, LPS-stored
    assert set(np.unique(prediction.array)) <= set(CT_LABELS)

    def status() -> str:
        summary = json.loads((out / "summary.json").read_text())
        (case,) = summary["cases"]
        return str(case["status"])

    assert status() == "written"
    assert _run(argv, capsys)[0] == 0
    assert status() == "skipped"  # every slice unchanged
    slice_file = sorted(series.glob("*.dcm"))[5]  # any slice
    data = bytearray(slice_file.read_bytes())
    data[-1] ^= 0x01  # one pixel of one slice
    slice_file.write_bytes(bytes(data))
    assert _run(argv, capsys)[0] == 0
    assert status() == "written"  # the changed slice is noticed
