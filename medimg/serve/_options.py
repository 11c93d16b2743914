"""Per-job prediction options: the form fields of ``POST /v1/jobs`` that a job may set.

A job may change what makes sense for one image and costs the service no new model: the
sliding-window overlap, test-time mirror axes and, for a DICOM upload, the DICOM SEG's type
(``seg_type``, segmentation), the positive-call threshold
(classification), the minimum box score (detection), and the autocast precision among those
the operator allows (``medimg serve --job-precision``). Each value is checked with the task's
own prediction options class (``task.predict_options``), so a job is refused exactly where
``medimg predict`` would refuse the same setting, naming the form field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from medimg.errors import ConfigError
from medimg.serve.errors import UploadError

__all__ = ["JOB_OPTIONS", "OUTPUT_OPTIONS", "PRECISIONS", "job_options"]

PRECISIONS = ("float32", "bfloat16", "float16", "auto")
"""The autocast precisions ``load_model`` knows; the service allows a subset per job."""


def _number(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(text)
    return value


def _axes(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.replace(",", " ").split())


JOB_OPTIONS: Mapping[str, tuple[Callable[[str], Any], str]] = {
    "sw_overlap": (_number, "a number in [0, 1), e.g. 0.25"),
    "mirror_axes": (_axes, "spatial axes among 0 1 2 separated by spaces or commas, e.g. '0 1'"),
    "threshold": (_number, "a probability in (0, 1), e.g. 0.5"),
    "min_score": (_number, "a score in [0, 1], e.g. 0.3"),
    "seg_type": (str, "binary or labelmap"),
}
"""Form fields a job may set (those its task's prediction options have): parser, expected."""

_NOT_OPTIONS = {"file", "model"}

OUTPUT_OPTIONS = ("seg_type",)
"""Job options of what is written from the prediction, not of the model that predicts."""


def _task_options(task: str) -> type[Any]:
    from medimg.tasks import task_for

    options: type[Any] = task_for(task).predict_options
    return options


def job_options(
    task: str, form: Iterable[tuple[str, object]], *, precisions: tuple[str, ...]
) -> dict[str, Any]:
    """The checked per-job options of a form for a model of `task` (JSON-ready; {} for none).

    An empty field is not given. ``mirror_axes`` comes back as a list; ``precision`` as
    given when `precisions` (the operator's) holds it.

    Raises
    ------
    UploadError
        422 naming the form field: one the task has no such option for, a value that does
        not parse, one its options class refuses, or a precision the service does not allow.

    Examples
    --------
    >>> job_options("segmentation", [("sw_overlap", "0.25"), ("mirror_axes", "0,2")],
    ...             precisions=())
    {'sw_overlap': 0.25, 'mirror_axes': [0, 2]}
    """
    options_class = _task_options(task)
    fields = {f.name for f in dataclasses.fields(options_class)}
    takes = [name for name in JOB_OPTIONS if name in fields] + ["precision"]
    chosen: dict[str, Any] = {}
    for name, raw in form:
        if name in _NOT_OPTIONS:
            continue
        if not isinstance(raw, str):
            raise UploadError(422, f"form field {name!r} must be text, not a file")
        if name not in takes:
            raise UploadError(
                422,
                f"form field {name!r} is no per-job option of a {task} model; it takes "
                f"{', '.join(takes)} (besides file and model)",
            )
        if raw.strip() == "" and name != "mirror_axes":
            continue
        chosen[name] = _checked(name, raw.strip(), options_class, precisions)
    return chosen


def _checked(name: str, raw: str, options_class: type[Any], precisions: tuple[str, ...]) -> Any:
    if name == "precision":
        if raw not in precisions:
            allowed = ", ".join(precisions) or "none (the model's own precision is used)"
            raise UploadError(
                422,
                f"form field 'precision' must be one this service allows per job: {allowed}; "
                f"got {raw!r} (the operator allows more with medimg serve --job-precision)",
            )
        return raw
    parse, expected = JOB_OPTIONS[name]
    try:
        value = parse(raw)
    except ValueError:
        raise UploadError(422, f"form field {name!r} must be {expected}, got {raw!r}") from None
    given = {name: value, **({"output_format": "seg"} if name == "seg_type" else {})}
    try:
        options_class(**given)
    except ConfigError as exc:
        raise UploadError(422, f"form field {name!r}: {exc}") from None
    return list(value) if isinstance(value, tuple) else value
