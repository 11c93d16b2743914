"""The bad-input catalogue: each kind of bad input, pinned to its exit code and message.

Every ``test_catalogue_*.py`` here lists :class:`BadInput` entries for one area (images, DICOM,
manifests, batch runs, the command line) and runs each through ``medimg.cli.main`` in-process.
An entry builds its bad input in ``tmp_path`` and returns the argv; ``check_bad_input`` asserts the exit
code, that stderr holds our ``error:`` line (never a traceback), and that the message
matches ``pattern`` (file named, reason, fix). ``test_catalogue_count.py`` checks that
the catalogue holds at least 40 kinds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from medimg.cli import main


@dataclass(frozen=True)
class BadInput:
    """One kind of bad input.

    ``make(tmp_path)`` writes the input and returns the argv (without ``medimg``); ``code`` is
    the expected exit code (2 user error, 1 failed work); ``pattern`` is a regex searched in
    stderr, where ``{tmp}`` stands for ``re.escape(str(tmp_path))``.
    """

    kind: str
    make: Callable[[Path], Sequence[str]]
    code: int
    pattern: str


@dataclass(frozen=True)
class CliRun:
    code: int
    out: str
    err: str


def run_cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> CliRun:
    """Run ``medimg ARGV`` in this process and capture what it printed."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return CliRun(code, captured.out, captured.err)


def check_bad_input(entry: BadInput, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CliRun:
    """Run one catalogue entry and assert its exit code and message."""
    run = run_cli(entry.make(tmp_path), capsys)
    assert "Traceback" not in run.err, run.err
    assert run.code == entry.code, (run.code, run.err)
    assert any(line.startswith("error: ") for line in run.err.splitlines()), run.err
    pattern = entry.pattern.replace("{tmp}", re.escape(str(tmp_path)))
    assert re.search(pattern, run.err), (pattern, run.err)
    return run


def untrained_model(run_dir: Path, *, preprocess: Any = None) -> Path:
    """``run_dir/model``: a seeded, untrained tiny 3D UNet (CT, labels 0 and 1 "liver").

    The model folder the package and model catalogues start from: ``best.pt`` and
    ``model.json`` as training writes them. ``preprocess`` defaults to 4 x 4 x 6 mm with the
    soft-tissue window. Returns ``run_dir``.
    """
    import torch

    from medimg.networks import NetworkConfig, build_network
    from medimg.training import save_checkpoint, save_model_bundle
    from medimg.transforms import PreprocessConfig

    torch.manual_seed(0)
    net = NetworkConfig(name="unet", in_channels=1, out_channels=2, roi_size_vox=(16, 16, 8),
                        base_features=4)  # fmt: skip
    model_dir = run_dir / "model"
    model_dir.mkdir(parents=True)
    save_checkpoint({"model": build_network(net).state_dict()}, model_dir / "best.pt")
    if preprocess is None:
        preprocess = PreprocessConfig(target_spacing_mm=(4.0, 4.0, 6.0), hu_window="soft_tissue")
    save_model_bundle(
        model_dir, network=net, modality="CT", outputs={1: "liver"}, fingerprint=None,
        preprocess=preprocess, checkpoint="best.pt",
    )  # fmt: skip
    return run_dir
