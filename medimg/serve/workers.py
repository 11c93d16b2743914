"""Worker processes: each loads the models once and runs claimed jobs one at a time.

Inference runs outside the server process, so a crash, an out-of-memory kill or a hang in
one job takes down only its worker: :class:`WorkerPool` (a thread of the server) sees the
worker gone, fails the job it was running with the reason, and starts a new worker. Workers
take jobs straight from the :class:`~medimg.serve.store.JobStore` and die with the server
(``PR_SET_PDEATHSIG`` on Linux; elsewhere they notice their parent is gone within a second),
so a ``kill -9`` of the server leaves no orphan working on.
"""

from __future__ import annotations

import ctypes
import json
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from medimg.errors import MedimgError
from medimg.serve.settings import ServeSettings
from medimg.serve.store import Job, JobStore

__all__ = ["WorkerPool", "run_job", "worker_main"]

logger = logging.getLogger(__name__)

_POLL_S = 0.05
_PROGRESS_EVERY_S = 0.25


class _JobGone(Exception):
    """The job was deleted while it ran; its work is dropped."""


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def _progress_recorder(store: JobStore, job_id: str) -> Callable[[int, int], None]:
    last = [0.0]

    def record(done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - last[0] < _PROGRESS_EVERY_S:
            return
        last[0] = now
        if not store.progress(job_id, done, total):
            raise _JobGone(job_id)

    return record


def run_job(job: Job, model: Any, store: JobStore, jobs_dir: Path) -> None:
    """Predict `job`'s input with `model` and record the outcome in `store`.

    A medimg error (a bad input the checks at upload could not see) or a system error
    fails the job with its message; anything else is a bug and ends the worker, which the
    pool reports as the job's failure.
    """
    folder = jobs_dir / job.id
    started = time.monotonic()
    try:
        prediction = model.predict(folder / job.input, progress=_progress_recorder(store, job.id))
        written = dict(prediction.write(folder / "result"))
        if job.input_kind == "dicom":  # the image for the page; SEG and SR on the series
            from medimg.serve._dicom_results import write_dicom_results

            seg_type = str((job.options or {}).get("seg_type", "binary"))
            written.update(write_dicom_results(folder / job.input, model, prediction,
                                               folder / "result", seg_type=seg_type))  # fmt: skip
    except _JobGone:
        logger.info("job %s: deleted while running; its work is dropped", job.id)
        shutil.rmtree(folder, ignore_errors=True)
        return
    except (MedimgError, OSError, MemoryError) as exc:
        message = str(exc).replace(str(folder), "job").strip() or type(exc).__name__
        logger.info("job %s: failed (%s)", job.id, type(exc).__name__)
        store.fail(job.id, message)
        return
    result = {name: str(Path(path).relative_to(folder)) for name, path in written.items()}
    findings = json.loads(json.dumps(prediction.findings))
    if not store.finish(job.id, result, findings):
        shutil.rmtree(folder, ignore_errors=True)
        return
    logger.info("job %s: done in %.2f s", job.id, time.monotonic() - started)


def worker_main(settings: ServeSettings, parent_pid: int, ready: Any = None) -> None:
    """Run one worker process: load the models, then claim and run jobs while the parent lives."""
    _die_with_parent()
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s[%(process)d]: %(message)s"
    )
    from medimg.serve.models import JobModels

    models = JobModels(settings)
    store = JobStore(settings.db_path)
    if ready is not None:
        ready.set()
    pid = os.getpid()
    while os.getppid() == parent_pid:
        job = store.claim(pid)
        if job is None:
            time.sleep(_POLL_S)
            continue
        try:
            model = models.get(job.model, job.options)
        except MedimgError as exc:  # the model, loaded again with the job's options, refused
            store.fail(job.id, f"the model could not take this job's options: {exc}")
            continue
        if model is None:
            store.fail(
                job.id,
                f"model {job.model!r} is no longer served; submit the job again "
                f"with one of {', '.join(models.served)}",
            )
            continue
        run_job(job, model, store, settings.jobs_dir)


def _death(process: BaseProcess) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"exited with status {code}"


class WorkerPool:
    """`settings.workers` worker processes, watched by a thread of the server.

    Parameters
    ----------
    settings : ServeSettings
        Passed to each worker (it loads the models itself).
    store : JobStore
        Where a dead worker's job is failed.
    """

    def __init__(self, settings: ServeSettings, store: JobStore) -> None:
        self.settings = settings
        self.store = store
        self._context = multiprocessing.get_context("spawn")
        self._processes: list[BaseProcess] = []
        self._ready: list[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="medimg-workers", daemon=True)
        self.restarts = 0

    def _spawn(self, index: int) -> BaseProcess:
        ready = self._context.Event()
        if index < len(self._ready):
            self._ready[index] = ready
        else:
            self._ready.append(ready)
        process = self._context.Process(
            target=worker_main,
            args=(self.settings, os.getpid(), ready),
            daemon=True,
            name="medimg-serve-worker",
        )
        process.start()
        return process

    def start(self) -> None:
        """Start the workers and the thread that replaces dead ones."""
        self._processes = [self._spawn(index) for index in range(self.settings.workers)]
        self._thread.start()

    def alive(self) -> int:
        """Workers running now."""
        return sum(process.is_alive() for process in self._processes)

    def ready(self) -> int:
        """Workers running now that have loaded their models."""
        return sum(
            p.is_alive() and r.is_set() for p, r in zip(self._processes, self._ready, strict=True)
        )

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            for index, process in enumerate(self._processes):
                if process.is_alive() or self._stop.is_set():
                    continue
                reason = (
                    f"the worker process running this job {_death(process)}; the job was "
                    "not retried (it may need more memory than the service has, or "
                    "crash the model); check the input or ask the service's operator"
                )
                failed = self.store.fail_running_of(process.pid or -1, reason)
                logger.warning(
                    "worker %s %s; failed jobs: %s; starting a new one",
                    process.pid,
                    _death(process),
                    ", ".join(failed) or "none",
                )
                self.restarts += 1
                self._processes[index] = self._spawn(index)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the watcher, then the workers (SIGTERM, then SIGKILL after `timeout_s`)."""
        self._stop.set()
        for process in self._processes:
            process.terminate()
        deadline = time.monotonic() + timeout_s
        for process in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()

    def describe(self) -> Mapping[str, int]:
        """Numbers for ``/metrics``."""
        return {
            "workers": len(self._processes),
            "alive": self.alive(),
            "ready": self.ready(),
            "restarts": self.restarts,
        }
