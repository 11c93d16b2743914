"""How ``medimg`` ends: exit codes, one-line errors, a closed output pipe, ``--help``."""

from __future__ import annotations

import argparse
import errno
import io
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import medimg.cli.synth
from medimg.cli import EXIT_CODES, main
from medimg.errors import CaseError, CheckpointError, ConfigError, ManifestError, OutputLockedError
from medimg.io import save_volume

README = Path(__file__).parents[2] / "README.md"


def _raising(exc: BaseException) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("exc", "code", "err"),
    [
        (ConfigError("n_cases must be >= 1, got 0"), 2, "error: n_cases must be >= 1, got 0\n"),
        (
            ManifestError("m.json", ["training[0].image: file not found", "classes: missing"]),
            2,
            "error: m.json has 2 problems:\n  training[0].image: file not found\n"
            "  classes: missing\n",
        ),
        (CheckpointError("checkpoint best.pt not found"), 2, None),
        (OutputLockedError("out is in use by pid 7"), 2, None),
        (CaseError("case c1: prediction failed: x"), 1, "error: case c1: prediction failed: x\n"),
        (
            OSError(errno.ENOSPC, "No space left on device", "out/case.nii.gz"),
            1,
            "error: out/case.nii.gz: no space left on device; free disk space (or choose "
            "another disk) and run again\n",
        ),
        (
            OSError(errno.EIO, "Input/output error", "out/a"),
            1,
            "error: out/a: input/output error\n",
        ),
        (
            PermissionError(errno.EACCES, "Permission denied", "/data/out"),
            2,
            "error: /data/out: permission denied; choose a folder you may write to, or change "
            "its permissions\n",
        ),
        (
            OSError(errno.EROFS, "Read-only file system", "/mnt/ro/x"),
            2,
            "error: /mnt/ro/x: read-only file system; the file system is read-only; choose a "
            "writable folder\n",
        ),
        (
            FileNotFoundError(errno.ENOENT, "No such file or directory", "in.nii"),
            2,
            "error: in.nii: no such file or directory; check the path\n",
        ),
        (
            OSError(errno.EXDEV, "Invalid cross-device link", "a.tmp", None, "b"),
            1,
            "error: a.tmp -> b: invalid cross-device link\n",
        ),
        (FileExistsError("out.json exists"), 2, "error: out.json exists\n"),
        (
            FileExistsError(errno.EEXIST, "File exists", "out"),
            2,
            "error: out: file exists; it is in the way; choose another path or remove it\n",
        ),
        (MemoryError(), 1, "error: out of memory: an allocation failed\n"),
        (KeyboardInterrupt(), 130, "interrupted\n"),
        (BrokenPipeError(errno.EPIPE, "Broken pipe"), 141, ""),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_exit_code_and_one_line_per_kind_of_failure(
    exc: BaseException,
    code: int,
    err: str | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(medimg.cli.synth, "run", _raising(exc))
    assert main(["synth", "ct-seg", str(tmp_path)]) == code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if err is not None:
        assert captured.err == err
    else:
        assert captured.err == f"error: {exc}\n"


def test_an_errno_less_oserror_keeps_its_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # raised by hand (no errno): not a path problem we can name, so failed work
    monkeypatch.setattr(medimg.cli.synth, "run", _raising(OSError("device gone")))
    assert main(["synth", "ct-seg", str(tmp_path)]) == 1
    assert capsys.readouterr().err == "error: device gone\n"


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # only expected failures become one line; anything else is medimg's bug and must show
    monkeypatch.setattr(medimg.cli.synth, "run", _raising(KeyError("network")))
    with pytest.raises(KeyError, match="network"):
        main(["synth", "ct-seg", str(tmp_path)])


def test_output_folder_under_a_regular_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # chmod does not stop root; a path under a regular file fails for everyone (ENOTDIR)
    (tmp_path / "afile").write_text("x")
    assert main(["synth", "xray-cls", str(tmp_path / "afile" / "ds"), "--cases", "2"]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(
        rf"error: {re.escape(str(tmp_path))}/afile/ds/\w+: not a directory; a part of the path "
        r"is a file; choose another path\n",
        err,
    ), err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["synth", "ct-seg", "x", "--cases", "0"], "argument --cases: must be >= 1, got 0"),
        (["synth", "ct-seg", "x", "--seed", "-1"], "argument --seed: must be >= 0, got -1"),
        (["synth", "ct-seg", "x", "--cases", "two"], "argument --cases: must be an integer, got"),
        (["demo", "--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
        (["demo", "--cases", "-3"], "argument --cases: must be >= 1, got -3"),
        (["import", "medmnist", "a.npz", "o", "--modality", "PET"], "invalid choice: 'PET'"),
        (["no-such-command"], "invalid choice: 'no-such-command'"),
    ],
)
def test_argument_errors_exit_2_before_any_work(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    epilog = out[out.index("exit status:") :]
    for code in EXIT_CODES:
        assert re.search(rf"^  {code}\s+\w", epilog, re.MULTILINE), epilog
    assert "user error" in epilog
    assert "failed work" in epilog


def test_readme_states_the_exit_codes_main_returns() -> None:
    text = " ".join(README.read_text(encoding="utf-8").split())
    assert "is one `error:` line on stderr" in text
    assert "exit code 2; failed work" in text
    assert "exits 1" in text
    assert "exits 141 quietly" in text
    assert set(EXIT_CODES) == {0, 1, 2, 130, 141}


def test_closed_output_pipe_exits_quietly(tmp_path: Path) -> None:
    # ~140 kB of output, more than a pipe holds: `head -1` exits while medimg still writes,
    # so the write fails with EPIPE every time (no race on when head exits).
    path = save_volume(np.zeros((2, 3, 4), np.float32), tmp_path / "v.nii", like=np.eye(4))
    medimg = subprocess.Popen(
        [sys.executable, "-m", "medimg", "info", "--header-only", *[str(path)] * 400],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    head = subprocess.Popen(["head", "-1"], stdin=medimg.stdout, stdout=subprocess.PIPE)
    assert medimg.stdout is not None
    assert medimg.stderr is not None
    medimg.stdout.close()  # only head reads the pipe now
    first, _ = head.communicate(timeout=120)
    err = medimg.stderr.read().decode()
    medimg.stderr.close()
    assert medimg.wait(timeout=120) == 141
    assert first.decode().strip().endswith("v.nii")
    assert "Traceback" not in err
    assert "BrokenPipeError" not in err
    assert "Exception ignored" not in err


class _FullStdout(io.StringIO):
    """A stdout whose writes fail at flush, as with ``medimg ... > out.txt`` on a full disk."""

    def flush(self) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_output_that_cannot_be_written_is_failed_work(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(medimg.cli.synth, "run", lambda args: 0)
    monkeypatch.setattr(sys, "stdout", _FullStdout())
    assert main(["synth", "ct-seg", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        "error: cannot write the output: no space left on device; free disk space (or choose "
        "another disk) and run again\n"
    )
