"""Resumable batch prediction that never trusts a stale output.

Both pipelines' ``predict`` run their cases through :class:`PredictionBatch`, which owns the
output folder for the run and keeps one record per case in ``summary.json``:

* **Lock.** On entry it takes the folder's :class:`~medimg.io.locks.OutputLock` (a second
  run into the same folder is refused with :class:`~medimg.errors.OutputLockedError`; the lock
  of a dead process is taken over with a warning), then deletes temporaries an interrupted
  write left there (:func:`~medimg.io.integrity.remove_stale_temporaries`).
* **Resume key.** A case's output is reused only when its
  :class:`~medimg.inference.resume.ResumeKey` equals the one
  recorded with it: the checkpoint's SHA-256 (the model), the preprocessing chain key
  (:func:`~medimg.transforms.cache.chain_key`), the inference settings that change the output
  (:func:`~medimg.inference.resume.inference_settings`) and the content identity of every input file
  (:func:`~medimg.io.integrity.file_identity`: size and SHA-256, re-hashed unless size,
  ``mtime_ns``, ``ctime_ns`` and inode are all unchanged). The output file itself must also
  still have the size and SHA-256 recorded when it was written. Whatever differs is logged
  (:meth:`~medimg.inference.resume.ResumeKey.differences`) and the case is predicted again.
* **Summary.** ``summary.json`` is rewritten atomically after every case, so an interrupted
  batch still says what happened: cases not reached yet have status ``pending``.

Why the key lives in ``summary.json`` and not in a sidecar per output: the summary has to be
rewritten atomically after every case anyway, so one rename commits a case's status and its key
together and the two can never disagree; classification has no per-case file to put a sidecar
beside; and the folder keeps its layout (outputs, ``summary.json``, ``run.json``). The cost is
rewriting a file of about 1 KB per case after each case, milliseconds for thousands of cases.
A case whose output was renamed into place but not yet recorded when the process was killed
has no record and is predicted again, so a record is never ahead of its output.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from medimg.errors import CaseError, ConfigError, ImageNotFoundError, ImageReadError, MedimgError
from medimg.inference.resume import (
    CaseRecord,
    ResumeKey,
    input_identities,
)
from medimg.inference.usage import measure_usage
from medimg.io.integrity import (
    FileIdentity,
    file_identity,
    remove_stale_temporaries,
)
from medimg.io.locks import OutputLock
from medimg.io.writing import atomic_path
from medimg.typing import PathLike

__all__ = [
    "CASE_ERRORS",
    "BatchCase",
    "BatchModel",
    "PredictionBatch",
    "plan_batch",
    "run_batch",
    "run_case",
]

logger = logging.getLogger(__name__)


class PredictionBatch:
    """The records, lock and summary of one batch run into ``folder``; a context manager.

    Parameters
    ----------
    folder : path-like
        The output folder (created when missing).
    header : mapping
        JSON-ready fields written at the top of the summary (split, model folder, ...).
    summary_name : str
        File name of the summary inside ``folder``.
    overwrite : bool
        Ignore earlier records: every case is predicted again.
    what : str
        The command, for the lock's messages.

    Raises
    ------
    ConfigError
        When ``folder`` exists and is not a folder.
    OutputLockedError
        On entry, when another live run uses ``folder``.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d, PredictionBatch(d, header={}) as batch:
    ...     batch.begin(["a"])
    ...     batch.record(CaseRecord("a", "failed", error="a.nii.gz: no such file"))
    ...     json.loads((Path(d) / "summary.json").read_text())["failed"]
    1
    """

    def __init__(
        self,
        folder: PathLike,
        *,
        header: Mapping[str, Any],
        summary_name: str = "summary.json",
        overwrite: bool = False,
        what: str = "medimg predict",
    ) -> None:
        self.folder = Path(folder)
        self.summary_path = self.folder / summary_name
        self.header = dict(header)
        self.overwrite = overwrite
        self._lock = OutputLock(self.folder, what)
        self._previous: dict[str, CaseRecord] = {}
        self._records: dict[str, CaseRecord] = {}

    def __enter__(self) -> PredictionBatch:
        if self.folder.exists() and not self.folder.is_dir():
            raise ConfigError(
                f"output folder {self.folder} must be a folder, got a file; choose another "
                f"--out or remove the file"
            )
        self._lock.acquire()
        try:
            remove_stale_temporaries(self.folder)
            self._previous = {} if self.overwrite else self._read_previous()
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._records:
                self._write(finished=exc_type is None)
        finally:
            self._lock.release()

    @property
    def records(self) -> tuple[CaseRecord, ...]:
        """Every case's current record, in the order given to :meth:`begin`."""
        return tuple(self._records.values())

    def begin(self, case_ids: Sequence[str]) -> None:
        """Mark every case ``pending`` and write the summary."""
        self._records = {c: CaseRecord(c, "pending") for c in case_ids}
        self._write(finished=False)

    def previous_key(self, case_id: str) -> ResumeKey | None:
        """The key recorded for ``case_id`` by an earlier run (for the stat shortcut)."""
        record = self._previous.get(case_id)
        return None if record is None else record.key

    def reusable(self, case_id: str, key: ResumeKey, output: Path | None) -> CaseRecord | None:
        """The earlier record of ``case_id`` as ``skipped`` when it may be reused, else None.

        Reusable means: an earlier run recorded the case as done under a key equal to ``key``
        and, when the case writes ``output``, that file still has the recorded size and
        SHA-256. Otherwise the reason is logged.
        """
        earlier = self._previous.get(case_id)
        if earlier is None:
            return None
        diffs = key.differences(earlier.key)
        if output is not None and not diffs:
            diffs = self._output_changed(output, earlier.output_identity)
        if diffs:
            logger.info("case %s: predicting again: %s changed", case_id, "; ".join(diffs))
            return None
        return replace(earlier, status="skipped", time_s=None, peak_memory_bytes=None)

    def record(self, record: CaseRecord, *, write: bool = True) -> None:
        """Store ``record`` and (unless ``write`` is false) rewrite the summary atomically."""
        self._records[record.case_id] = record
        if write:
            self._write(finished=False)

    def save(self) -> None:
        """Rewrite the summary atomically with the records as they are."""
        self._write(finished=False)

    def _output_changed(self, output: Path, recorded: FileIdentity | None) -> list[str]:
        if not output.is_file():
            return [f"output {output.name} (missing)"]
        if recorded is None:
            return [f"output {output.name} (no identity recorded)"]
        now = file_identity(output, previous=recorded)
        if now.same_content(recorded):
            return []
        return [f"output {output.name} (replaced or damaged since it was written)"]

    def _read_previous(self) -> dict[str, CaseRecord]:
        if not self.summary_path.is_file():
            return {}
        try:
            summary = json.loads(self.summary_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            logger.warning(
                "%s: unreadable (%s); every case is predicted again", self.summary_path, exc
            )
            return {}
        cases = summary.get("cases") if isinstance(summary, dict) else None
        if not isinstance(cases, list):
            return {}
        records = [CaseRecord.from_json(c) for c in cases]
        return {r.case_id: r for r in records if r is not None}

    def _write(self, *, finished: bool) -> None:
        statuses = [r.status for r in self._records.values()]
        summary = {
            **self.header,
            "finished": finished,
            **{s: statuses.count(s) for s in ("written", "skipped", "failed", "pending")},
            "cases": [r.to_json() for r in self._records.values()],
        }
        with atomic_path(self.summary_path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------
# the loop both pipelines run

CASE_ERRORS = (MedimgError, OSError, RuntimeError, ValueError, MemoryError)
"""What a failing case may raise: medimg's checks, IO, torch (out of memory included), numpy."""


@dataclass(frozen=True)
class BatchCase:
    """One case of :func:`run_batch`: its input files and the file it writes, if any."""

    case_id: str
    inputs: tuple[Path, ...]
    output: Path | None = None


@dataclass(frozen=True)
class BatchModel:
    """The parts of every case's :class:`ResumeKey` that the whole batch shares."""

    model_sha256: str
    chain_key: str
    settings: Mapping[str, Any] = field(hash=False)

    def key_for(self, inputs: tuple[FileIdentity, ...]) -> ResumeKey:
        """The key of a case with these input identities."""
        return ResumeKey(self.model_sha256, self.chain_key, self.settings, inputs)


Predict = Callable[[BatchCase], "dict[str, Any] | None"]


def run_batch(
    batch: PredictionBatch,
    cases: Sequence[BatchCase],
    model: BatchModel,
    predict: Predict,
    *,
    is_valid: Callable[[BatchCase], bool] | None = None,
    fail_fast: bool = True,
    progress: bool = False,
) -> tuple[CaseRecord, ...]:
    """Predict every case of ``cases`` not already done under an equal key; return the records.

    First every case is checked: its key is computed (input files hashed unless unchanged
    since the recorded identity) and an earlier record is reused when
    :meth:`PredictionBatch.reusable` allows and ``is_valid`` (a check of the output, e.g. its
    grid) agrees. The outputs of the other cases are deleted before any work starts, so at
    any moment of the run every output in the folder was made under the current key. Then
    each remaining case runs: ``predict(case)`` writes ``case.output`` and/or returns a result
    kept in the record, and the summary is rewritten.

    Parameters
    ----------
    batch : PredictionBatch
        The entered batch (holding the folder's lock).
    cases : sequence of BatchCase
        In order.
    model : BatchModel
        Model, preprocessing and settings parts of the key.
    predict : callable
        Runs one case; may raise any of :data:`CASE_ERRORS`.
    is_valid : callable, optional
        Extra check of a reusable case's output.
    fail_fast : bool
        Raise on the first failing case (after recording it); otherwise record it and go on.
    progress : bool
        A tqdm bar over the cases.

    Raises
    ------
    CaseError
        With ``fail_fast``, naming the failing case; the cause is chained.
    """
    todo = plan_batch(batch, cases, model, is_valid=is_valid)
    for case, key in _progress(todo, progress):
        batch.record(_run_one(batch, case, key, predict, fail_fast))
    return batch.records


def plan_batch(
    batch: PredictionBatch,
    cases: Sequence[BatchCase],
    model: BatchModel,
    *,
    is_valid: Callable[[BatchCase], bool] | None = None,
) -> list[tuple[BatchCase, ResumeKey | MedimgError]]:
    """The check phase of :func:`run_batch`: reusable cases ``skipped``, stale outputs deleted.

    Returns the other cases with their key (or the error computing it), in order, for
    :func:`run_case` here or on a cluster (:mod:`medimg.inference.ray_batch`).
    """
    batch.begin([c.case_id for c in cases])
    todo: list[tuple[BatchCase, ResumeKey | MedimgError]] = []
    for case in cases:
        try:
            key = model.key_for(input_identities(case.inputs, batch.previous_key(case.case_id)))
        except (ImageNotFoundError, ImageReadError) as exc:
            todo.append((case, exc))
            continue
        reused = batch.reusable(case.case_id, key, case.output)
        if reused is not None and (is_valid is None or is_valid(case)):
            batch.record(reused, write=False)
            continue
        if case.output is not None and case.output.exists():
            logger.info("case %s: removing %s, made under another key", case.case_id, case.output)
            case.output.unlink()
        todo.append((case, key))
    batch.save()
    return todo


def _run_one(
    batch: PredictionBatch,
    case: BatchCase,
    key: ResumeKey | MedimgError,
    predict: Predict,
    fail_fast: bool,
) -> CaseRecord:
    record, failure = run_case(case, key, predict)
    if failure is None:
        return record
    if fail_fast:
        batch.record(record)
        raise CaseError(f"case {case.case_id}: prediction failed: {failure}") from failure
    logger.error("case %s: prediction failed: %s", case.case_id, record.error)
    return record


def run_case(
    case: BatchCase, key: ResumeKey | MedimgError, predict: Predict
) -> tuple[CaseRecord, BaseException | None]:
    """Run one case, measured; its record (``written`` or ``failed``) and the failure, if any.

    ``predict`` may raise any of :data:`CASE_ERRORS`; the record names the reason and input.
    """
    output = None if case.output is None else case.output.name
    failure: BaseException | None = None
    with measure_usage() as usage:
        try:
            if not isinstance(key, ResumeKey):
                raise key
            result = predict(case)
            identity = None if case.output is None else file_identity(case.output)
        except CASE_ERRORS as exc:
            failure = exc
    time_s, peak = round(usage.time_s, 6), usage.peak_memory_bytes
    if failure is None and isinstance(key, ResumeKey):
        logger.info("case %s: written%s", case.case_id, f" -> {case.output}" if output else "")
        written = CaseRecord(
            case.case_id, "written", output, key, identity, result, None, time_s, peak
        )
        return written, None
    record = CaseRecord(case.case_id, "failed", output, error=_reason(case, failure),
                        time_s=time_s, peak_memory_bytes=peak)  # fmt: skip
    return record, failure


def _reason(case: BatchCase, exc: BaseException | None) -> str:
    """``Type: message``, naming the case's input file when the message does not."""
    reason = f"{type(exc).__name__}: {exc}"
    if not any(str(p) in reason or p.name in reason for p in case.inputs):
        reason += f" (input {', '.join(str(p) for p in case.inputs)})"
    return reason


def _progress(todo: list[Any], enabled: bool) -> Iterable[Any]:
    if not enabled:
        return todo
    from tqdm.auto import tqdm

    bar: Iterable[Any] = tqdm(todo, unit="case", desc="predict")
    return bar
