"""AdrenalMNIST3D (28^3) with the medimg classification pipeline vs the MedMNIST v2 baselines.

The official ``adrenalmnist3d.npz`` (train 1188, val 98, test 298) is imported with
``import_medmnist`` (NIfTI + manifest with the official split) into a temporary folder and goes
through the normal pipeline: CT chain, seeded augmentation, ``fit`` with model selection by
validation AUC only, then ``predict`` and ``evaluate`` on the validation and test splits. Each
seed trains on ``--threads`` CPU threads; seeds run one after another.

Published (Yang et al., MedMNIST v2, Scientific Data 2023, Table 4, AdrenalMNIST3D):
ResNet-18+3D AUC 0.827 / ACC 0.721, ResNet-50+3D AUC 0.828 / ACC 0.745.

Usage::

    python benchmarks/bench_adrenalmnist3d.py [NPZ] --seeds 0 1 2 --threads 2
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

PUBLISHED = {"ResNet-18+3D": (0.827, 0.721), "ResNet-50+3D": (0.828, 0.745)}


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "npz", nargs="?", type=Path,
        default=Path("../shared/realdata/classification/adrenalmnist3d.npz"),
    )  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--width-factor", type=float, default=0.125)
    p.add_argument("--network", default="resnet18")
    p.add_argument("--balance", default="none", choices=["loss", "sampler", "none"])
    p.add_argument("--work-dir", type=Path, default=None, help="keep runs here (default: temp)")
    p.add_argument("--progress", action="store_true")
    return p.parse_args()


def _config(args: argparse.Namespace, manifest: Path, out: Path, seed: int):  # type: ignore[no-untyped-def]
    from medimg.training import TrainConfig
    from medimg.transforms import AugmentConfig, PreprocessConfig
    from pipelines.classification import ClassificationConfig

    # MedMNIST 3D volumes are 0..255 (AdrenalMNIST3D: binary adrenal shape masks): a fixed
    # window maps them to [0, 1]; the grid is 1 mm already, so resampling keeps the 28^3 grid.
    augment = AugmentConfig(
        flip_axes=(0, 1, 2), p_flip=0.5, rotation_deg=15.0, p_affine=0.3,
        scale_range=(0.9, 1.1), p_noise=0.0, p_blur=0.0, p_gamma=0.0, p_contrast=0.0,
        p_lowres=0.0,
    )  # fmt: skip
    return ClassificationConfig(
        manifest=manifest,
        out_dir=out,
        preprocess=PreprocessConfig(hu_window=(0.0, 255.0), target_spacing_mm=(1.0, 1.0, 1.0)),
        augment=augment,
        network=args.network,
        width_factor=args.width_factor,
        stem_stride=2,
        batch_size=args.batch_size,
        balance=args.balance,
        seed=seed,
        train=TrainConfig(
            max_epochs=args.epochs,
            learning_rate=args.lr,
            weight_decay=args.weight_decay,
            lr_schedule="cosine",
            device="cpu",
            progress=args.progress,
        ),
    )


def _run_seed(args: argparse.Namespace, manifest: Path, root: Path, seed: int) -> dict[str, float]:
    from pipelines.classification import evaluate, predict, train

    cfg = _config(args, manifest, root / f"seed{seed}", seed)
    start = time.perf_counter()
    result = train(cfg)
    seconds = time.perf_counter() - start
    row = {"seconds": seconds, "best_epoch": float(result.fit.best_epoch or 0)}
    for split in ("validation", "test"):
        predict(cfg, split=split)
        scores = evaluate(cfg, split=split).scores
        row[f"{split}_auc"], row[f"{split}_acc"] = scores.auc, scores.accuracy
        row[f"{split}_bacc"] = scores.balanced_accuracy
    print(
        f"seed {seed}: val AUC {row['validation_auc']:.4f} ACC {row['validation_acc']:.4f} | "
        f"test AUC {row['test_auc']:.4f} ACC {row['test_acc']:.4f} "
        f"(balanced {row['test_bacc']:.4f}) | best epoch {int(row['best_epoch'])}/"
        f"{args.epochs} | train {seconds / 60:.1f} min",
        flush=True,
    )
    return row


def _summary(rows: list[dict[str, float]]) -> None:
    def stat(key: str) -> tuple[float, float, float, float]:
        values = [r[key] for r in rows]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return statistics.mean(values), spread, min(values), max(values)

    print(f"\n{len(rows)} seed(s): mean ± SD (min..max)")
    for key in ("validation_auc", "validation_acc", "test_auc", "test_acc", "test_bacc"):
        mean, sd, lo, hi = stat(key)
        print(f"  {key:15s} {mean:.4f} ± {sd:.4f} ({lo:.4f}..{hi:.4f})")
    minutes = [r["seconds"] / 60 for r in rows]
    print(f"  train minutes   {statistics.mean(minutes):.1f} (max {max(minutes):.1f})")
    auc, acc = stat("test_auc")[0], stat("test_acc")[0]
    for name, (p_auc, p_acc) in PUBLISHED.items():
        print(f"  vs {name}: AUC {auc:.4f}/{p_auc} = {auc / p_auc:.3f}x, "
              f"ACC {acc:.4f}/{p_acc} = {acc / p_acc:.3f}x")  # fmt: skip
    print(f"  target test AUC > 0.86: {'met' if auc > 0.86 else 'NOT met'} (mean {auc:.4f})")


def main() -> None:
    args = _args()
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from medimg.manifests.medmnist import import_medmnist

    with tempfile.TemporaryDirectory(prefix="adrenal_") as tmp:
        root = args.work_dir or Path(tmp)
        start = time.perf_counter()
        manifest = root / "data" / "dataset.json"
        if not manifest.is_file():  # a kept --work-dir is imported once
            manifest = import_medmnist(args.npz, root / "data")
        print(f"imported {args.npz} in {time.perf_counter() - start:.0f} s; "
              f"{args.network} width {args.width_factor}, {args.epochs} epochs, batch "
              f"{args.batch_size}, lr {args.lr}, {args.threads} threads", flush=True)  # fmt: skip
        rows = [_run_seed(args, manifest, root, seed) for seed in args.seeds]
    _summary(rows)


if __name__ == "__main__":
    main()
