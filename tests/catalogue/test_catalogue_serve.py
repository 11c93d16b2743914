"""Bad inputs of ``medimg serve`` and its token commands (the HTTP refusals are in tests/serve)."""

from __future__ import annotations

from pathlib import Path

import pytest
from catalogue_helpers import BadInput, check_bad_input

from medimg.cli import main


def _with_token(tmp: Path) -> Path:
    data = tmp / "serve"
    assert main(["serve", "token", "create", "--data", str(data)]) == 0
    return data


CATALOGUE = [
    BadInput(
        "serve on a public address without a token",
        lambda tmp: ["serve", "--host", "0.0.0.0", "--data", tmp / "d", "--model", tmp / "m"],
        2,
        r"--host 0\.0\.0\.0 is reachable from other machines, but .* has no token; create "
        r"one first \(medimg serve token create",
    ),
    BadInput(
        "serve without a model",
        lambda tmp: ["serve", "--data", tmp / "d"],
        2,
        r"needs at least one --model",
    ),
    BadInput(
        "serve a folder that holds no model",
        lambda tmp: ["serve", "--data", tmp / "d", "--model", tmp],
        2,
        r"model folder must hold model.json, got none in {tmp}",
    ),
    BadInput(
        "revoke an unknown token id",
        lambda tmp: ["serve", "token", "revoke", "nosuch", "--data", _with_token(tmp)],
        2,
        r"token id must be one of those `medimg serve token list` shows \([0-9a-f]{8}\), "
        r"got 'nosuch'",
    ),
    BadInput(
        "serve allowing an unknown per-job precision",
        lambda tmp: ["serve", "--data", tmp / "d", "--model", tmp, "--job-precision", "fp8"],
        2,
        r"serve setting job_precisions \(--job-precision\) must be among float32, bfloat16, "
        r"float16, auto, got 'fp8'",
    ),
    BadInput(
        "token with an empty name",
        lambda tmp: ["serve", "token", "create", "--name", "", "--data", tmp / "d"],
        2,
        r"token name must be 1 to 100 printable characters, got ''",
    ),
]


@pytest.mark.parametrize("entry", CATALOGUE, ids=[e.kind for e in CATALOGUE])
def test_serve_bad_input(
    entry: BadInput, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_bad_input(entry, tmp_path, capsys)
