"""``medimg dicom ls`` and ``medimg convert`` on synthetic folders."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from medimg.cli import main
from medimg.errors import OutputExistsError
from medimg.io import load_volume
from medimg.io.dicom.convert import convert_dicom_folder
from medimg.synthetic import grid_affine
from medimg.synthetic.dicom import DicomSeriesSpec, write_dicom_series


def test_ls_lists_modality_size_spacing_and_left_out(oblique_ct, capsys):
    folder, _, _ = oblique_ct
    (folder / "README.txt").write_text("not dicom")
    assert main(["dicom", "ls", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "1 volume(s)" in out
    assert "CT  'ABD 2.5mm'" in out
    assert "6 images" in out
    assert "12x10x6" in out
    assert "0.8x0.9x2.5 mm" in out
    assert "README.txt: not a DICOM file" in out


def test_convert_writes_nifti_and_phi_free_sidecar(oblique_ct, tmp_path, capsys):
    folder, expected, affine = oblique_ct
    out = tmp_path / "out"
    assert main(["convert", str(folder), str(out)]) == 0
    nifti = out / "s001_abd_2_5mm.nii.gz"
    volume = load_volume(nifti)
    np.testing.assert_array_equal(volume.array[0], expected)
    np.testing.assert_allclose(volume.affine, affine, atol=1e-4)
    sidecar = (out / "s001_abd_2_5mm.json").read_text()
    meta = json.loads(sidecar)
    assert meta["Modality"] == "CT"
    assert meta["medimg"]["geometry"]["shape"] == [12, 10, 6]
    assert "Synthetic^Phantom" not in sidecar
    assert "PatientID" not in meta
    # a second run refuses to overwrite, --force replaces, --keep-phi keeps the name
    assert main(["convert", str(folder), str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["convert", str(folder), str(out), "--force", "--keep-phi"]) == 0
    assert json.loads((out / "s001_abd_2_5mm.json").read_text())["PatientName"] == (
        "Synthetic^Phantom"
    )


def test_convert_refuses_existing_outputs_before_writing(oblique_ct, tmp_path):
    folder, _, _ = oblique_ct
    out = tmp_path / "out"
    out.mkdir()
    (out / "s001_abd_2_5mm.nii.gz").write_bytes(b"old")
    with pytest.raises(OutputExistsError, match=r"s001_abd_2_5mm.nii.gz: exists \(1 of 1"):
        convert_dicom_folder(folder, out)
    assert (out / "s001_abd_2_5mm.nii.gz").read_bytes() == b"old"


def test_convert_reports_a_bad_series_and_converts_the_others(oblique_ct, tmp_path, capsys):
    folder, _, _ = oblique_ct
    bad = tmp_path / "bad"
    affine = grid_affine((4, 3, 5), (1.0, 1.0, 2.0))
    paths = write_dicom_series(np.zeros((4, 3, 5)), affine, bad, DicomSeriesSpec(series_number=7))
    paths[2].unlink()  # a missing slice
    shutil.copytree(folder, tmp_path / "both" / "ct")
    shutil.copytree(bad, tmp_path / "both" / "bad")
    out = tmp_path / "out"
    assert main(["convert", str(tmp_path / "both"), str(out)]) == 1
    captured = capsys.readouterr()
    assert "1 converted, 1 failed" in captured.out
    assert "1 missing slice(s)" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["s001_abd_2_5mm.json", "s001_abd_2_5mm.nii.gz"]
    assert main(["convert", str(tmp_path / "both"), str(out), "--force", "--resample-uneven"]) == 0
    assert (out / "s007_synthetic.nii.gz").is_file()
