"""Segmentation training throughput: medimg's training loop vs MONAI's standard loop.

Run (small; the lead reruns it on a quiet machine)::

    OMP_NUM_THREADS=2 python benchmarks/bench_training.py
    OMP_NUM_THREADS=2 python benchmarks/bench_training.py --epochs 60 --iterations 20  # Dice

Both loops train the same network (medimg's ``dynunet`` as the demo builds it: DynUNet, 8
base features, no deep supervision so MONAI's loop needs no special casing) from the same
initial weights, on the same patches size (``--roi``, the demo's 32x32x16) and batch (2 patches
per step), with Dice + cross-entropy and AdamW at the same learning rate, for ``--epochs`` x
``--iterations`` optimizer steps, on the demo's data (``medimg demo``:
:func:`~medimg.synthetic.datasets.write_ct_segmentation_dataset`, ``--cases`` cases).

* **medimg**: :func:`medimg.training.fit` with the segmentation task's own plan (label-balanced
  patches from :func:`~medimg.training.epoch_batches`, its loss, poly schedule, gradient
  clipping, a checkpoint written after every epoch), in ``--precisions`` (``fp32``; ``bf16``
  is bfloat16 autocast).
* **MONAI**: the standard loop of MONAI's tutorials: ``CacheDataset`` (here over medimg's
  preprocessed volumes, so both read identical voxels) with ``RandCropByLabelClassesd``
  (2 samples per case), ``DataLoader(batch_size=1, shuffle=True)``, ``DynUNet``,
  ``DiceCELoss(to_onehot_y=True, softmax=True)``, ``torch.optim.AdamW``; and the same inside
  ``torch.autocast("cpu", torch.bfloat16)`` as its bfloat16 peer.

Every method runs once per round for ``--repeats`` rounds (medians printed, each run listed:
a shared machine drifts by 20 % between runs of a few seconds). Timed: the training loop
alone (patch drawing included; data set-up, preprocessing and caching
excluded, as is the final validation), after a few untimed warm-up steps of the network in each
precision (the first loop run in a process was 9x slower than the next ones). Reported:
patches per second, the ratio against MONAI's float32 loop, and the validation Dice (mean over
foreground labels and held-out cases, sliding window in float32 for every model), which is how
"the same final Dice" for bfloat16 is checked: compare the bf16 row's Dice with the fp32 row's
after the same number of steps.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def _setup(work: Path, args: argparse.Namespace) -> tuple[Any, Any]:
    """The segmentation task's training plan for the demo data (untimed)."""
    from medimg.fingerprint import load_or_compute_fingerprint
    from medimg.manifests import load_manifest, resolve_cases
    from medimg.synthetic.datasets import write_ct_segmentation_dataset
    from medimg.tasks.segmentation import SegmentationConfig, SegmentationTask
    from medimg.training import TrainConfig, split_cases
    from medimg.transforms import preprocessing_for

    manifest_path = write_ct_segmentation_dataset(work / "data", args.cases, seed=0)
    cfg = SegmentationConfig(
        manifest=manifest_path,
        out_dir=work / "run-fp32",
        network="dynunet",
        base_features=8,
        deep_supervision=False,
        roi_size_vox=tuple(args.roi),
        batch_size=2,
        samples_per_case=2,
        augment=None,
        train=TrainConfig(
            max_epochs=args.epochs,
            iterations_per_epoch=args.iterations,
            learning_rate=args.lr,
            validate_every_epochs=args.epochs,
            device="cpu",
        ),
        seed=0,
    )
    manifest = load_manifest(manifest_path)
    fingerprint = load_or_compute_fingerprint(manifest_path, seed=0)
    chain = preprocessing_for(manifest.channels[0].modality, cfg.preprocess, fingerprint)
    split = split_cases(resolve_cases(manifest, manifest_path), fraction=0.2, seed=0)
    task = SegmentationTask()
    return cfg, task.plan_training(cfg, manifest, fingerprint, chain, split)


def run_medimg(plan: Any, cfg: Any, init: dict[str, Any]) -> tuple[float, torch.nn.Module]:
    from medimg.training import fit

    model = copy.deepcopy(plan.model)
    model.load_state_dict(init)
    start = time.perf_counter()
    fit(model, plan.loss, plan.batches, cfg.train, out_dir=cfg.model_dir, lock=False)
    return time.perf_counter() - start, model


