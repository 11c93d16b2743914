"""Bad inputs of the distributed commands: ``medimg train --nproc``, ``medimg predict --ray``.

Each is refused before a process is started or a file is read (the manifests hold no images).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from catalogue_helpers import BadInput, check_bad_input


def _cmd(command: str, *extra: str) -> Callable[[Path], Sequence[str]]:
    def make(tmp: Path) -> Sequence[str]:
        raw = {"schema_version": 1, "name": "x", "channels": [{"modality": "CT"}],
               "labels": [{"value": 0, "name": "background"}, {"value": 1, "name": "liver"}],
               "training": [{"id": "a", "image": "a.nii.gz", "label": "a_seg.nii.gz"}]}  # fmt: skip
        manifest = tmp / "m.json"
        manifest.write_text(json.dumps(raw))
        return [command, "--manifest", str(manifest), "--out", str(tmp / "out"), *extra]

    return make


CATALOGUE = [
    BadInput("train --nproc 0", _cmd("train", "--nproc", "0"), 2, r"--nproc must be >= 1, got 0"),
    BadInput(
        "predict --ray-cpus without --ray",
        _cmd("predict", "--ray-cpus", "2"),
        2,
        r"--ray-cpus must come with --ray \[ADDRESS\|local\], got it alone; add --ray",
    ),
    BadInput(
        "predict --ray-local-cpus with an address",
        _cmd("predict", "--ray", "10.0.0.1:6379", "--ray-local-cpus", "2"),
        2,
        r"--ray-local-cpus must come with --ray local, got --ray 10\.0\.0\.1:6379",
    ),
]


@pytest.mark.parametrize("entry", CATALOGUE, ids=[e.kind for e in CATALOGUE])
def test_distributed_bad_input(
    entry: BadInput, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_bad_input(entry, tmp_path, capsys)
