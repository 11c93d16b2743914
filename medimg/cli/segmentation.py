"""``medimg train``, ``medimg predict`` and ``medimg evaluate``: segmentation and classification.

The pipeline follows the manifest's task (``--task auto``, the default: a manifest with
``classes`` is classification, else segmentation) or ``--task``. Each handler builds the same
config a notebook would (:class:`pipelines.segmentation.SegmentationConfig` or
:class:`pipelines.classification.ClassificationConfig`) and calls the pipeline's ``train``,
``predict`` or ``evaluate``. torch, MONAI and the pipelines load inside handlers.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from medimg.cli import positive_int

__all__ = ["build_classification_config", "build_config", "register", "resolve_task"]

logger = logging.getLogger(__name__)

SPLITS = ("training", "validation", "test")


def _positive_finite(text: str) -> float:
    """An argparse type: a finite number > 0 (``--lr nan`` and ``--lr inf`` are refused)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", type=Path, required=True, help="dataset manifest (JSON)")
    p.add_argument(
        "--out", type=Path, required=True, help="run folder (model/, predictions/, evaluation/)"
    )
    p.add_argument(
        "--task", default="auto", choices=["auto", "segmentation", "classification"],
        help="pipeline; auto (default): classification when the manifest declares classes",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument(
        "--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="autocast precision"
    )


def _train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--network", default=None,
        help="segmentation: dynunet (default), unet, segresnet, swinunetr; classification: "
        "resnet18 (default), resnet50, densenet121, efficientnet-b0",
    )  # fmt: skip
    p.add_argument("--features", type=int, default=16, help="channels of the first level")
    p.add_argument(
        "--roi", type=int, nargs="+", default=None, metavar="N",
        help="segmentation: patch size X Y Z (default: 96 96 96); classification: pad/crop "
        "every image to this size (default: none)",
    )  # fmt: skip
    p.add_argument(
        "--batch-size", type=positive_int, default=None, help="default: 2 (seg.), 32 (cls.)"
    )
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--iterations-per-epoch", type=int, default=None)
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    p.add_argument("--lr", type=_positive_finite, default=1e-3, help="initial learning rate")
    p.add_argument("--lr-schedule", default="poly", choices=["poly", "cosine", "constant"])
    p.add_argument("--loss", default="dice_ce", choices=["dice_ce", "dice", "ce"], help="seg.")
    p.add_argument("--width-factor", type=float, default=1.0, help="classifier width (ResNet)")
    p.add_argument("--stem-stride", type=int, default=1, help="ResNet first-conv stride, 1 or 2")
    p.add_argument(
        "--balance", default="loss", choices=["loss", "sampler", "none"],
        help="classification: class-weighted loss (default), balanced sampler or none",
    )  # fmt: skip
    p.add_argument("--multi-label", action="store_true", help="classification: sigmoid + BCE")
    p.add_argument(
        "--xray-size-px", type=int, nargs=2, default=None, metavar=("H", "W"),
        help="X-ray classification: resize-with-pad size (default: 512 512)",
    )  # fmt: skip
    p.add_argument(
        "--no-augment", action="store_true",
        help="train without the modality's augmentation (rotation/scaling, noise, blur, "
        "contrast, gamma, low resolution; on by default)",
    )  # fmt: skip
    p.add_argument("--validate-every", type=int, default=1, help="epochs between validations")
    p.add_argument("--patience", type=int, default=None, help="early-stopping patience")
    p.add_argument("--resume", action="store_true", help="continue the run in --out/model")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.add_argument("--tensorboard", action="store_true", help="log to --out/model/tensorboard")


