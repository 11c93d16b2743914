"""The command line: ``medimg info``, ``medimg demo``, ``--help`` speed and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medimg.cli import main
from medimg.synthetic import ct_phantom, grid_affine


def _write_case(tmp_path: Path) -> Path:
    # 12 x 10 x 8 voxels of 14 x 15 x 16 mm span the whole phantom body, air around it.
    shape = (12, 10, 8)
    phantom = ct_phantom(
        shape, affine=grid_affine(shape, (14.0, 15.0, 16.0), axcodes="LPS"), seed=0
    )
    return phantom.write(tmp_path, "case")[0]


def test_info_prints_geometry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_case(tmp_path)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "shape     12 x 10 x 8" in out
    assert "spacing   14 x 15 x 16 mm" in out
    assert "axcodes   LPS" in out
    assert "dtype     <f4" in out


def test_info_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_case(tmp_path)
    assert main(["info", "--json", str(path)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["shape"] == [12, 10, 8]
    assert record["axcodes"] == "LPS"
    assert record["range"][0] < -900
    assert record["range"][1] > 100


def test_info_errors_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _write_case(tmp_path)
    code = main(
        ["info", "--header-only", str(good), str(tmp_path / "missing.nii"), str(tmp_path / "x.png")]
    )
    captured = capsys.readouterr()
    assert code == 2
    assert "axcodes   LPS" in captured.out
    assert captured.err.splitlines() == [
        f"error: {tmp_path / 'missing.nii'}: no such file",
        f"error: {tmp_path / 'x.png'}: unknown image extension '.png'; supported: .nii.gz, .nii, "
        ".hdr, .img, .nrrd, .nhdr, .mha, .mhd (DICOM series are read from their folder)",
    ]


def test_no_subcommand_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: medimg" in capsys.readouterr().out


def test_help_does_not_import_torch_or_monai() -> None:
    code = (
        "import sys\n"
        "from medimg.cli import build_parser\n"
        "build_parser().format_help()\n"
        "heavy = [m for m in ('torch', 'monai', 'SimpleITK', 'nibabel', 'pydicom') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
