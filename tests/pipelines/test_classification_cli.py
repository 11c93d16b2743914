from __future__ import annotations

import json
from pathlib import Path

import pytest

from medimg.cli import main
from medimg.synthetic.datasets import write_xray_classification_dataset


def test_commands_follow_the_manifest_task(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_xray_classification_dataset(tmp_path / "data", 10, seed=1)
    common = ["--manifest", str(manifest), "--out", str(tmp_path / "run")]
    tiny = ["--device", "cpu", "--width-factor", "0.125", "--stem-stride", "2", "--epochs", "1"]
    tiny += ["--batch-size", "4"]
    tiny += ["--xray-size-px", "32", "32"]
    assert main(["train", *common, *tiny]) == 0
    assert "trained 1 epochs; best validation AUC" in capsys.readouterr().out
    model = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    assert model["network"]["name"] == "resnet18"  # the classification default
    assert main(["predict", *common, "--device", "cpu", "--threshold", "0.3"]) == 0
    assert "test.csv: 2 written, 0 skipped, 0 failed" in capsys.readouterr().out
    assert main(["evaluate", *common]) == 0  # scores prediction's calls, at its threshold
    out = capsys.readouterr().out
    assert "AUC" in out
    assert "at threshold 0.3: sensitivity" in out
    assert main(["evaluate", *common]) == 2  # the report exists
    assert "exists; pass overwrite=True" in capsys.readouterr().err


def test_task_option_overrides_the_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_xray_classification_dataset(tmp_path / "data", 5, seed=1)
    args = ["train", "--manifest", str(manifest), "--out", str(tmp_path / "run")]
    assert main([*args, "--task", "segmentation"]) == 2
    assert "labels must be declared as 0..K-1" in capsys.readouterr().err
    assert main([*args, "--network", "unet"]) == 2
    assert "network must be a classification network, got 'unet'" in capsys.readouterr().err
