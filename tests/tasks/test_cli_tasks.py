"""``medimg train/predict/evaluate``: task routing, one default per option, refused options."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from medimg.cli import build_parser, main
from medimg.cli._task_options import option_field as _field
from medimg.cli.tasks import OPTIONS, build_configs
from medimg.tasks import TASKS, SegmentationConfig
from medimg.tasks.detection import DetectionConfig
from medimg.training import TrainConfig


def _detection_manifest(tmp: Path) -> Path:
    raw = {"schema_version": 2, "task": "detection", "name": "d", "classes": ["nodule"],
           "training": [{"id": "a", "image": "a.nii.gz", "boxes": []}]}  # fmt: skip
    path = tmp / "det.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize("command", ["train", "predict", "evaluate"])
def test_a_task_without_an_engine_is_named(
    command: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(TASKS, "detection", raising=False)  # until the detection task lands
    manifest = _detection_manifest(tmp_path)
    assert main([command, "--manifest", str(manifest), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: {manifest} is a detection manifest, but the detection task is not available "
        "in this version of medimg yet (tasks with an engine: segmentation, classification"
    )


def test_every_option_sets_a_field_of_some_task() -> None:
    for command, options in OPTIONS.items():
        for dest, option in options.items():
            assert any(_field(option, t) is not None for t in TASKS.values()), (command, dest)


def test_defaults_are_the_configs(tmp_path: Path) -> None:
    parser = build_parser()
    args = parser.parse_args(["train", "--manifest", "m.json", "--out", str(tmp_path)])
    cfg = build_configs(args, TASKS["segmentation"])
    plain = SegmentationConfig(manifest=Path("m.json"), out_dir=tmp_path)
    assert cfg == plain  # nothing the command line set on its own
    assert cfg.train == TrainConfig()


def test_help_shows_the_dataclass_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    loss = next(f for f in dataclasses.fields(SegmentationConfig) if f.name == "loss")
    assert f"dice_ce, dice or ce (segmentation only; default: {loss.default})" in text
    assert "(default: segmentation 2, classification 32" in text  # --batch-size
    epochs = TrainConfig().max_epochs  # --epochs: each task's own default training config
    detection = DetectionConfig(manifest=Path("m"), out_dir=Path("o")).train.max_epochs
    assert (
        f"(default: segmentation {epochs}, classification {epochs}, detection {detection})" in text
    )


def test_predict_fails_fast_unless_keep_going(tmp_path: Path) -> None:
    parser = build_parser()
    base = ["predict", "--manifest", "m.json", "--out", str(tmp_path)]
    task = TASKS["segmentation"]
    with_model = build_configs(parser.parse_args([*base, "--model", str(tmp_path)]), task)
    assert with_model.fail_fast  # --model does not turn keep-going on
    assert with_model.out_dir == tmp_path
    kept = build_configs(parser.parse_args([*base, "--keep-going"]), task)
    assert not kept.fail_fast
    assert kept.out_dir == tmp_path / "predictions"
    assert kept.model_dir == tmp_path / "model"


def test_evaluate_writes_where_the_task_says(tmp_path: Path) -> None:
    parser = build_parser()
    args = parser.parse_args(["evaluate", "--manifest", "m.json", "--out", str(tmp_path),
                              "--split", "validation"])  # fmt: skip
    assert build_configs(args, TASKS["segmentation"]).out_dir == tmp_path / "evaluation"
    cls = build_configs(args, TASKS["classification"])
    assert cls.out_dir == tmp_path / "evaluation" / "validation"
    assert cls.split == "validation"


def test_train_options_replace_fields_of_the_tasks_own_default_training_config() -> None:
    parser = build_parser()
    args = parser.parse_args(["train", "--manifest", "m.json", "--out", "o", "--epochs", "1"])
    cfg = build_configs(args, TASKS["detection"])
    default = DetectionConfig(manifest=Path("m"), out_dir=Path("o"))
    assert cfg.train == dataclasses.replace(default.train, max_epochs=1)  # lr 2e-3, cosine kept
    assert cfg.preprocess == default.preprocess  # 2 mm, lung window
    args = parser.parse_args(
        ["train", "--manifest", "m.json", "--out", "o", "--roi", "32", "32", "32"]
    )
    assert build_configs(args, TASKS["detection"]).patch_size_vox == (32, 32, 32)
