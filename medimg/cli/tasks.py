"""``medimg train``, ``predict`` and ``evaluate`` for every task of :mod:`medimg.tasks`.

The task is the manifest's (:func:`medimg.manifests.task_of`, looked up with
:func:`medimg.tasks.task_for`; ``--task`` overrides it). Each option sets one field of one
config (:data:`OPTIONS`); it applies to a task when that task's config class has the field, and
is an error naming the task and the option otherwise, never ignored. Every option defaults to
None, so the config dataclass decides: each default is written once, there, and ``--help``
reads it from the field. The handlers build the configs a notebook would and call the engines
(:func:`medimg.tasks.train`, :func:`~medimg.tasks.predict`, :func:`~medimg.tasks.evaluate`);
torch and MONAI load inside them (and for ``--help`` of these commands, to read defaults).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
from pathlib import Path
from typing import Any

from medimg.cli import _ray_options
from medimg.cli._task_options import (
    NESTED,
    OPTIONS,
    DefaultsFormatter,
    Option,
    nested_default,
    stage_class,
    stage_values,
)

__all__ = ["OPTIONS", "Option", "build_configs", "register", "resolve_task"]

logger = logging.getLogger(__name__)


def _parser(sub: Any, command: str, **kwargs: Any) -> argparse.ArgumentParser:
    formatter = functools.partial(DefaultsFormatter, command=command)
    p: argparse.ArgumentParser = sub.add_parser(command, formatter_class=formatter, **kwargs)
    p.add_argument("--manifest", type=Path, required=True, help="dataset manifest (JSON)")
    p.add_argument(
        "--out", type=Path, required=True, help="run folder (model/, predictions/, evaluation/)"
    )
    p.add_argument(
        "--task", default="auto",
        help="a task of medimg.tasks; auto (default): the manifest's (medimg.manifests.task_of)",
    )  # fmt: skip
    return p


def _device_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--progress", action="store_true", default=None, help="show progress bars")


def _train_options(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("--seed", type=int, default=None, help="random seed")
    _device_options(p)
    a("--precision", default=None, help="autocast precision: fp32, bf16 or fp16")
    a(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="train convolutions in channels-last memory (faster on CPUs; "
        "--no-channels-last: the contiguous layout)",
    )
    a("--network", default=None, help="a network of medimg.networks for the task")
    a("--features", type=int, default=None, help="channels of the first level")
    a(
        "--roi",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="segmentation and detection: patch size X Y Z; classification: pad/crop every "
        "image to this size",
    )
    a("--batch-size", type=int, default=None, help="samples per optimizer step (>= 1)")
    a("--epochs", type=int, default=None, help="training epochs")
    a("--iterations-per-epoch", type=int, default=None, help="optimizer steps per epoch")
    a("--optimizer", default=None, help="adamw or sgd")
    a("--lr", type=float, default=None, help="initial learning rate (finite, > 0)")
    a("--lr-schedule", default=None, help="poly, cosine or constant")
    a("--loss", default=None, help="dice_ce, dice or ce")
    a("--width-factor", type=float, default=None, help="classifier width (ResNet)")
    a("--stem-stride", type=int, default=None, help="ResNet first-conv stride, 1 or 2")
    a("--balance", default=None, help="class-weighted loss, balanced sampler or none")
    a("--multi-label", action="store_true", default=None, help="sigmoid outputs + BCE")
    a(
        "--xray-size-px",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="X-ray resize-with-pad size",
    )
    a(
        "--no-augment",
        action="store_true",
        help="train without the modality's augmentation (rotation/scaling, noise, blur, "
        "contrast, gamma, low resolution; on by default)",
    )
    a("--validate-every", type=int, default=None, help="epochs between validations")
    a("--patience", type=int, default=None, help="early-stopping patience (epochs)")
    a("--tensorboard", action="store_true", default=None, help="log to --out/model/tensorboard")
    a("--resume", action="store_true", help="continue the run in --out/model")  # fmt: skip
    a("--nproc", type=int, default=None, metavar="N",
      help="train data-parallel in N processes on this machine (torchrun's launcher; gloo on "
      "the CPU, nccl with one GPU each on CUDA); several machines: run torchrun -m medimg "
      "train ... on each (README)")  # fmt: skip


def _predict_options(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a(
        "--model",
        type=Path,
        default=None,
        metavar="MODEL",
        help="a model folder (model.json), a run folder holding model/ or a package (.medimg); "
        "predictions then go to --out itself (default: --out/model, into --out/predictions)",
    )
    a("--trust", type=Path, action="append", metavar="PUBKEY", help="a package must be signed "
      "by this key (repeatable; default: MEDIMG_TRUST, ~/.config/medimg/trust/)")  # fmt: skip
    a("--passphrase-file", type=Path, metavar="F", help="an encrypted package's passphrase: "
      "the first line of F (default: MEDIMG_PASSPHRASE_FILE)")  # fmt: skip
    a("--split", default=None, help="manifest split: training, validation or test")
    _device_options(p)
    a("--precision", default=None, help="autocast dtype: float32, bfloat16, float16 or auto")
    a("--backend", choices=("torch", "onnxruntime"), default=None,
      help="what runs the network: torch, or onnxruntime (float32; the same windows, "
      "stitching and way back) on the package's network.onnx, else on network-<checkpoint "
      "sha256>.onnx exported once into the model folder (beside a package; in memory for an "
      "encrypted one)")  # fmt: skip
    a(
        "--threshold",
        type=float,
        default=None,
        help="probability at which the positive class is called",
    )
    a(
        "--mirror-axes",
        type=int,
        nargs="+",
        default=None,
        metavar="AXIS",
        help="test-time mirroring over these axes (0 1 2 = X Y Z, RAS), the logits of every "
        "flip combination averaged (2**k passes)",
    )
    a("--output-format", choices=("nifti", "seg", "json", "sr"), default=None,
      help="segmentation: nifti (<case>.nii.gz), or seg: for a DICOM case <case>.seg.dcm "
      "(DICOM SEG on the series) and <case>.sr.dcm (volumes, TID 1500); detection: json "
      "(<case>.json), or sr: for a DICOM case also <case>.sr.dcm (boxes, TID 1500)")  # fmt: skip
    a("--seg-type", choices=("binary", "labelmap"), default=None,
      help="with --output-format seg: a BINARY or a LABELMAP SEG")  # fmt: skip
    a("--force", action="store_true", help="predict every case again")
    a("--keep-going", action="store_true",
      help="record failing cases (with the reason) and go on; default: stop at the first "
      "failing case after checking every file")  # fmt: skip
    _ray_options.add_ray_options(p)


def register(sub: Any) -> None:
    """Add the ``train``, ``predict`` and ``evaluate`` subcommands to ``sub``."""
    from medimg.cli import _task_handlers as handlers

    train = _parser(
        sub, "train", help="train a network for the manifest's task",
        description="Validate the manifest, preprocess with the modality's chain, train and "
        "keep the best checkpoint by the task's validation metric (Dice, AUC, CPM) in OUT/model. "
        "An option of another task is an error.",
    )  # fmt: skip
    _train_options(train)
    train.set_defaults(handler=handlers.run_train)
    predict = _parser(
        sub, "predict", help="predict a split with a trained model (label maps, class "
        "probabilities, boxes)",
        description="Segmentation: <case>.nii.gz on each image's stored grid; classification: "
        "<split>.csv; detection: <case>.json (boxes in world mm and stored-grid voxels); with "
        "summary.json (per case: status, time, peak memory, error, resume "
        "key; rewritten after every case) and run.json beside them. A case is skipped unless "
        "--force only when it was done with the same model (weights SHA-256), "
        "preprocessing, inference settings and input file contents, and its output is "
        "unchanged; otherwise it is predicted again. The output folder is locked while the run "
        "lasts, and temporaries of an interrupted run are removed. Without --keep-going the "
        "first failing case stops the batch; exit status 1 when a case failed.",
    )  # fmt: skip
    _predict_options(predict)
    predict.set_defaults(handler=handlers.run_predict)
    evaluate = _parser(
        sub, "evaluate", help="score predictions (Dice, HD95, ...; AUC, accuracy, ...; FROC, "
        "CPM, mAP)",
        description="Score OUT/predictions (or --predictions) against the manifest's references "
        "of --split and write the report (cases.csv, summary.json, figures) under "
        "OUT/evaluation.",
    )  # fmt: skip
    evaluate.add_argument("--split", default=None, help="manifest split")
    evaluate.add_argument("--tolerance-mm", type=float, default=None,
                          help="surface Dice tolerance")  # fmt: skip
    evaluate.add_argument("--predictions", type=Path, default=None, metavar="DIR",
                          help="prediction folder (default: --out/predictions; the --out of "
                          "medimg predict --model)")  # fmt: skip
    evaluate.add_argument("--force", action="store_true", help="overwrite an existing report")
    evaluate.set_defaults(handler=handlers.run_evaluate)


def resolve_task(args: argparse.Namespace) -> Any:
    """The :class:`~medimg.tasks.Task` of ``--task``, or with ``auto`` of the manifest.

    Raises
    ------
    ManifestError
        When the manifest cannot be read as JSON (with ``--task auto``).
    ConfigError
        When the task has no engine yet or is no task.
    """
    from medimg.manifests import task_of
    from medimg.manifests.load import read_manifest_json
    from medimg.tasks import task_for

    if args.task != "auto":
        return task_for(args.task)
    return task_for(task_of(read_manifest_json(args.manifest)), manifest=args.manifest)


def build_configs(args: argparse.Namespace, task: Any) -> Any:
    """The config of ``args.command`` for ``task``, validated on construction.

    ``train``: the task's training config; ``predict``: a :class:`~medimg.tasks.PredictConfig`
    whose overlap, mirror axes and precision not given are the model's stored inference
    defaults (:mod:`medimg.tasks.defaults`); ``evaluate``: an :class:`~medimg.tasks.EvaluateConfig`.

    Raises
    ------
    ConfigError
        For an option of another task, or a value its config refuses.
    """
    from medimg.tasks import EvaluateConfig, PredictConfig, resolve_model_dir

    stages = stage_values(args, args.command, task)
    if args.command == "train":
        config = dict(stages["config"])
        for stage, name in NESTED.items():  # the task's default, the given fields replaced
            default = nested_default(task, name, stage_class(stage, task))
            config[name] = dataclasses.replace(default, **stages[stage])
        if args.no_augment:
            config["augment"] = None
        return task.train_config(manifest=args.manifest, out_dir=args.out, **config)
    if args.command == "predict":
        from medimg.tasks.defaults import predict_options_with, stored_model, stored_precision

        model, trust = args.model, tuple(args.trust or ())
        model_dir = args.out / "model" if model is None else resolve_model_dir(model)
        stored = stored_model(model_dir, trust=trust or None).inference  # a given option wins
        values = {
            **stages["predict"],
            "precision": stored_precision(stored, stages["predict"].get("precision")),
        }
        return PredictConfig(
            manifest=args.manifest, model_dir=model_dir,
            out_dir=args.out / "predictions" if model is None else args.out,
            overwrite=args.force, fail_fast=not args.keep_going,
            options=predict_options_with(task, stored, stages["predict_options"]), **values,
            trust=trust, passphrase_file=args.passphrase_file,
        )  # fmt: skip
    cfg = EvaluateConfig(
        manifest=args.manifest, out_dir=args.out,
        predictions_dir=args.out / "predictions" if args.predictions is None else args.predictions,
        overwrite=args.force, options=task.evaluate_options(**stages["evaluate_options"]),
        **stages["evaluate"],
    )  # fmt: skip
    return dataclasses.replace(cfg, out_dir=task.evaluation_dir(args.out, cfg.split))