def register(sub: Any) -> None:
    """Add the ``train``, ``predict`` and ``evaluate`` subcommands to ``sub``."""
    train = sub.add_parser(
        "train",
        help="train a segmentation or classification network on a manifest",
        description="Validate the manifest, preprocess with the modality's chain, train and "
        "keep the best checkpoint by validation Dice (segmentation) or AUC (classification) "
        "in OUT/model.",
    )
    _common(train)
    _train_options(train)
    train.set_defaults(handler=run_train)
    predict = sub.add_parser(
        "predict",
        help="predict a split with a trained model (label maps or class probabilities)",
        description="Segmentation: OUT/predictions/<case>.nii.gz on each image's stored grid "
        "(with --model: OUT/<case>.nii.gz), summary.json (per case: status, time, peak memory, "
        "error, resume key; rewritten after every case) beside them; classification: "
        "OUT/predictions/<split>.csv and <split>.summary.json. A case is skipped unless --force "
        "only when it was done with the same model (checkpoint SHA-256), preprocessing, "
        "inference settings and input file contents, and its output is unchanged and on the "
        "image's grid; otherwise it is predicted again. The output folder is locked while the "
        "run lasts, and temporaries of an interrupted run are removed. Exit status 1 when a "
        "case failed.",
    )
    _common(predict)
    predict.add_argument(
        "--model", type=Path, default=None, metavar="DIR",
        help="segmentation: a trained model folder (model.json) or a run folder holding model/; "
        "predictions then go to --out itself and failing cases are recorded while the batch "
        "goes on (as with --keep-going)",
    )  # fmt: skip
    predict.add_argument("--split", default="test", choices=SPLITS, help="manifest split")
    predict.add_argument(
        "--threshold", type=float, default=0.5,
        help="classification: probability at which the positive class is called",
    )  # fmt: skip
    predict.add_argument(
        "--mirror-axes", type=int, nargs="+", default=(), metavar="AXIS",
        help="segmentation: test-time mirroring over these axes (0 1 2 = X Y Z, RAS), the "
        "logits of every flip combination averaged (2**k passes; default: none)",
    )  # fmt: skip
    predict.add_argument("--force", action="store_true", help="overwrite existing predictions")
    predict.add_argument(
        "--keep-going", action="store_true", help="record failing cases and continue"
    )
    predict.add_argument(
        "--progress", action="store_true", help="show progress bars over cases and windows"
    )
    predict.set_defaults(handler=run_predict)
    evaluate = sub.add_parser(
        "evaluate",
        help="score predictions (Dice, HD95, ... or AUC, accuracy, ...); CSV, JSON, figures",
        description="Score OUT/predictions against the manifest's labels or classes of --split "
        "and write OUT/evaluation/cases.csv, summary.json and figures (overlays, or ROC and "
        "confusion matrix).",
    )
    _common(evaluate)
    evaluate.add_argument("--split", default="test", choices=SPLITS, help="manifest split")
    evaluate.add_argument("--tolerance-mm", type=float, default=2.0, help="surface Dice tolerance")
    evaluate.add_argument("--force", action="store_true", help="overwrite an existing report")
    evaluate.set_defaults(handler=run_evaluate)


def resolve_task(args: argparse.Namespace) -> str:
    """``--task``, or with ``auto`` the manifest's: classification when it declares classes.

    An unreadable manifest counts as segmentation, whose pipeline then reports the problem.
    """
    if args.task != "auto":
        return str(args.task)
    from medimg.errors import ManifestError
    from medimg.manifests.load import read_manifest_json

    try:
        raw = read_manifest_json(args.manifest)
    except ManifestError:
        return "segmentation"
    return "classification" if raw.get("classes") is not None else "segmentation"


