"""Tasks on one protocol, run by shared engines.

* :class:`Task` -- what a task supplies (manifest check, training plan, predictor, scoring);
  :class:`SegmentationTask` and :class:`ClassificationTask` implement it;
* :func:`train`, :func:`predict`, :func:`evaluate` -- the engines (:mod:`medimg.tasks.engine`);
* per-stage configs: the task's training config (:class:`SegmentationConfig`,
  :class:`ClassificationConfig`), :class:`PredictConfig`, :class:`EvaluateConfig`, with each
  task's typed options;
* :func:`task_for` -- the task of a manifest.
"""

from __future__ import annotations

from medimg.tasks import engine
from medimg.tasks.base import (
    CaseOutcome,
    EvaluateConfig,
    PredictConfig,
    PredictResult,
    Task,
    TrainPlan,
    TrainResult,
)
from medimg.tasks.classification import (
    ClassificationConfig,
    ClassificationEvaluateOptions,
    ClassificationHead,
    ClassificationPredictOptions,
    ClassificationTask,
)
from medimg.tasks.engine import evaluate, predict, train
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
    "PredictConfig",
    "PredictResult",
    "SegmentationConfig",
    "SegmentationEvaluateOptions",
    "SegmentationPredictOptions",
    "SegmentationTask",
    "Task",
    "TrainPlan",
    "TrainResult",
    "engine",
    "evaluate",
    "predict",
    "task_for",
    "train",
]

TASKS: dict[str, Task] = {
    "segmentation": SegmentationTask(),
    "classification": ClassificationTask(),
}
"""Every task by name."""


def task_for(name: str) -> Task:
    """The task called ``name`` (:func:`medimg.manifests.task_of` of a manifest).

    An ``unlabelled`` manifest goes to segmentation, whose manifest check then says what is
    missing.

    Raises
    ------
    ConfigError
        For a task medimg has no engine for yet (``detection``).

    Examples
    --------
    >>> task_for("classification").name
    'classification'
    """
    from medimg.errors import ConfigError

    if name == "unlabelled":
        name = "segmentation"
    if name not in TASKS:
        raise ConfigError(
            f"task must be one of {', '.join(TASKS)}, got {name!r}; medimg cannot train or "
            f"predict {name} manifests yet"
        )
    return TASKS[name]
