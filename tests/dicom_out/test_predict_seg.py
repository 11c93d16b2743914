"""``medimg predict --output-format seg`` on DICOM cases, and SEG files as manifest labels.

The cases are CT phantoms written as DICOM series on oblique, anisotropic, LPS/RAS grids
(files shuffled). The SEG that prediction writes must read back, through the one read path,
as exactly the label map ``--output-format nifti`` writes for the same model, on the series'
grid; its SR must report each label's volume. A manifest whose labels are SEG files validates.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from medimg.cli import main
from medimg.io import load_volume, read_image_header, save_volume
from medimg.io.dicom.seg import write_seg
from medimg.manifests.load import save_manifest
from medimg.synthetic import CT_LABELS, ct_phantom, grid_affine
from medimg.synthetic.datasets import CT_FIELD_OF_VIEW_MM
from medimg.synthetic.dicom import DicomSeriesSpec, write_dicom_series
from medimg.training import TrainConfig
from pipelines.segmentation import SegmentationConfig, train

SPACING_MM = (5.0, 5.5, 7.0)
ROTATION_DEG = ((8.0, -5.0, 15.0), (0.0, 6.0, -9.0), (-4.0, 0.0, 12.0))


def _write_case(root: Path, k: int, *, seg_labels: bool) -> dict[str, str]:
    shape = tuple(math.ceil(f / s) for f, s in zip(CT_FIELD_OF_VIEW_MM, SPACING_MM, strict=True))
    affine = grid_affine(shape, SPACING_MM, axcodes="LPS" if k % 2 else "RAS",
                         rotation_deg=ROTATION_DEG[k])  # fmt: skip
    phantom = ct_phantom(shape, affine=affine, seed=k)
    series = root / "dicom" / f"case_{k}"
    write_dicom_series(np.round(phantom.image.array[0]), affine, series, DicomSeriesSpec(seed=k),
                       shuffle_seed=k)  # fmt: skip
    label = save_volume(phantom.label.array, root / "labels" / f"case_{k}.nii.gz",
                        like=read_image_header(series))  # fmt: skip
    if seg_labels:
        names = {v: n for v, n in CT_LABELS.items() if v != 0}
        label = write_seg(label, series, root / "labels" / f"case_{k}.seg.dcm", names=names).path
    return {"id": f"case_{k}", "image": f"dicom/case_{k}", "label": str(label.relative_to(root))}


def _manifest(root: Path, *, seg_labels: bool) -> Path:
    cases = [_write_case(root, k, seg_labels=seg_labels) for k in range(3)]
    record = {
        "schema_version": 1, "name": "dicom_ct",
        "channels": [{"name": "CT", "modality": "CT"}],
        "labels": [{"value": v, "name": n} for v, n in CT_LABELS.items()],
        "training": cases[:2], "test": cases[2:],
    }  # fmt: skip
    return save_manifest(record, root / "dataset.json")


def test_a_manifest_label_may_be_a_seg_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _manifest(tmp_path, seg_labels=True)
    assert main(["validate", str(manifest)]) == 0, capsys.readouterr().err
    label = load_volume(tmp_path / "labels" / "case_1.seg.dcm")
    reference = load_volume(tmp_path / "labels" / "case_1.nii.gz")
    np.testing.assert_array_equal(label.array, reference.array)


@pytest.mark.slow
def test_predict_writes_a_seg_and_sr_that_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _manifest(tmp_path / "data", seg_labels=False)
    cfg = SegmentationConfig(
        manifest=manifest, out_dir=tmp_path / "run", network="dynunet", base_features=4,
        roi_size_vox=(16, 16, 8), batch_size=2, samples_per_case=1,
        train=TrainConfig(max_epochs=1, learning_rate=1e-2, device="cpu"),
    )  # fmt: skip
    train(cfg)
    base = ["predict", "--model", str(tmp_path / "run"), "--manifest", str(manifest)]
    assert main([*base, "--out", str(tmp_path / "nifti")]) == 0
    assert main([*base, "--out", str(tmp_path / "seg"), "--output-format", "seg"]) == 0
    out = capsys.readouterr().out
    seg_path, sr_path = tmp_path / "seg" / "case_2.seg.dcm", tmp_path / "seg" / "case_2.sr.dcm"
    series = manifest.parent / "dicom" / "case_2"
    ds = pydicom.dcmread(seg_path)
    assert ds.Modality == "SEG"
    assert hd.seg.segread(seg_path).get_segment_numbers() == [1, 2, 3]
    nifti = load_volume(tmp_path / "nifti" / "case_2.nii.gz")
    back = load_volume(seg_path)
    assert back.source.same_grid(read_image_header(series))
    np.testing.assert_array_equal(back.array, nifti.array)
    algorithm = ds.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    record = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    assert record["checkpoint_sha256"] in str(algorithm.AlgorithmParameters)
    sr = hd.sr.srread(sr_path)
    groups = hd.sr.MeasurementReport.from_sequence([sr]).get_volumetric_roi_measurement_groups()
    voxel_ml = float(np.prod(back.spacing_mm)) / 1000
    volumes = [round(float(g.get_measurements()[0].value), 4) for g in groups]
    expected = [round(int((nifti.array == v).sum()) * voxel_ml, 4) for v in (1, 2, 3)]
    assert volumes == expected, out
    # a second run finds the SEG done (same model, inputs and settings): nothing predicted again
    assert main([*base, "--out", str(tmp_path / "seg"), "--output-format", "seg"]) == 0
    assert "0 written, 1 skipped, 0 failed" in capsys.readouterr().out
    # a case whose image is a file cannot become a SEG: the case fails, naming why
    from medimg.io import read_image

    record = json.loads(manifest.read_text())
    save_volume(read_image(series).array, manifest.parent / "case_2.nii.gz", like=nifti.source)
    record["test"][0]["image"] = "case_2.nii.gz"
    (manifest.parent / "file.json").write_text(json.dumps(record))
    argv = ["predict", "--model", str(tmp_path / "run"), "--manifest",
            str(manifest.parent / "file.json"), "--out", str(tmp_path / "file"),
            "--output-format", "seg"]  # fmt: skip
    assert main(argv) == 1
    text = capsys.readouterr().err + (tmp_path / "file" / "summary.json").read_text()
    assert "output_format 'seg' (--output-format seg) needs a DICOM series folder" in text


def test_output_format_is_checked_and_parsed() -> None:
    from medimg.cli import build_parser
    from medimg.errors import ConfigError
    from medimg.tasks import SegmentationPredictOptions

    with pytest.raises(ConfigError, match=r"^output_format must be nifti or seg .*got 'png'"):
        SegmentationPredictOptions(output_format="png")
    args = build_parser().parse_args(["predict", "--manifest", "m.json", "--out", "o",
                                      "--output-format", "seg"])  # fmt: skip
    assert args.output_format == "seg"
