"""Batch prediction on a Ray cluster: one Ray task per case, the same batch rules as locally.

:func:`run_batch_on_ray` is :func:`~medimg.inference.run_batch` with the cases handed to Ray
(``pip install medimg[ray]``). The driver (the ``medimg predict`` process) keeps everything that
decides what a run did: it holds the output folder's lock, computes every case's resume key,
reuses what may be reused and deletes stale outputs (:func:`~medimg.inference.plan_batch`),
records each case as its task finishes and rewrites ``summary.json`` after each, atomically.
A worker runs one case through :func:`~medimg.inference.run_case` -- the same measured,
isolated run as locally, a failing case becoming a ``failed`` record naming its reason -- and
writes the output atomically into the output folder, which every node must reach under the same
path (shared storage). Each task asks for its own resources (:class:`RayConfig`: CPUs, GPUs,
memory); when the worker process running it dies, Ray runs it again elsewhere, up to
``max_retries`` times, and only the attempt that finishes is recorded, so a case is never
recorded twice and a half-written output never replaces a whole one. A case whose every attempt
died is recorded ``failed`` with that reason.

``address="local"`` starts a cluster on this machine for the run (``ray.init(address="local",
num_cpus=..., include_dashboard=False)``, bound to 127.0.0.1) and stops it afterwards; any other
address joins a running cluster (``ray start --head`` on one node, ``ray start
--address=HEAD:6379`` on the others; ``auto`` finds the one on this node). A Ray session the
caller already started is used as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from medimg.errors import CaseError, ConfigError
from medimg.inference.batch import BatchCase, BatchModel, PredictionBatch, plan_batch, run_case
from medimg.inference.resume import CaseRecord, ResumeKey

__all__ = ["RayConfig", "connected", "run_batch_on_ray"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class RayConfig:
    """Where and with what each case runs on Ray.

    Attributes
    ----------
    address : str
        ``"local"``: a cluster on this machine for this run; otherwise a running cluster's
        address (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``).
    num_cpus, num_gpus : float
        Resources of one case's task; the worker's torch uses ``ceil(num_cpus)`` threads.
    memory_bytes : int, optional
        Memory one case's task reserves (Ray schedules by it; it is not a hard limit).
    max_retries : int
        Runs of a case again after its worker process died (not after a case failed).
    local_cpus : int, optional
        CPUs of the ``local`` cluster (how many cases run at once); all of them when omitted.
    """

    address: str = "local"
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_bytes: int | None = None
    max_retries: int = 3
    local_cpus: int | None = None

    def __post_init__(self) -> None:
        if not self.address:
            raise ConfigError("--ray needs an address or 'local', got an empty string")
        if not 0 < self.num_cpus < float("inf") or not 0 <= self.num_gpus < float("inf"):
            raise ConfigError(
                f"--ray-cpus must be > 0 and --ray-gpus >= 0, got {self.num_cpus} and "
                f"{self.num_gpus}"
            )
        if self.memory_bytes is not None and self.memory_bytes < 1:
            raise ConfigError(f"--ray-memory must be > 0, got {self.memory_bytes} bytes")
        if self.max_retries < 0 or (self.local_cpus is not None and self.local_cpus < 1):
            raise ConfigError(
                f"max_retries must be >= 0 and local_cpus >= 1, got {self.max_retries} and "
                f"{self.local_cpus}"
            )


@contextmanager
def connected(cfg: RayConfig) -> Iterator[None]:
    """Connect to the cluster of ``cfg`` (or start the local one) for the ``with`` block.

    Raises
    ------
    ConfigError
        When the cluster at ``cfg.address`` cannot be reached.
    """
    import ray

    if ray.is_initialized():  # the caller's session
        yield
        return
    try:
        if cfg.address == "local":
            ray.init(address="local", num_cpus=cfg.local_cpus, include_dashboard=False,
                     _node_ip_address="127.0.0.1", configure_logging=False,
                     log_to_driver=False)  # fmt: skip
        else:
            ray.init(address=cfg.address, configure_logging=False, log_to_driver=False)
    except ConnectionError as exc:
        raise ConfigError(
            f"--ray {cfg.address} must name a running Ray cluster, got: {exc}; start one "
            "(ray start --head) or use --ray local"
        ) from None
    try:
        yield
    finally:
        ray.shutdown()


def medimg_predict_case(
    predict: Callable[[BatchCase], Any], case: BatchCase, key: ResumeKey
) -> CaseRecord:
    """One case on a worker (its process title while it runs: ``ray::medimg_predict_case``)."""
    record, _ = run_case(case, key, predict)
    return record


def run_batch_on_ray(
    batch: PredictionBatch,
    cases: Sequence[BatchCase],
    model: BatchModel,
    predict: Callable[[BatchCase], Any],
    cfg: RayConfig,
    *,
    is_valid: Callable[[BatchCase], bool] | None = None,
    fail_fast: bool = True,
    progress: bool = False,
) -> tuple[CaseRecord, ...]:
    """:func:`~medimg.inference.run_batch` with each remaining case a Ray task.

    ``predict`` must be picklable and work on any node (e.g. load the model folder once per
    worker process); ``batch`` is entered on the driver, inside :func:`connected`.

    Raises
    ------
    CaseError
        With ``fail_fast``, at the first failing case (the other tasks are cancelled; their
        cases stay ``pending``).
    """
    import math

    import ray

    todo = plan_batch(batch, cases, model, is_valid=is_valid)
    remote = ray.remote(medimg_predict_case).options(
        num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, memory=cfg.memory_bytes,
        max_retries=cfg.max_retries, retry_exceptions=False,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": str(math.ceil(cfg.num_cpus))}},
    )  # fmt: skip
    running: dict[Any, BatchCase] = {}
    for case, key in todo:
        if isinstance(key, ResumeKey):
            running[remote.remote(predict, case, key)] = case
        else:  # its input could not be read: failed here, as locally
            _finish(batch, run_case(case, key, predict)[0], fail_fast, running)
    bar = _bar(len(running), progress)
    while running:
        [ref], _ = ray.wait(list(running), num_returns=1)
        case = running.pop(ref)
        _finish(batch, _result(ref, case), fail_fast, running)
        bar.update(1)
    bar.close()
    return batch.records


def _result(ref: Any, case: BatchCase) -> CaseRecord:
    """The task's record; a case whose worker died on every attempt as ``failed``."""
    import ray
    from ray.exceptions import NodeDiedError, OutOfMemoryError, WorkerCrashedError

    try:
        record: CaseRecord = ray.get(ref)
    except (WorkerCrashedError, NodeDiedError, OutOfMemoryError) as exc:
        reason = f"{type(exc).__name__}: the Ray worker running it died on every attempt ({exc})"
        return CaseRecord(case.case_id, "failed", None if case.output is None
                          else case.output.name, error=reason)  # fmt: skip
    return record


def _finish(batch: PredictionBatch, record: CaseRecord, fail_fast: bool,
            running: dict[Any, BatchCase]) -> None:  # fmt: skip
    batch.record(record)
    if record.status == "written":
        logger.info("case %s: written by a Ray worker", record.case_id)
        return
    logger.error("case %s: prediction failed: %s", record.case_id, record.error)
    if fail_fast:
        import ray

        for ref in running:
            ray.cancel(ref)
        raise CaseError(f"case {record.case_id}: prediction failed: {record.error}")


def _bar(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="case", desc="predict (ray)", disable=not enabled)
