"""Bad inputs of ``medimg train/predict/evaluate`` per task: values the stage configs refuse,
options of another task, a run that is not there, a task without an engine.

The manifests here are only routed (:func:`medimg.manifests.task_of` reads the raw JSON) and
every error comes before files are read, so they hold no images.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from catalogue_helpers import BadInput, check_bad_input


def _manifest(tmp: Path, task: str) -> Path:
    raw: dict[str, object] = {"schema_version": 1, "name": "x", "channels": [{"modality": "CT"}]}
    if task == "segmentation":
        raw["labels"] = [{"value": 0, "name": "background"}, {"value": 1, "name": "liver"}]
        raw["training"] = [{"id": "a", "image": "a.nii.gz", "label": "a_seg.nii.gz"}]
    else:
        raw["classes"] = ["normal", "nodule"]
        raw["training"] = [{"id": "a", "image": "a.nii.gz", "class": "normal"}]
    path = tmp / f"{task}.json"
    path.write_text(json.dumps(raw))
    return path


def _cmd(command: str, task: str, *extra: str) -> Callable[[Path], Sequence[str]]:
    def make(tmp: Path) -> Sequence[str]:
        return [command, "--manifest", str(_manifest(tmp, task)), "--out", str(tmp / "out"),
                *extra]  # fmt: skip

    return make


def _other(command: str, task: str, flag: str, owner: str) -> str:
    return (
        rf"error: options of medimg {command} must apply to the {task} task of "
        rf"{{tmp}}/{task}\.json, got {flag} \(an option of [a-z ]*\b{owner}\b[a-z ]*\); drop it"
    )


CATALOGUE = [
    BadInput(
        "train_lr_nan",
        _cmd("train", "segmentation", "--lr", "nan"),
        2,
        r"error: learning_rate must be > 0 and finite, got nan",
    ),
    BadInput(
        "train_lr_inf",
        _cmd("train", "classification", "--lr", "inf"),
        2,
        r"error: learning_rate must be > 0 and finite, got inf",
    ),
    BadInput(
        "train_batch_size_zero",
        _cmd("train", "classification", "--batch-size", "0"),
        2,
        r"error: batch_size must be >= 1, got 0",
    ),
    BadInput(
        "predict_split_nosuch",
        _cmd("predict", "segmentation", "--split", "nosuch"),
        2,
        r"error: split must be one of training, validation, test, got 'nosuch'",
    ),
    BadInput(
        "train_resume_without_run",
        _cmd("train", "segmentation", "--resume"),
        2,
        r"error: --resume needs a run to continue, got no last\.pt in {tmp}/out/model; "
        r"drop --resume to start a new run",
    ),
    BadInput(
        "train_loss_for_classification",
        _cmd("train", "classification", "--loss", "dice"),
        2,
        _other("train", "classification", "--loss", "segmentation"),
    ),
    BadInput(
        "train_balance_for_segmentation",
        _cmd("train", "segmentation", "--balance", "sampler"),
        2,
        _other("train", "segmentation", "--balance", "classification"),
    ),
    BadInput(
        "predict_threshold_for_segmentation",
        _cmd("predict", "segmentation", "--threshold", "0.3"),
        2,
        _other("predict", "segmentation", "--threshold", "classification"),
    ),
    BadInput(
        "predict_mirror_axes_for_classification",
        _cmd("predict", "classification", "--mirror-axes", "0"),
        2,
        _other("predict", "classification", "--mirror-axes", "segmentation"),
    ),
    BadInput(
        "evaluate_tolerance_for_classification",
        _cmd("evaluate", "classification", "--tolerance-mm", "1"),
        2,
        _other("evaluate", "classification", "--tolerance-mm", "segmentation"),
    ),
    BadInput(
        "train_task_unknown",
        _cmd("train", "segmentation", "--task", "registration"),
        2,
        r"error: task must be one of segmentation, classification.*, got 'registration'",
    ),
]


@pytest.mark.parametrize("entry", CATALOGUE, ids=lambda e: e.kind)
def test_bad_task_input(
    entry: BadInput, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_bad_input(entry, tmp_path, capsys)
