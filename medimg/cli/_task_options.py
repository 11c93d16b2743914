"""The options of ``medimg train``, ``predict`` and ``evaluate``: which config field each sets.

Each option sets one field of one config (:data:`OPTIONS`); it applies to a task when that
task's config class has the field, and is an error naming the task and the option otherwise.
Every option defaults to None, so the config dataclass decides: ``--help`` reads each default
from the field (:class:`DefaultsFormatter`), written once, there.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

__all__ = [
    "NESTED",
    "OPTIONS",
    "DefaultsFormatter",
    "Option",
    "nested_default",
    "option_field",
    "stage_class",
    "stage_values",
]


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
    "channels_last": _opt("fit", "channels_last"),
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


def stage_class(stage: str, task: Any) -> type[Any]:
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


def option_field(option: Option, task: Any) -> dataclasses.Field[Any] | None:
    fields = {f.name: f for f in dataclasses.fields(stage_class(option.stage, task))}
    return next((fields[name] for name in option.fields if name in fields), None)


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def stage_values(args: argparse.Namespace, command: str, task: Any) -> dict[str, dict[str, Any]]:
    """The given options of ``command`` by stage, as config fields; refuse another task's."""
    from medimg.errors import ConfigError
    from medimg.tasks import TASKS

    stages: dict[str, dict[str, Any]] = defaultdict(dict)
    for dest, option in OPTIONS[command].items():
        value = getattr(args, dest)
        if value is None:
            continue
        field = option_field(option, task)
        if field is None:
            others = [name for name, t in TASKS.items() if option_field(option, t) is not None]
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
        field = option_field(option, task)
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


class DefaultsFormatter(argparse.HelpFormatter):
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


NESTED = {"fit": "train", "preprocess": "preprocess"}  # stages that are a training-config field


def nested_default(task: Any, name: str, cls: type[Any]) -> Any:
    """The task training config's default ``name`` when it is a ``cls``, else ``cls()``."""
    fields = {f.name: f for f in dataclasses.fields(task.train_config)}
    default = _field_default(fields[name]) if name in fields else None
    return default if isinstance(default, cls) else cls()


def _task_default(task: Any, stage: str, field: dataclasses.Field[Any]) -> object:
    """``field``'s default for ``task`` (a nested stage: from the task's own default)."""
    if stage not in NESTED:
        return _field_default(field)
    return getattr(nested_default(task, NESTED[stage], stage_class(stage, task)), field.name)
