"""The prediction engine's cases on Ray: the task's own predictor, rebuilt once per worker.

:func:`predict_on_ray` hands the batch's remaining cases to
:func:`~medimg.inference.ray_batch.run_batch_on_ray`. Each Ray worker process runs
:class:`RemotePredict`, which builds what the driver built -- the model (refused unless its
weights' digest is the driver's), the manifest's cases, the modality's chain and the task's
predictor -- once per process through :func:`~medimg.tasks.engine.prediction_setup`, and then
predicts each case it is given exactly as local prediction does (same outputs, atomically).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medimg.errors import CheckpointError

if TYPE_CHECKING:
    from medimg.inference import BatchCase, BatchModel, CaseRecord, PredictionBatch
    from medimg.inference.ray_batch import RayConfig
    from medimg.tasks.base import PredictConfig, Task

__all__ = ["RemotePredict", "absolute_paths", "predict_on_ray"]

logger = logging.getLogger(__name__)

_BUILT: dict[RemotePredict, Callable[[Any], Any]] = {}  # per worker process


def absolute_paths(cfg: PredictConfig) -> PredictConfig:
    """``cfg`` with its paths absolute: a worker's working folder is not the driver's."""
    paths: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, Path):
            paths[f.name] = value.absolute()
        elif isinstance(value, tuple) and value and all(isinstance(v, Path) for v in value):
            paths[f.name] = tuple(v.absolute() for v in value)  # --trust keys
    return dataclasses.replace(cfg, **paths)


@dataclass(frozen=True)
class RemotePredict:
    """One case of the batch, run in a Ray worker (picklable; see the module notes)."""

    task: str
    config: PredictConfig
    weights_sha256: str
    threads: int = 1

    def __call__(self, case: BatchCase) -> Any:
        """Predict ``case`` with this worker's predictor (built on the first call)."""
        run = _BUILT.get(self)
        if run is None:
            run = _BUILT[self] = self._build()
        return run(case)

    def _build(self) -> Callable[[Any], Any]:
        import torch

        from medimg.tasks import task_for
        from medimg.tasks.engine import prediction_setup

        torch.set_num_threads(self.threads)
        # the driver checked every file; a worker re-reads only the manifest's schema
        cfg = dataclasses.replace(self.config, fail_fast=False)
        bundle, cases, predictor = prediction_setup(task_for(self.task), cfg)
        if bundle.weights_sha256 != self.weights_sha256:
            raise CheckpointError(
                f"model {cfg.model_dir} on this Ray node must be the driver's (weights SHA-256 "
                f"{self.weights_sha256}), got {bundle.weights_sha256}; put the same model on "
                "the shared storage every node reads"
            )
        logger.info("Ray worker ready: %s model, %d cases known", self.task, len(cases))
        return lambda b: predictor.run(cases[b.case_id], b)


def predict_on_ray(
    task: Task,
    cfg: PredictConfig,
    batch: PredictionBatch,
    work: list[BatchCase],
    model: BatchModel,
    ray: RayConfig,
    is_valid: Callable[[BatchCase], bool],
) -> tuple[CaseRecord, ...]:
    """The batch's records, its remaining cases predicted by Ray tasks (module notes)."""
    import math

    from medimg.inference.ray_batch import connected, run_batch_on_ray

    threads = math.ceil(ray.num_cpus)
    remote = RemotePredict(task.name, cfg, model.model_sha256, threads=threads)
    with connected(ray):
        return run_batch_on_ray(batch, work, model, remote, ray, is_valid=is_valid,
                                fail_fast=cfg.fail_fast, progress=cfg.progress)  # fmt: skip
