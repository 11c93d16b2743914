"""Tasks on one protocol, run by shared engines.

* :class:`Task` -- what a task supplies (manifest check, training plan, predictor, scoring);
  :class:`SegmentationTask` and :class:`ClassificationTask` implement it;
* :func:`train`, :func:`predict`, :func:`evaluate` -- the engines (:mod:`medimg.tasks.engine`);
* per-stage configs: the task's training config (:class:`SegmentationConfig`,
  :class:`ClassificationConfig`), :class:`PredictConfig`, :class:`EvaluateConfig`, with each
  task's typed options;
* :func:`task_for` -- the task of a manifest;
* :func:`load_model` -- a run folder, model folder or package as a :class:`Model` whose
  :meth:`~Model.predict` takes one image (path or Volume) and returns a :class:`Prediction`
  (:mod:`medimg.tasks.model`).
"""

from __future__ import annotations

from pathlib import Path

from medimg.tasks import engine
from medimg.tasks.base import (
    CaseOutcome,
    EvaluateConfig,
    PredictConfig,
    PredictResult,
    Task,
    TrainPlan,
    TrainResult,
    resolve_model_dir,
)
from medimg.tasks.classification import (
    ClassificationConfig,
    ClassificationEvaluateOptions,
    ClassificationHead,
    ClassificationPredictOptions,
    ClassificationTask,
)
from medimg.tasks.detection import DetectionTask
from medimg.tasks.engine import evaluate, predict, train
from medimg.tasks.model import Model, Prediction, load_model
from medimg.tasks.segmentation import (
    SegmentationConfig,
    SegmentationEvaluateOptions,
    SegmentationPredictOptions,
    SegmentationTask,
)

__all__ = [
    "TASKS",
    "CaseOutcome",
    "ClassificationConfig",
    "ClassificationEvaluateOptions",
    "ClassificationHead",
    "ClassificationPredictOptions",
    "ClassificationTask",
    "EvaluateConfig",
    "Model",
    "PredictConfig",
    "PredictResult",
    "Prediction",
    "SegmentationConfig",
    "SegmentationEvaluateOptions",
    "SegmentationPredictOptions",
    "SegmentationTask",
    "Task",
    "TrainPlan",
    "TrainResult",
    "engine",
    "evaluate",
    "load_model",
    "predict",
    "resolve_model_dir",
    "task_for",
    "train",
]

TASKS: dict[str, Task] = {
    "segmentation": SegmentationTask(),
    "classification": ClassificationTask(),
    "detection": DetectionTask(),
}
"""Every task with an engine, by name: registering a task is one entry here."""


def task_for(name: str, *, manifest: Path | None = None) -> Task:
    """The task called ``name`` (:func:`medimg.manifests.task_of` of a manifest).

    An ``unlabelled`` manifest goes to segmentation, whose manifest check then says what is
    missing. ``manifest`` (the file ``name`` came from) is named in the error.

    Raises
    ------
    ConfigError
        For a task of the manifest schema that has no engine yet (none is registered in
        :data:`TASKS`), or a name that is no task.

    Examples
    --------
    >>> task_for("classification").name
    'classification'
    """
    from medimg.errors import ConfigError
    from medimg.manifests import TASKS as MANIFEST_TASKS

    if name == "unlabelled":
        name = "segmentation"
    if name in TASKS:
        return TASKS[name]
    where = "" if manifest is None else f"{manifest} is a {name} manifest, but "
    if name in MANIFEST_TASKS:
        raise ConfigError(
            f"{where}the {name} task is not available in this version of medimg yet (tasks "
            f"with an engine: {', '.join(TASKS)}); use a manifest of one of those tasks"
        )
    raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {name!r}")
