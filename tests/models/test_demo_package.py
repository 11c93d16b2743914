"""``medimg demo`` hands its model over as one package, named with its SHA-256 in the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from medimg.cli import main
from medimg.io.integrity import sha256_file


@pytest.mark.slow  # a one-epoch demo on five cases
def test_demo_writes_a_package_and_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["demo", "--out", str(tmp_path), "--cases", "5", "--epochs", "1", "--device", "cpu"]
    assert main(args) == 0
    package = tmp_path / "model.medimg"
    digest = sha256_file(package)
    report = (tmp_path / "report.md").read_text()
    assert f"Package: `{package}` (SHA-256 `{digest}`)" in report
    assert f"package: {package} sha256 {digest}" in capsys.readouterr().out
    assert main(["model", "verify", str(package)]) == 0
