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
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medimg.cli import _ray_options

__all__ = ["OPTIONS", "Option", "build_configs", "register", "resolve_task"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Option:
    """Which config an option sets: ``stage`` (:data:`_STAGES`) and the field, by candidates.

    The first of ``fields`` the stage's class has is set; with none, the option does not
    apply to the task.
    """

    stage: str
    fields: tuple[str, ...]


def _opt(stage: str, *fields: str) -> Option:
    return Option(stage, fields)


_TRAIN = {
    "seed": _opt("config", "seed"),
    "network": _opt("config", "network"),
    "features": _opt("config", "base_features"),
    "roi": _opt("config", "roi_size_vox", "input_size_vox", "patch_size_vox"),
    "batch_size": _opt("config", "batch_size"),
    "loss": _opt("config", "loss"),
    "width_factor": _opt("config", "width_factor"),
    "stem_stride": _opt("config", "stem_stride"),
    "balance": _opt("config", "balance"),
    "multi_label": _opt("config", "multi_label"),
    "xray_size_px": _opt("preprocess", "xray_size_px"),
    "epochs": _opt("fit", "max_epochs"),
    "iterations_per_epoch": _opt("fit", "iterations_per_epoch"),
    "optimizer": _opt("fit", "optimizer"),
    "lr": _opt("fit", "learning_rate"),
    "lr_schedule": _opt("fit", "lr_schedule"),
    "validate_every": _opt("fit", "validate_every_epochs"),
    "patience": _opt("fit", "early_stopping_patience"),
    "device": _opt("fit", "device"),
    "precision": _opt("fit", "precision"),
    "progress": _opt("fit", "progress"),
    "tensorboard": _opt("fit", "tensorboard"),
}
_PREDICT = {
    "split": _opt("predict", "split"),
    "device": _opt("predict", "device"),
    "precision": _opt("predict", "precision"),
    "progress": _opt("predict", "progress"),
    "threshold": _opt("predict_options", "threshold"),
    "backend": _opt("predict_options", "backend"),
    "mirror_axes": _opt("predict_options", "mirror_axes"),
    "output_format": _opt("predict_options", "output_format"),
    "seg_type": _opt("predict_options", "seg_type"),
}
_EVALUATE = {
    "split": _opt("evaluate", "split"),
    "tolerance_mm": _opt("evaluate_options", "tolerance_mm"),
}
OPTIONS: dict[str, dict[str, Option]] = {
    "train": _TRAIN, "predict": _PREDICT, "evaluate": _EVALUATE,
}  # fmt: skip
"""Per command, each config option's ``dest`` and what it sets."""


def _stage_class(stage: str, task: Any) -> type[Any]:
    from medimg.tasks import EvaluateConfig, PredictConfig
    from medimg.training import TrainConfig
    from medimg.transforms import PreprocessConfig

    fixed = {"fit": TrainConfig, "preprocess": PreprocessConfig, "predict": PredictConfig,
             "evaluate": EvaluateConfig}  # fmt: skip
    if stage in fixed:
        return fixed[stage]
    by_task: dict[str, type[Any]] = {
        "config": task.train_config,
        "predict_options": task.predict_options,
        "evaluate_options": task.evaluate_options,
    }
    return by_task[stage]


def _field(option: Option, task: Any) -> dataclasses.Field[Any] | None:
    fields = {f.name: f for f in dataclasses.fields(_stage_class(option.stage, task))}
    return next((fields[name] for name in option.fields if name in fields), None)


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _stage_values(args: argparse.Namespace, command: str, task: Any) -> dict[str, dict[str, Any]]:
    """The given options of ``command`` by stage, as config fields; refuse another task's."""
    from medimg.errors import ConfigError
    from medimg.tasks import TASKS

    stages: dict[str, dict[str, Any]] = defaultdict(dict)
    for dest, option in OPTIONS[command].items():
        value = getattr(args, dest)
        if value is None:
            continue
        field = _field(option, task)
        if field is None:
            others = [name for name, t in TASKS.items() if _field(option, t) is not None]
            raise ConfigError(
                f"options of medimg {command} must apply to the {task.name} task of "
                f"{args.manifest}, got {_flag(dest)} (an option of "
                f"{' and '.join(others) or 'no task'}); drop it"
            )
        stages[option.stage][field.name] = tuple(value) if isinstance(value, list) else value
    return stages


def _default_text(command: str, option: Option) -> str:
    """``default: X``, per task where tasks differ or not all have the option."""
    from medimg.tasks import TASKS

    found: dict[str, str] = {}
    for name, task in TASKS.items():
        field = _field(option, task)
        if field is not None:
            found[name] = _show(_task_default(task, option.stage, field))
    if len(set(found.values())) == 1 and len(found) == len(TASKS):
        return f"default: {next(iter(found.values()))}"
    if len(set(found.values())) == 1:
        return f"{', '.join(found)} only; default: {next(iter(found.values()))}"
    return "default: " + ", ".join(f"{name} {value}" for name, value in found.items())


def _field_default(field: dataclasses.Field[Any]) -> object:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _show(value: object) -> str:
    if isinstance(value, tuple | list):
        return " ".join(map(str, value)) or "none"
    if value is None or value is False:
        return "none" if value is None else "off"
    return str(value)


class _DefaultsFormatter(argparse.HelpFormatter):
    """Help whose defaults come from the config fields (:func:`_default_text`)."""

    def __init__(self, prog: str, *, command: str) -> None:
        super().__init__(prog)
        self._command = command

    def _get_help_string(self, action: argparse.Action) -> str | None:
        option = OPTIONS[self._command].get(action.dest)
        if option is None:
            return action.help
        extra = _default_text(self._command, option).replace("%", "%%")
        return f"{action.help} ({extra})"


def _parser(sub: Any, command: str, **kwargs: Any) -> argparse.ArgumentParser:
    formatter = functools.partial(_DefaultsFormatter, command=command)
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


_NESTED = {"fit": "train", "preprocess": "preprocess"}  # stages that are a training-config field


def _nested_default(task: Any, name: str, cls: type[Any]) -> Any:
    """The task training config's default ``name`` when it is a ``cls``, else ``cls()``."""
    fields = {f.name: f for f in dataclasses.fields(task.train_config)}
    default = _field_default(fields[name]) if name in fields else None
    return default if isinstance(default, cls) else cls()


def _task_default(task: Any, stage: str, field: dataclasses.Field[Any]) -> object:
    """``field``'s default for ``task`` (a nested stage: from the task's own default)."""
    if stage not in _NESTED:
        return _field_default(field)
    return getattr(_nested_default(task, _NESTED[stage], _stage_class(stage, task)), field.name)


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

    stages = _stage_values(args, args.command, task)
    if args.command == "train":
        config = dict(stages["config"])
        for stage, name in _NESTED.items():  # the task's default, the given fields replaced
            default = _nested_default(task, name, _stage_class(stage, task))
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