def run_monai(
    plan: Any, samples: list[dict[str, Any]], args: argparse.Namespace, init: dict[str, Any],
    bf16: bool,
) -> tuple[float, torch.nn.Module]:  # fmt: skip
    from monai.data import CacheDataset, DataLoader
    from monai.losses import DiceCELoss
    from monai.transforms import RandCropByLabelClassesd

    n_classes = plan.network.out_channels
    crop = RandCropByLabelClassesd(
        keys=("image", "label"), label_key="label", spatial_size=tuple(args.roi),
        num_classes=n_classes, num_samples=2,
    )  # fmt: skip
    crop.set_random_state(0)
    dataset = CacheDataset(samples, transform=crop, cache_rate=1.0, progress=False)
    loader = DataLoader(dataset, batch_size=1, shuffle=True, num_workers=0)
    model = copy.deepcopy(plan.model)
    model.load_state_dict(init)
    model.train()
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-5)
    steps = args.epochs * args.iterations
    start = time.perf_counter()
    for batch in itertools.islice(itertools.cycle(loader), steps):
        x, y = batch["image"], batch["label"]
        opt.zero_grad()
        if bf16:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = loss_fn(model(x), y)
        else:
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    return time.perf_counter() - start, model


def warm_up(plan: Any, args: argparse.Namespace, steps: int = 3) -> None:
    """A few untimed steps in each precision: the first loop would pay oneDNN's set-up."""
    model = copy.deepcopy(plan.model).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn((2, 1, *args.roi))
    for bf16 in (False, True):
        for _ in range(steps):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(x).float().square().mean()
            loss.backward()
            opt.step()


def _monai_samples(plan: Any) -> list[dict[str, Any]]:
    """medimg's preprocessed training volumes, as MONAI dictionaries of plain tensors."""
    batches_of = plan.batches.__closure__
    for cell in batches_of or ():
        value = cell.cell_contents
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return [
                {
                    "image": torch.as_tensor(s["image"]).as_subclass(torch.Tensor),
                    "label": torch.as_tensor(s["label"]).as_subclass(torch.Tensor),
                }
                for s in value
            ]
    raise RuntimeError("the segmentation plan's batches hold no samples list")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=20, help="optimizer steps per epoch")
    parser.add_argument("--roi", type=int, nargs=3, default=(32, 32, 16))
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every method")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from medimg.inference._runtime import cpu_has_native_bf16

    native = cpu_has_native_bf16()
    patches = args.epochs * args.iterations * 2
    print(
        f"== training: DynUNet (8 base features), patch {tuple(args.roi)}, batch 2, "
        f"{args.epochs}x{args.iterations} steps, {args.threads} threads; bf16 "
        f"{'native' if native else 'EMULATED (no AVX512-BF16/AMX): bf16 speed not meaningful'}"
    )
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        cfg, plan = _setup(work, args)
        torch.manual_seed(0)
        init = copy.deepcopy(plan.model.state_dict())
        validate = plan.validate
        samples = _monai_samples(plan)
        warm_up(plan, args)
        runs: dict[str, Any] = {"monai fp32 (CacheDataset+DataLoader)": lambda r: run_monai(
            plan, samples, args, init, False)}  # fmt: skip
        if "bf16" in args.precisions.split(","):
            runs["monai + autocast(bf16)"] = lambda r: run_monai(plan, samples, args, init, True)
        for precision in args.precisions.split(","):

            def medimg(r: int, precision: str = precision) -> tuple[float, torch.nn.Module]:
                train = dataclasses.replace(cfg.train, precision=precision)
                out = work / f"run-{precision}-{r}"
                return run_medimg(plan, dataclasses.replace(cfg, out_dir=out, train=train), init)

            runs[f"medimg {precision}"] = medimg
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        dice: dict[str, list[float]] = {name: [] for name in runs}
        for r in range(args.repeats):  # every method once per round: drift hits all alike
            for name, run in runs.items():
                took, model = run(r)
                seconds[name].append(took)
                dice[name].append(validate(model, "cpu"))
        ref = statistics.median(seconds[next(iter(runs))])
        for name in runs:
            t = statistics.median(seconds[name])
            print(
                f"  {name:<38} {t:7.1f} s  {patches / t:6.1f} patches/s  "
                f"x{ref / t:.2f} MONAI fp32 throughput  validation Dice "
                f"{statistics.median(dice[name]):.3f}  (runs: "
                f"{', '.join(f'{x:.1f}' for x in seconds[name])} s; Dice "
                f"{', '.join(f'{x:.3f}' for x in dice[name])})",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
