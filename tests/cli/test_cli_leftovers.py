"""The last defects of issue 12's CLI sweep, each pinned to its exit code and message.

fingerprint's --max-samples and --seed, --max-memory-gb (one argparse type for info, validate
and convert; the DICOM decode limit follows available memory and its message names an option
that exists), a folder given as an output file, and help text that cannot be written.
"""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import medimg.io.dicom.options
from medimg.cli import gb_in_bytes, main
from medimg.io import DEFAULT_MAX_BYTES
from medimg.io.dicom import DicomReadOptions
from medimg.synthetic import grid_affine
from medimg.synthetic.dicom import DicomSeriesSpec, write_dicom_series


def _argparse_refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # h6 items 1 and 2: a ValueError and a numpy traceback before
        (["fingerprint", "m.json", "--max-samples", "0"], "argument --max-samples: must be >= 1, got 0"),
        (["fingerprint", "m.json", "--seed", "-1"], "argument --seed: must be >= 0, got -1"),
        (["fingerprint", "m.json", "--seed", "x"], "argument --seed: must be an integer, got 'x'"),
        (["info", "a.nii", "--max-memory-gb", "0"], "argument --max-memory-gb: must be a finite number of GiB > 0, got '0'"),
        (["info", "a.nii", "--max-memory-gb", "nan"], "must be a finite number of GiB > 0, got 'nan'"),
        (["validate", "m.json", "--max-memory-gb", "inf"], "must be a finite number of GiB > 0, got 'inf'"),
        (["validate", "m.json", "--max-memory-gb", "lots"], "must be a number of GiB, got 'lots'"),
        (["info", "a.nii", "--max-memory-gb", "1e-12"], "must be at least one byte (about 1e-9 GiB), got '1e-12'"),
        (["convert", "d", "o", "--max-memory-gb", "-2"], "argument --max-memory-gb: must be a finite number of GiB > 0, got '-2'"),
        (["convert", "d", "o", "--min-slices", "0"], "argument --min-slices: must be >= 1, got 0"),
    ],
)  # fmt: skip
def test_bad_options_are_refused_before_any_work(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in _argparse_refusal(argv, capsys)


def test_gb_in_bytes_is_gibibytes() -> None:
    assert gb_in_bytes("1") == 1024**3
    assert gb_in_bytes("0.25") == 256 * 1024**2
    assert gb_in_bytes("1e-9") == 1  # 1.07 bytes, rounded down


# --------------------------------------------------------------------------------------------
# DICOM decode limit


def _series(folder: Path) -> Path:
    # 4 x 3 x 3 voxels, decoded as float32 in the worst case: 144 bytes
    affine = grid_affine((4, 3, 3), (1.0, 1.0, 2.0), axcodes="LPS")
    write_dicom_series(np.arange(36).reshape(4, 3, 3), affine, folder, DicomSeriesSpec())
    return folder


_LIMIT_MESSAGE = (
    "decoding (4, 3, 3) voxels needs up to 0.00 GiB, over the limit of 0.00 GiB; if the "
    "headers are right and the memory is there, raise the limit: max_bytes= in "
    "DicomReadOptions, or --max-memory-gb in medimg convert\n"
)


def test_convert_max_memory_gb_sets_the_decode_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dicom = _series(tmp_path / "dicom")
    # 1e-7 GiB = 107 bytes < 144
    assert main(["convert", str(dicom), str(tmp_path / "small"), "--max-memory-gb", "1e-7"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {dicom}: ")
    assert err.endswith(_LIMIT_MESSAGE)
    assert not list((tmp_path / "small").glob("*.nii.gz"))
    assert main(["convert", str(dicom), str(tmp_path / "big"), "--max-memory-gb", "1e-6"]) == 0
    assert len(list((tmp_path / "big").glob("*.nii.gz"))) == 1


def test_dicom_default_limit_follows_available_memory_at_call_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    options = DicomReadOptions()
    assert options.max_bytes is None
    assert 0 < options.decode_limit_bytes() <= DEFAULT_MAX_BYTES
    dicom = _series(tmp_path / "dicom")
    # the options made above, before the machine "ran low", see the new limit
    monkeypatch.setattr(medimg.io.dicom.options, "default_max_bytes", lambda: 100)
    assert options.decode_limit_bytes() == 100
    assert main(["convert", str(dicom), str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.endswith(_LIMIT_MESSAGE)
    assert DicomReadOptions(max_bytes=1000).decode_limit_bytes() == 1000


@pytest.mark.parametrize("max_bytes", [0, -1])
def test_dicom_read_options_refuse_a_limit_below_one_byte(max_bytes: int) -> None:
    from medimg.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"max_bytes must be > 0 or None, got {max_bytes}"):
        DicomReadOptions(max_bytes=max_bytes)


# --------------------------------------------------------------------------------------------
# h6 item 7: a folder as an output file


def test_a_folder_as_output_file_is_named_not_its_temporary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "schemas"
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    assert main(["manifest", "schema", str(folder), "--force"]) == 2
    assert capsys.readouterr().err == (
        f"error: {folder}: is a folder; give a file path for the output (a folder is never "
        "replaced by a file, even with --force)\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["schemas"]  # no temporary left
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]
    assert main(["manifest", "schema", str(folder / "schema.json")]) == 0


# --------------------------------------------------------------------------------------------
# h6 item 12: help text that cannot be written


class _FullStdout(io.StringIO):
    """A stdout on a full disk: every write fails, as with ``> /dev/full``."""

    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["info", "--help"]])
def test_help_that_cannot_be_written_is_failed_work(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdout", _FullStdout())
    assert main(argv) == 1
    assert capsys.readouterr().err == (
        "error: cannot write the output: no space left on device; free disk space (or choose "
        "another disk) and run again\n"
    )


def test_help_still_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fingerprint", "--help"])
    assert exit_info.value.code == 0
    assert "--max-samples" in capsys.readouterr().out


def test_argparse_errors_on_a_full_stderr_still_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", _FullStdout())  # nowhere to say it: the exit code does
    with pytest.raises(SystemExit) as exit_info:
        main(["fingerprint", "m.json", "--seed", "-1"])
    assert exit_info.value.code == 2


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_help_into_dev_full_exits_1() -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "medimg", "--help"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot write the output: no space left on device")
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------------------------
# h6 item 10: load_checkpoint on a truncated file


def _checkpoint(path: Path) -> bytes:
    import torch

    from medimg.training.checkpoint import save_checkpoint

    save_checkpoint({"model": {"w": torch.arange(4000, dtype=torch.float32)}}, path)
    return path.read_bytes()


@pytest.mark.parametrize(
    ("keep", "reason"),
    [
        (0.5, "Invalid argument"),  # torch: OSError(EINVAL) for a zip cut before its directory
        (0.0, "it ends before its data"),  # an empty file: torch's EOFError
    ],
)
def test_truncated_checkpoint_is_a_checkpoint_error(
    tmp_path: Path, keep: float, reason: str
) -> None:
    from medimg.errors import CheckpointError
    from medimg.training.checkpoint import load_checkpoint, sha256_file

    path = tmp_path / "best.pt"
    data = _checkpoint(path)
    path.write_bytes(data[: int(len(data) * keep)])
    expected = (
        f"checkpoint {path} cannot be read ({reason}); it is damaged or truncated: restore it "
        "or train again"
    )
    for sha256 in (None, sha256_file(path)):  # also when the digest recorded is the cut file's
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path, sha256=sha256)
        assert str(info.value) == expected


def test_checkpoint_read_errors_of_the_system_stay_oserrors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from medimg.training.checkpoint import load_checkpoint

    path = tmp_path / "best.pt"
    _checkpoint(path)
    assert sorted(load_checkpoint(path)["model"]) == ["w"]

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(torch, "load", denied)  # as for a file root may read but we may not
    with pytest.raises(PermissionError):  # the CLI says "permission denied; ..." (exit 2)
        load_checkpoint(path)