def _train_config(args: argparse.Namespace) -> Any:
    from medimg.training import TrainConfig

    return TrainConfig(
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


def _shared_config(args: argparse.Namespace) -> dict[str, Any]:
    """The settings both pipelines' configs take from the arguments."""
    shared = {
        "manifest": args.manifest,
        "out_dir": args.out,
        "train": _train_config(args),
        "seed": args.seed,
    }
    if getattr(args, "no_augment", False):
        shared["augment"] = None
    return shared


def build_config(args: argparse.Namespace) -> Any:
    """The :class:`~pipelines.segmentation.SegmentationConfig` the arguments describe."""
    from pipelines.segmentation import SegmentationConfig

    extra: dict[str, Any] = {}
    if hasattr(args, "network"):
        extra = {
            "network": args.network or "dynunet",
            "base_features": args.features,
            "roi_size_vox": tuple(args.roi or (96, 96, 96)),
            "batch_size": 2 if args.batch_size is None else args.batch_size,
            "loss": args.loss,
        }
    if getattr(args, "model", None) is not None:
        extra |= {"model_folder": args.model, "predictions_folder": args.out}
    return SegmentationConfig(
        **_shared_config(args),
        tolerance_mm=getattr(args, "tolerance_mm", 2.0),
        mirror_axes=tuple(getattr(args, "mirror_axes", ())),
        **extra,
    )


def build_classification_config(args: argparse.Namespace) -> Any:
    """The :class:`~pipelines.classification.ClassificationConfig` the arguments describe."""
    from pipelines.classification import ClassificationConfig

    extra: dict[str, Any] = {}
    if hasattr(args, "network"):
        if args.xray_size_px is not None:
            from medimg.transforms import PreprocessConfig

            extra["preprocess"] = PreprocessConfig(xray_size_px=tuple(args.xray_size_px))
        extra |= {
            "network": args.network or "resnet18",
            "width_factor": args.width_factor,
            "stem_stride": args.stem_stride,
            "input_size_vox": None if args.roi is None else tuple(args.roi),
            "batch_size": 32 if args.batch_size is None else args.batch_size,
            "balance": args.balance,
            "multi_label": args.multi_label,
        }
    return ClassificationConfig(**_shared_config(args), threshold=getattr(args, "threshold", 0.5),
                                **extra)  # fmt: skip


def _pipeline(args: argparse.Namespace) -> tuple[Any, Any]:
    """The pipeline module and the config for the task of ``args``."""
    if resolve_task(args) == "classification":
        import pipelines.classification as classification

        return classification, build_classification_config(args)
    import pipelines.segmentation as segmentation

    return segmentation, build_config(args)


def run_train(args: argparse.Namespace) -> int:
    """Handle ``medimg train``."""
    from medimg.errors import ConfigError
    from medimg.training import LAST

    pipeline, cfg = _pipeline(args)
    if args.resume and not (cfg.model_dir / LAST).is_file():
        raise ConfigError(
            f"--resume needs a run to continue, got no {LAST} in {cfg.model_dir}; drop --resume "
            "to start a new run"
        )
    result = pipeline.train(cfg, resume=args.resume)
    fit = result.fit
    best = "n/a" if fit.best_metric is None else f"{fit.best_metric:.4f} (epoch {fit.best_epoch})"
    metric = pipeline.TASK.metric
    print(f"trained {fit.epochs_run} epochs; best validation {metric} {best}")
    print(f"checkpoint {result.checkpoint} sha256 {result.checkpoint_sha256}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """Handle ``medimg predict``.

    Raises
    ------
    ConfigError
        When ``--model`` is given for a classification manifest.
    """
    from medimg.errors import ConfigError

    pipeline, cfg = _pipeline(args)
    keep_going = args.keep_going or args.model is not None
    if pipeline.TASK.name == "classification":
        if args.model is not None:
            raise ConfigError(
                "--model must be used with a segmentation manifest, got a classification one; "
                "pass the run folder as --out instead"
            )
        result = pipeline.predict(
            cfg, split=args.split, overwrite=args.force, fail_fast=not keep_going
        )
    else:
        result = pipeline.predict(
            cfg, split=args.split, overwrite=args.force, fail_fast=not keep_going,
            progress=args.progress,
        )  # fmt: skip
    counts = {s: sum(c.status == s for c in result.cases) for s in ("written", "skipped", "failed")}
    where = result.path
    print(f"{where}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    if counts["failed"]:
        print(f"{counts['failed']} of {len(result.cases)} cases failed:")
    for case in result.cases:
        if case.status == "failed":
            print(f"  {case.case_id}: {case.error}")
    if counts["failed"]:
        summary = result.summary_path
        first = next(c for c in result.cases if c.status == "failed")
        print(
            f"error: {counts['failed']} of {len(result.cases)} cases failed (first: "
            f"{first.case_id}: {first.error}); every reason is in {summary}; fix those inputs "
            f"and run again: finished cases are kept",
            file=sys.stderr,
        )
    return 1 if counts["failed"] else 0


def run_evaluate(args: argparse.Namespace) -> int:
    """Handle ``medimg evaluate``."""
    pipeline, cfg = _pipeline(args)
    result = pipeline.evaluate(cfg, split=args.split, overwrite=args.force)
    if pipeline.TASK.name == "classification":
        return _print_classification(result)
    print(f"mean Dice {result.summary['mean_dice']:.4f} over {len(result.cases)} cases")
    for name, stats in result.summary["labels"].items():
        print(
            f"  {name}: Dice {stats['dice']['mean']:.4f}, HD95 {stats['hd95_mm']['mean']:.2f} mm, "
            f"surface Dice {stats['surface_dice']['mean']:.4f}"
        )
    print(f"report: {result.out_dir}")
    return 0


def _print_classification(result: Any) -> int:
    s = result.scores
    print(
        f"AUC {s.auc:.4f}, accuracy {s.accuracy:.4f}, balanced accuracy "
        f"{s.balanced_accuracy:.4f} over {result.summary['n_cases']} cases"
    )
    if s.sensitivity is not None:
        print(f"  at threshold {s.threshold}: sensitivity {s.sensitivity:.4f}, "
              f"specificity {s.specificity:.4f}")  # fmt: skip
    print(f"  confusion (rows true, columns predicted): {[list(r) for r in s.confusion]}")
    print(f"report: {result.out_dir}")
    return 0
