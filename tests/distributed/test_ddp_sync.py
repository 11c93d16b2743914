"""Two gloo ranks against one process: the dice_ce loss curve and the validation metrics.

**Loss curve (tolerance: relative 1e-4).** One process trains on global batches of 4 rows;
each of two ranks trains on its 2 rows of every global batch (what sharded ranks do: the
global batch is the sum of the per-rank batches), with the default ``dice_ce``. The Dice
overlaps are summed over both ranks (``GlobalDiceCE``), cross-entropy is a mean whose rank
means DDP averages, so in exact arithmetic the gradient is the one-process gradient. What
remains is float32 rounding of sums taken in another order (two shares, then gloo's sum):
~sqrt(n) x 6e-8 relative for a sum of n = 4 x 8 x 6 x 5 = 960 voxels, about 2e-6, carried
through 6 SGD steps: well inside 1e-4. Teeth: the same ranks with MONAI's per-rank batch Dice
(``distributed=False``) leave the one-process curve by more than 1e-3 (each rank's Dice is of
its own rows).

**Validation.** With the same weights, each task's ``plan_training`` under two ranks (each
rank preprocesses and scores its validation shard; the outputs are gathered) gives the
one-process metric exactly (the gathered outputs are in case order, so the sums are the
same): Dice mean over cases, AUC over the probabilities, CPM over the findings.
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

from medimg.synthetic.datasets import (
    write_ct_segmentation_dataset,
    write_xray_classification_dataset,
)
from medimg.synthetic.detection import ChestSettings
from medimg.synthetic.detection_datasets import write_ct_detection_dataset

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    import torch
    from medimg.cli import build_parser
    from medimg.cli.tasks import build_configs
    from medimg.fingerprint import load_or_compute_fingerprint
    from medimg.manifests import load_manifest, resolve_cases
    from medimg.tasks import TASKS
    from medimg.training import TrainConfig, fit, segmentation_loss
    from medimg.training.distributed import current, init_from_environment, main_first, shutdown
    from medimg.transforms import preprocessing_for

    init_from_environment(os.environ, device="cpu")
    ctx = current()
    out, data = Path(sys.argv[1]), Path(sys.argv[2])
    tag = f"w{ctx.world_size}r{ctx.rank}"
    torch.set_num_threads(1)

    def net():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(),
                                   torch.nn.Conv3d(4, 3, 1))

    gen = torch.Generator().manual_seed(1)
    images = torch.randn(8, 1, 8, 6, 5, generator=gen)
    shift = torch.tensor([0.0, 0.0, 1.0, 1.0] * 2).view(8, 1, 1, 1, 1)  # rank 1: more foreground
    labels = (images + shift > 0.3).long() + (images + shift > 1.0).long()
    whole = [(images[0:4], labels[0:4]), (images[4:8], labels[4:8])]  # global batches of 4
    rows = slice(2 * ctx.rank, 2 * ctx.rank + 2) if ctx.enabled else slice(0, 4)
    mine = [(x[rows], y[rows]) for x, y in whole]
    cfg = TrainConfig(max_epochs=3, device="cpu", optimizer="sgd", learning_rate=0.05,
                      momentum=0.9, lr_schedule="constant")
    curves = {}
    for name, distributed in (("global", None), ("per_rank", False)):
        if name == "per_rank" and not ctx.enabled:
            continue
        loss = segmentation_loss("dice_ce", distributed=distributed)
        fit(net(), loss, lambda epoch: mine, cfg, out_dir=out / f"{name}-{ctx.world_size}")
        record = torch.load(out / f"{name}-{ctx.world_size}" / "last.pt", weights_only=False)
        curves[name] = record["trainer"]["history"]["train_loss"]

    metrics = {}
    for task_name, n_train, argv in (
        ("segmentation", 2, ["--network", "unet", "--features", "4", "--roi", "16", "16", "8"]),
        ("classification", 4, ["--width-factor", "0.125", "--stem-stride", "2",
                               "--xray-size-px", "32", "32"]),
        ("detection", 2, ["--roi", "32", "32", "32"]),
    ):
        task = TASKS[task_name]
        manifest_path = data / task_name / "dataset.json"
        args = build_parser().parse_args(["train", "--manifest", str(manifest_path), "--out",
                                          str(out / "unused"), "--device", "cpu", *argv])
        tcfg = build_configs(args, task)
        manifest = load_manifest(manifest_path)
        fingerprint = main_first(lambda: load_or_compute_fingerprint(manifest_path, seed=0))
        chain = preprocessing_for(manifest.channels[0].modality, tcfg.preprocess, fingerprint)
        cases = resolve_cases(manifest, manifest_path)
        plan = task.plan_training(tcfg, manifest, fingerprint, chain,
                                  (cases[:n_train], cases[n_train:]))
        weights = out / f"{task_name}.pt"
        if not ctx.enabled:
            torch.save(plan.model.state_dict(), weights)
        plan.model.load_state_dict(torch.load(weights))
        plan.model.eval()
        with torch.no_grad():
            metrics[task_name] = plan.validate(plan.model, torch.device("cpu"))
    (out / f"{tag}.json").write_text(json.dumps({"curves": curves, "metrics": metrics}))
    shutdown()  # as `medimg train` does: leave the group together, not at interpreter exit
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, dict[str, object]]]:
    tmp = tmp_path_factory.mktemp("sync")
    data = tmp / "data"
    write_ct_segmentation_dataset(data / "segmentation", 5, seed=3)
    write_xray_classification_dataset(data / "classification", 10, seed=1)
    chest = ChestSettings(diameter_range_mm=(8.0, 16.0))
    write_ct_detection_dataset(data / "detection", 5, seed=1, settings=chest)
    script = tmp / "sync.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    one = subprocess.run([sys.executable, str(script), str(tmp), str(data)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node",
         "2", "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), str(script),
         str(tmp), str(data)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    return {tag: json.loads((tmp / f"{tag}.json").read_text()) for tag in ("w1r0", "w2r0", "w2r1")}


def test_dice_ce_follows_the_one_process_curve(
    results: dict[str, dict[str, dict[str, object]]],
) -> None:
    one = results["w1r0"]["curves"]["global"]
    for tag in ("w2r0", "w2r1"):
        curves = results[tag]["curves"]
        assert curves["global"] == pytest.approx(one, rel=1e-4)
        per_rank, reference = curves["per_rank"], one  # MONAI's batch Dice of each rank's rows
        assert max(abs(a - b) / abs(b) for a, b in zip(per_rank, reference, strict=True)) > 1e-3  # type: ignore[arg-type]


def test_gathered_validation_equals_one_process(
    results: dict[str, dict[str, dict[str, object]]],
) -> None:
    one = results["w1r0"]["metrics"]
    assert set(one) == {"segmentation", "classification", "detection"}
    assert 0 < one["segmentation"] < 1  # type: ignore[operator]
    assert 0 <= one["classification"] <= 1  # type: ignore[operator]
    for tag in ("w2r0", "w2r1"):
        assert results[tag]["metrics"] == one  # exactly: every rank, the same metric
