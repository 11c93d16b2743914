"""One process trains exactly as before data sharding: the three tasks' pinned loss curves.

Sharding (``training_shard``), the per-rank streams of ``epoch_batches``/``balanced_indices``/
detection's crops, the gathered validation and the DDP form of ``dice_ce`` must leave a world
of one bit for bit as it was. The figures below were recorded by these very commands on the
code before sharding (commit d8a5712's tree, torch 2.13.0+cpu, one thread, this project's CI
machine, in the contiguous layout: hence ``--no-channels-last``, as channels-last kernels
sum in another order) and are compared exactly: a change of the shard order, a stream or the loss shows
up in the last bits. On another CPU or torch build the kernels may round differently; record
the figures again there with the code before any change to training.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medimg.cli import main
from medimg.synthetic.datasets import (
    write_ct_segmentation_dataset,
    write_xray_classification_dataset,
)
from medimg.synthetic.detection import ChestSettings
from medimg.synthetic.detection_datasets import write_ct_detection_dataset

pytestmark = pytest.mark.slow

PINNED = {
    "segmentation": {"train_loss": [3.3098076581954956, 2.9747238159179688],
                     "val_metric": [0.0976123658791998, 0.10985027580772262]},
    "classification": {"train_loss": [1.3917115926742554, 0.9791680574417114],
                       "val_metric": [None, None]},
    "detection": {"train_loss": [0.1983029842376709], "val_metric": [0.0]},
}  # fmt: skip


def _history(manifest: Path, out: Path, options: list[str]) -> dict[str, list[float | None]]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        args = ["train", "--manifest", str(manifest), "--out", str(out), "--device", "cpu",
                "--no-channels-last"]  # fmt: skip
        assert main([*args, *options]) == 0
    finally:
        torch.set_num_threads(before)
    history = json.loads((out / "model" / "run.json").read_text())["fit"]["history"]
    return {k: history[k] for k in ("train_loss", "val_metric")}


def test_segmentation_is_unchanged(tmp_path: Path) -> None:
    manifest = write_ct_segmentation_dataset(tmp_path / "seg", 5, seed=3)
    options = ["--epochs", "2", "--features", "4", "--roi", "16", "16", "8", "--batch-size",
               "3", "--lr", "0.01"]  # fmt: skip
    assert _history(manifest, tmp_path / "run", options) == PINNED["segmentation"]


def test_classification_is_unchanged(tmp_path: Path) -> None:
    manifest = write_xray_classification_dataset(tmp_path / "cls", 10, seed=1)
    options = ["--width-factor", "0.125", "--stem-stride", "2", "--epochs", "2",
               "--batch-size", "4", "--xray-size-px", "32", "32", "--balance", "sampler"]  # fmt: skip
    assert _history(manifest, tmp_path / "run", options) == PINNED["classification"]


def test_detection_is_unchanged(tmp_path: Path) -> None:
    chest = ChestSettings(diameter_range_mm=(8.0, 16.0))
    manifest = write_ct_detection_dataset(tmp_path / "det", 5, seed=1, settings=chest)
    options = ["--epochs", "1", "--roi", "32", "32", "32", "--batch-size", "2"]
    assert _history(manifest, tmp_path / "run", options) == PINNED["detection"]
