"""Data-parallel training: two CPU processes with gloo against one process, resume, predict.

Tolerance of the loss curves: relative 1e-4. Both runs see the same global batches in the same
order (every rank draws them from ``(seed, epoch)``; no augmentation, no dropout, instance
norm), and each rank's cross-entropy is weighted by its share of the batch, so in exact
arithmetic the averaged gradient *is* the single-process gradient (module notes of
``medimg.training.distributed``). What remains is float32 rounding. A gradient element is a
sum over the batch's n = 3 x 16 x 16 x 8 = 6144 voxels; summed in another order (two shares,
then gloo's sum and a halving) it moves by about sqrt(n) x 6e-8 = 5e-6 relative (n x 6e-8 =
4e-4 at worst). SGD turns that into the same relative error of each update, and the logged
loss, a float64 weighted sum of two float32 means instead of one float32 mean, adds ~1e-7.
Over the 6 steps here that stays near 1e-5; 1e-4 is the tolerance (measured: 2.4e-6 at worst).
The run uses SGD, not AdamW: Adam's first update is about ``lr * sign(g)``, so a gradient
element near zero whose rounding flips its sign moves its weight by 2 lr, and the curves then
agree only to ~1e-3 (measured 4e-4 on this data). The loss is ``ce``: nnU-Net's batch Dice
(``dice_ce``) sums its overlaps over the whole batch, so under DDP it is each rank's share's
Dice (README).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from medimg.cli import main
from medimg.synthetic.datasets import write_ct_segmentation_dataset
from medimg.training import LAST, load_checkpoint

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ["--device", "cpu", "--epochs", "3", "--features", "4", "--roi", "16", "16", "8",
         "--batch-size", "3", "--no-augment", "--lr", "0.01", "--loss", "ce", "--optimizer", "sgd"]  # fmt: skip


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
    """A 5-case dataset (3 training cases: 6 patches, batches of 3 split 2 + 1) and two runs."""
    tmp = tmp_path_factory.mktemp("ddp")
    manifest = write_ct_segmentation_dataset(tmp / "data", 5, seed=3)
    ddp = _torchrun(script=["-m", "medimg", "train", "--manifest", str(manifest),
                            "--out", str(tmp / "ddp"), *TRAIN])  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the ranks' kernels (torchrun sets OMP_NUM_THREADS=1)
    try:
        code = main(["train", "--manifest", str(manifest), "--out", str(tmp / "one"), *TRAIN])
    finally:
        torch.set_num_threads(before)
    assert code == 0
    return {"manifest": manifest, "ddp": tmp / "ddp", "one": tmp / "one", "tmp": tmp}


def _record(run: Path) -> dict[str, object]:
    record: dict[str, object] = json.loads((run / "model" / "run.json").read_text())
    return record


def test_two_ranks_follow_the_single_process_curve(runs: dict[str, Path]) -> None:
    ddp, one = _record(runs["ddp"]), _record(runs["one"])
    assert ddp["world_size"] == 2
    assert one["world_size"] == 1
    history_ddp = ddp["fit"]["history"]  # type: ignore[index]
    history_one = one["fit"]["history"]  # type: ignore[index]
    assert history_ddp["train_loss"] == pytest.approx(history_one["train_loss"], rel=1e-4)
    # validation Dice counts argmax voxels: weights 1e-6 apart flip a few near-tied voxels of
    # the ~10^4 scored, each moving the Dice by ~1e-4
    assert history_ddp["val_metric"] == pytest.approx(history_one["val_metric"], abs=1e-3)
    assert ddp["fit"]["best_epoch"] == one["fit"]["best_epoch"]  # type: ignore[index]


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
