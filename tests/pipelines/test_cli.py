from __future__ import annotations

from pathlib import Path

import pytest

from medimg.cli import main
from medimg.synthetic.datasets import write_ct_segmentation_dataset


def test_train_predict_evaluate_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_ct_segmentation_dataset(tmp_path / "data", 5, seed=1)
    common = ["--manifest", str(manifest), "--out", str(tmp_path / "run")]
    tiny = ["--network", "unet", "--features", "4", "--roi", "16", "16", "8", "--epochs", "1"]
    assert main(["train", *common, "--device", "cpu", *tiny]) == 0
    assert "trained 1 epochs; best validation Dice" in capsys.readouterr().out
    assert main(["train", *common, *tiny]) == 2  # refuses to overwrite without --resume
    assert "a run exists here; resume it" in capsys.readouterr().err
    assert main(["predict", *common, "--device", "cpu"]) == 0
    assert "1 written, 0 skipped, 0 failed" in capsys.readouterr().out
    assert main(["evaluate", *common]) == 0
    out = capsys.readouterr().out
    assert "mean Dice" in out
    assert "lesion: Dice" in out
    assert main(["evaluate", *common]) == 2
    assert "exists; pass overwrite=True (--force)" in capsys.readouterr().err


def test_train_reports_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "--manifest", "m.json", "--out", str(tmp_path), "--network", "resnet18"]
    args += ["--task", "segmentation"]  # the options are checked before the manifest is read
    assert main(args) == 2
    assert "network must be a segmentation network, got 'resnet18'" in capsys.readouterr().err


def test_demo_short_run_is_honest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["demo", "--out", str(tmp_path), "--cases", "5", "--epochs", "1", "--device", "cpu"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "mean held-out Dice" in out
    assert "not done yet: post-processing" in out
    report = (tmp_path / "report.md").read_text()
    assert "Not done yet:" in report
    assert "- training augmentation off" in report  # the demo says where it departs
    assert "| case_004 | liver |" in report
    assert main(args) == 2  # an earlier demo is there
    assert "pass --force to replace it" in capsys.readouterr().err


def test_augmentation_and_mirroring_flags() -> None:
    from medimg.cli import build_parser
    from medimg.cli.tasks import build_configs
    from medimg.tasks import TASKS

    parser = build_parser()
    base = ["--manifest", "m.json", "--out", "o"]
    task = TASKS["segmentation"]
    trained = build_configs(parser.parse_args(["train", *base, "--no-augment"]), task)
    assert trained.augment is None
    assert build_configs(parser.parse_args(["train", *base]), task).augment is not None
    args = parser.parse_args(["predict", *base, "--mirror-axes", "0", "2"])
    predicted = build_configs(args, task)
    assert predicted.options.mirror_axes == (0, 2)
    assert predicted.fail_fast  # the library's default: no --keep-going, no keep-going
