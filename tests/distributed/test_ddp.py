"""Data-parallel training through the CLI: two CPU processes with gloo, shards, resume, predict.

Each rank preprocesses only its own shard of the cases (recorded here by wrapping the chain),
rank 0 alone writes the run, the checkpoint predicts in one process, and a run killed with
``kill -9`` resumes to the uninterrupted run's weights bit for bit. The loss curve against one
process with the same global batch is ``test_ddp_sync.py``'s (sharded ranks draw other
batches than one process, so the CLI runs cannot be compared step by step).
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from medimg.cli import main
from medimg.manifests import load_manifest, resolve_cases
from medimg.synthetic.datasets import write_ct_segmentation_dataset
from medimg.training import LAST, load_checkpoint
from medimg.training.distributed import Distributed, training_shard, validation_shard

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ["--device", "cpu", "--epochs", "3", "--features", "4", "--roi", "16", "16", "8",
         "--batch-size", "3", "--lr", "0.01", "--optimizer", "sgd"]  # fmt: skip

_RECORDING = textwrap.dedent(
    """
    import os, sys
    import medimg.tasks.segmentation as task
    from medimg.cli import main

    real = task.apply_chain

    def recording(chain, data):
        with open(sys.argv[1] + "." + os.environ["RANK"], "a") as f:
            f.write(os.path.basename(os.path.dirname(data["image"])) + "/"
                    + os.path.basename(data["image"]) + "\\n")
        return real(chain, data)

    task.apply_chain = recording
    sys.exit(main(sys.argv[2:]))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _torchrun(*args: str, script: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
               "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(_free_port()), *args, *script]  # fmt: skip
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 5-case dataset (3 training cases: 2 per rank, one repeated) and a two-rank run."""
    tmp = tmp_path_factory.mktemp("ddp")
    manifest = write_ct_segmentation_dataset(tmp / "data", 5, seed=3)
    script = tmp / "recording.py"
    script.write_text(_RECORDING)
    ddp = _torchrun(script=[str(script), str(tmp / "loaded"), "train", "--manifest",
                            str(manifest), "--out", str(tmp / "ddp"), *TRAIN])  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    return {"manifest": manifest, "ddp": tmp / "ddp", "tmp": tmp}


def _record(run: Path) -> dict[str, object]:
    record: dict[str, object] = json.loads((run / "model" / "run.json").read_text())
    return record


def test_each_rank_preprocessed_only_its_shards(runs: dict[str, Path]) -> None:
    record = _record(runs["ddp"])
    assert record["world_size"] == 2
    cases = record["cases"]
    manifest = resolve_cases(load_manifest(runs["manifest"]), runs["manifest"])
    image_of = {c.case_id: f"{Path(c.images[0]).parent.name}/{Path(c.images[0]).name}"
                for c in manifest}  # fmt: skip
    train, val = cases["train"], cases["validation"]  # type: ignore[index]
    assert len(train) == 3
    for rank in range(2):
        ctx = Distributed(rank, 2)
        mine = training_shard(train, seed=0, ctx=ctx) + validation_shard(val, ctx)
        loaded = (runs["tmp"] / f"loaded.{rank}").read_text().split()
        assert sorted(loaded) == sorted(image_of[c] for c in mine)  # its shards, once each
        assert len(training_shard(train, seed=0, ctx=ctx)) == 2  # ceil(3 / 2)
    history = record["fit"]["history"]  # type: ignore[index]
    assert len(history["train_loss"]) == 3
    assert all(math.isfinite(x) for x in history["train_loss"])


def test_rank_zero_alone_wrote_the_run(runs: dict[str, Path]) -> None:
    model = runs["ddp"] / "model"
    names = {p.name for p in model.iterdir()} - {".medimg.lock"}
    assert names == {
        "best.pt",
        "curves.png",
        "fingerprint.json",
        "last.pt",
        "model.json",
        "run.json",
    }


def test_the_ddp_checkpoint_predicts_in_one_process(runs: dict[str, Path]) -> None:
    out = runs["tmp"] / "pred"
    code = main(["predict", "--model", str(runs["ddp"]), "--manifest", str(runs["manifest"]),
                 "--out", str(out), "--device", "cpu"])  # fmt: skip
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["written"] == 1
    assert summary["failed"] == 0


_DYING = textwrap.dedent(
    """
    import os, signal, sys
    import medimg.tasks.segmentation as task
    from medimg.cli import main

    real = task.epoch_batches

    def dying(*args, epoch, **kwargs):
        batches = real(*args, epoch=epoch, **kwargs)
        if epoch != 2:
            return batches
        def killed_after_one_step():
            yield batches[0]
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9 during the third epoch
            yield batches[1]
        return killed_after_one_step()

    task.epoch_batches = dying
    sys.exit(main(sys.argv[1:]))
    """
)


def test_a_killed_ddp_run_resumes_exactly(runs: dict[str, Path]) -> None:
    """Killed in epoch 3 (last.pt after epoch 2), resumed with ``--nproc 2``: equal weights."""
    tmp = runs["tmp"]
    script = tmp / "dying.py"
    script.write_text(_DYING)
    out = tmp / "killed"
    args = ["train", "--manifest", str(runs["manifest"]), "--out", str(out), *TRAIN]
    killed = _torchrun(script=[str(script), *args])
    assert killed.returncode != 0
    assert load_checkpoint(out / "model" / LAST)["trainer"]["epoch"] == 2
    env_threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        assert main([*args, "--resume", "--nproc", "2"]) == 0
    finally:
        if env_threads is None:
            os.environ.pop("OMP_NUM_THREADS")
        else:
            os.environ["OMP_NUM_THREADS"] = env_threads
    resumed = load_checkpoint(out / "model" / LAST)["model"]
    straight = load_checkpoint(runs["ddp"] / "model" / LAST)["model"]
    assert list(resumed) == list(straight)
    for name in resumed:
        assert torch.equal(resumed[name], straight[name]), name
    assert _record(out)["world_size"] == 2
