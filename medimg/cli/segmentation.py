"""``medimg train``, ``medimg predict`` and ``medimg evaluate``: the segmentation pipeline.

Each handler builds the same :class:`pipelines.segmentation.SegmentationConfig` a notebook
would and calls :func:`~pipelines.segmentation.train`, :func:`~pipelines.segmentation.predict` or
:func:`~pipelines.segmentation.evaluate`. torch, MONAI and the pipeline load inside handlers.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

__all__ = ["build_config", "register"]

logger = logging.getLogger(__name__)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", type=Path, required=True, help="dataset manifest (JSON)")
    p.add_argument(
        "--out", type=Path, required=True, help="run folder (model/, predictions/, evaluation/)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument(
        "--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="autocast precision"
    )


def _train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--network", default="dynunet", help="dynunet, unet, segresnet or swinunetr")
    p.add_argument("--features", type=int, default=16, help="channels of the first level")
    p.add_argument(
        "--roi", type=int, nargs=3, default=[96, 96, 96], metavar=("X", "Y", "Z"),
        help="patch size in voxels (default: 96 96 96)",
    )  # fmt: skip
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--iterations-per-epoch", type=int, default=None)
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    p.add_argument("--lr", type=float, default=1e-3, help="initial learning rate")
    p.add_argument("--lr-schedule", default="poly", choices=["poly", "cosine", "constant"])
    p.add_argument("--loss", default="dice_ce", choices=["dice_ce", "dice", "ce"])
    p.add_argument("--validate-every", type=int, default=1, help="epochs between validations")
    p.add_argument("--patience", type=int, default=None, help="early-stopping patience")
    p.add_argument("--resume", action="store_true", help="continue the run in --out/model")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.add_argument("--tensorboard", action="store_true", help="log to --out/model/tensorboard")


def register(sub: Any) -> None:
    """Add the ``train``, ``predict`` and ``evaluate`` subcommands to ``sub``."""
    train = sub.add_parser(
        "train",
        help="train a segmentation network on a manifest",
        description="Validate the manifest, preprocess with the modality's chain, train and "
        "keep the best checkpoint by validation Dice in OUT/model.",
    )
    _common(train)
    _train_options(train)
    train.set_defaults(handler=run_train)
    predict = sub.add_parser(
        "predict",
        help="predict a split with a trained model, onto each image's stored grid",
        description="Write OUT/predictions/<case>.nii.gz for each case of --split; cases "
        "already written are skipped unless --force.",
    )
    _common(predict)
    predict.add_argument("--split", default="test", help="manifest split (default: test)")
    predict.add_argument("--force", action="store_true", help="overwrite existing predictions")
    predict.add_argument(
        "--keep-going", action="store_true", help="record failing cases and continue"
    )
    predict.set_defaults(handler=run_predict)
    evaluate = sub.add_parser(
        "evaluate",
        help="score predictions: Dice, HD95, surface Dice, volumes; CSV, JSON, figures",
        description="Score OUT/predictions against the manifest's labels of --split and write "
        "OUT/evaluation/cases.csv, summary.json and overlay figures.",
    )
    _common(evaluate)
    evaluate.add_argument("--split", default="test", help="manifest split (default: test)")
    evaluate.add_argument("--tolerance-mm", type=float, default=2.0, help="surface Dice tolerance")
    evaluate.add_argument("--force", action="store_true", help="overwrite an existing report")
    evaluate.set_defaults(handler=run_evaluate)


def build_config(args: argparse.Namespace) -> Any:
    """The :class:`~pipelines.segmentation.SegmentationConfig` the arguments describe."""
    from medimg.training import TrainConfig
    from pipelines.segmentation import SegmentationConfig

    train = TrainConfig(
        max_epochs=getattr(args, "epochs", 100),
        iterations_per_epoch=getattr(args, "iterations_per_epoch", None),
        optimizer=getattr(args, "optimizer", "adamw"),
        learning_rate=getattr(args, "lr", 1e-3),
        lr_schedule=getattr(args, "lr_schedule", "poly"),
        validate_every_epochs=getattr(args, "validate_every", 1),
        early_stopping_patience=getattr(args, "patience", None),
        device=args.device,
        precision=args.precision,
        progress=getattr(args, "progress", False),
        tensorboard=getattr(args, "tensorboard", False),
    )
    extra = {}
    if hasattr(args, "network"):
        extra = {
            "network": args.network,
            "base_features": args.features,
            "roi_size_vox": tuple(args.roi),
            "batch_size": args.batch_size,
            "loss": args.loss,
        }
    return SegmentationConfig(
        manifest=args.manifest,
        out_dir=args.out,
        train=train,
        seed=args.seed,
        tolerance_mm=getattr(args, "tolerance_mm", 2.0),
        **extra,
    )


def run_train(args: argparse.Namespace) -> int:
    """Handle ``medimg train``."""
    from pipelines.segmentation import train

    result = train(build_config(args), resume=args.resume)
    fit = result.fit
    best = "n/a" if fit.best_metric is None else f"{fit.best_metric:.4f} (epoch {fit.best_epoch})"
    print(f"trained {fit.epochs_run} epochs; best validation Dice {best}")
    print(f"checkpoint {result.checkpoint} sha256 {result.checkpoint_sha256}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """Handle ``medimg predict``."""
    from pipelines.segmentation import predict

    result = predict(
        build_config(args), split=args.split, overwrite=args.force, fail_fast=not args.keep_going
    )
    counts = {s: sum(c.status == s for c in result.cases) for s in ("written", "skipped", "failed")}
    print(f"{result.out_dir}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    for case in result.cases:
        if case.status == "failed":
            print(f"failed {case.case_id}: {case.error}")
    return 1 if counts["failed"] else 0


def run_evaluate(args: argparse.Namespace) -> int:
    """Handle ``medimg evaluate``."""
    from pipelines.segmentation import evaluate

    result = evaluate(build_config(args), split=args.split, overwrite=args.force)
    print(f"mean Dice {result.summary['mean_dice']:.4f} over {len(result.cases)} cases")
    for name, stats in result.summary["labels"].items():
        print(
            f"  {name}: Dice {stats['dice']['mean']:.4f}, HD95 {stats['hd95_mm']['mean']:.2f} mm, "
            f"surface Dice {stats['surface_dice']['mean']:.4f}"
        )
    print(f"report: {result.out_dir}")
    return 0
