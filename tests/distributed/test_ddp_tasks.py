"""Classification and detection under two gloo ranks: they train, say so, and predict in one process."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from medimg.cli import main
from medimg.synthetic.datasets import write_xray_classification_dataset
from medimg.synthetic.detection import ChestSettings
from medimg.synthetic.detection_datasets import write_ct_detection_dataset

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _train_two_ranks(manifest: Path, out: Path, options: list[str]) -> dict[str, object]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
               "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(_free_port()), "-m", "medimg", "train", "--manifest",
               str(manifest), "--out", str(out), "--device", "cpu", *options]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    record: dict[str, object] = json.loads((out / "model" / "run.json").read_text())
    return record


def _predicts_in_one_process(manifest: Path, run: Path, out: Path) -> dict[str, int]:
    code = main(["predict", "--model", str(run), "--manifest", str(manifest), "--out", str(out),
                 "--device", "cpu"])  # fmt: skip
    assert code == 0
    (name,) = [p for p in out.iterdir() if p.name.endswith("summary.json")]  # the task's
    summary: dict[str, int] = json.loads(name.read_text())
    return summary


def test_classification_trains_on_two_ranks(tmp_path: Path) -> None:
    manifest = write_xray_classification_dataset(tmp_path / "data", 10, seed=1)
    record = _train_two_ranks(manifest, tmp_path / "run", [
        "--width-factor", "0.125", "--stem-stride", "2", "--epochs", "2", "--batch-size", "4",
        "--xray-size-px", "32", "32", "--balance", "sampler",
    ])  # fmt: skip
    assert record["world_size"] == 2
    history = record["fit"]["history"]  # type: ignore[index]
    assert len(history["train_loss"]) == 2
    assert all(math.isfinite(x) for x in history["train_loss"])
    counts, train = record["class_counts"], record["cases"]["train"]  # type: ignore[index]
    assert sum(counts) == len(train)  # every rank's cases counted once, not one shard's
    summary = _predicts_in_one_process(manifest, tmp_path / "run", tmp_path / "pred")
    assert summary["written"] == 2
    assert summary["failed"] == 0


def test_detection_trains_on_two_ranks(tmp_path: Path) -> None:
    chest = ChestSettings(diameter_range_mm=(8.0, 16.0))
    manifest = write_ct_detection_dataset(tmp_path / "data", 5, seed=1, settings=chest)
    record = _train_two_ranks(manifest, tmp_path / "run",
                              ["--epochs", "1", "--roi", "32", "32", "32", "--batch-size", "1"])  # fmt: skip
    assert record["world_size"] == 2
    history = record["fit"]["history"]  # type: ignore[index]
    assert len(history["train_loss"]) == 1
    assert math.isfinite(history["train_loss"][0])
    names = {p.name for p in (tmp_path / "run" / "model").iterdir()}
    assert {"last.pt", "model.json", "run.json"} <= names
    summary = _predicts_in_one_process(manifest, tmp_path / "run", tmp_path / "pred")
    assert summary["written"] == 1
    assert summary["failed"] == 0
