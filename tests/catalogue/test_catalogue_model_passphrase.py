"""Bad inputs of ``medimg predict --model PACKAGE``: an encrypted package and no passphrase.

Without ``--passphrase-file``, ``MEDIMG_PASSPHRASE_FILE`` or a terminal to ask on (pytest's
stdin is none), the package is refused before anything is predicted; a wrong passphrase in a
file is refused naming the package.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from catalogue_helpers import BadInput, check_bad_input, untrained_model


def _encrypted(tmp: Path) -> Path:
    from medimg.packages import pack_model

    run = untrained_model(tmp / "run")
    return pack_model(run, tmp / "liver.medimg", passphrase="correct horse")


def _manifest(tmp: Path) -> Path:
    from medimg.synthetic.datasets import write_ct_segmentation_dataset

    path = write_ct_segmentation_dataset(tmp / "data", 2, seed=0)
    raw = json.loads(path.read_text())
    cases = [*raw["training"], *raw.get("test", [])]
    raw["training"], raw["test"] = cases[:1], cases[1:]
    path.write_text(json.dumps(raw))
    return path


def _predict(passphrase: str | None) -> Callable[[Path], Sequence[str]]:
    def make(tmp: Path) -> Sequence[str]:
        argv = ["predict", "--model", str(_encrypted(tmp)), "--manifest", str(_manifest(tmp)),
                "--out", str(tmp / "out"), "--device", "cpu"]  # fmt: skip
        if passphrase is not None:
            (tmp / "pass.txt").write_text(passphrase + "\n")
            argv += ["--passphrase-file", str(tmp / "pass.txt")]
        return argv

    return make


CATALOGUE = [
    BadInput(
        "package_encrypted_no_passphrase_no_terminal",
        _predict(None),
        2,
        r"error: package {tmp}/liver\.medimg is encrypted \(member 'weights\.safetensors'\) and "
        r"stdin is not a terminal to ask for its passphrase on: give --passphrase-file F \(its "
        r"first line\) or set MEDIMG_PASSPHRASE_FILE=F",
    ),
    BadInput(
        "package_encrypted_wrong_passphrase_file",
        _predict("wrong horse"),
        2,
        r"error: wrong passphrase for {tmp}/liver\.medimg \(member 'weights\.safetensors'",
    ),
]


@pytest.mark.parametrize("entry", CATALOGUE, ids=lambda e: e.kind)
def test_catalogue_model_passphrase(
    entry: BadInput,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MEDIMG_PASSPHRASE_FILE", raising=False)
    check_bad_input(entry, tmp_path, capsys)
