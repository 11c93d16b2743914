"""The job store: one SQLite file (the standard library's, WAL journal) for server and workers.

A job is a row; its upload and results are files under ``jobs/<id>/`` beside the database.
The store is also the queue: workers claim the oldest queued job in one ``BEGIN IMMEDIATE``
transaction, so two workers never take the same job and a job is never half-claimed. Every
write is a committed transaction, so a ``kill -9`` of any process loses nothing that was
answered: :meth:`JobStore.recover` (run at start) puts jobs that were running back in the queue
or, once they have been started ``max_attempts`` times, fails them with the reason.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from medimg.errors import MedimgError

__all__ = ["STATUSES", "AdmissionError", "Job", "JobStore", "Status"]

logger = logging.getLogger(__name__)

Status = Literal["queued", "running", "done", "failed"]
STATUSES: tuple[Status, ...] = ("queued", "running", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    owner TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    input TEXT NOT NULL,
    input_kind TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker_pid INTEGER,
    error TEXT,
    result TEXT,
    findings TEXT,
    options TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, created);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    revoked REAL
);
"""


class AdmissionError(MedimgError, RuntimeError):
    """A job was not accepted: the queue is full or its owner holds too many jobs.

    ``retry_after_s`` is the wait the service suggests (``Retry-After``).
    """

    def __init__(self, message: str, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


@dataclass(frozen=True)
class Job:
    """One row of the store, as read."""

    id: str
    model: str
    owner: str
    status: Status
    input: str
    input_kind: str
    created: float
    started: float | None
    finished: float | None
    done: int
    total: int
    attempts: int
    worker_pid: int | None
    error: str | None
    result: dict[str, str] | None
    findings: Any
    options: dict[str, Any] | None = None
    """The job's own prediction options (form fields, checked), None for the model's."""

    @classmethod
    def queued(
        cls, id: str, *, model: str, owner: str, input: str, input_kind: str,
        options: dict[str, Any] | None = None, created: float | None = None,
    ) -> Job:  # fmt: skip
        """A job just accepted: queued, not started, no progress, result or error yet."""
        return cls(
            id=id, model=model, owner=owner, status="queued", input=input,
            input_kind=input_kind, created=time.time() if created is None else created,
            started=None, finished=None, done=0, total=0, attempts=0, worker_pid=None,
            error=None, result=None, findings=None, options=options,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """The job as ``GET /v1/jobs/{id}`` answers it (no owner, no paths)."""
        timings: dict[str, float | None] = {
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "queued_s": None if self.started is None else self.started - self.created,
            "run_s": None
            if self.started is None or self.finished is None
            else self.finished - self.started,
        }
        return {
            "id": self.id,
            "status": self.status,
            "model": self.model,
            "input_kind": self.input_kind,
            "progress": {"done": self.done, "total": self.total},
            "attempts": self.attempts,
            "timings": timings,
            "error": self.error,
            "results": sorted(self.result or {}),
            "findings": self.findings if self.status == "done" else None,
            "options": self.options or {},
        }


def _job(row: sqlite3.Row) -> Job:
    values = dict(row)
    values["result"] = None if row["result"] is None else json.loads(row["result"])
    values["findings"] = None if row["findings"] is None else json.loads(row["findings"])
    values["options"] = None if row["options"] is None else json.loads(row["options"])
    return Job(**values)


def new_job_id() -> str:
    """A random job id (128 bits, URL-safe)."""
    return secrets.token_hex(16)


class JobStore:
    """Jobs and tokens in ``path`` (created with its schema when missing).

    Every method opens its own connection, so one store object may be used from any thread
    or process; concurrent writers wait on SQLite's lock (``timeout_s``) instead of failing.
    """

    def __init__(self, path: Path, *, timeout_s: float = 30.0) -> None:
        self.path = path
        self.timeout_s = timeout_s
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            columns = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
            if "options" not in columns:  # a store made before per-job options
                try:
                    db.execute("ALTER TABLE jobs ADD COLUMN options TEXT")
                except sqlite3.OperationalError as exc:  # another process added it first
                    if "duplicate column" not in str(exc):
                        raise

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode (``BEGIN`` explicitly for a transaction)."""
        db = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA synchronous=NORMAL")
        try:
            yield db
        finally:
            db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back when the block raises)."""
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def submit(
        self, job: Job, *, max_queued: int, max_active_per_owner: int, retry_after_s: int
    ) -> None:
        """Queue `job` unless the queue is full or its owner holds too many jobs.

        Raises
        ------
        AdmissionError
            With the limit that was reached; nothing is written then.
        """
        with self.transaction() as db:
            queued = db.execute("SELECT count(*) FROM jobs WHERE status = 'queued'").fetchone()[0]
            if queued >= max_queued:
                raise AdmissionError(
                    f"the queue is full ({queued} jobs waiting, at most {max_queued}); "
                    f"retry in {retry_after_s} s",
                    retry_after_s,
                )
            active = db.execute(
                "SELECT count(*) FROM jobs WHERE owner = ? AND status IN ('queued', 'running')",
                (job.owner,),
            ).fetchone()[0]
            if active >= max_active_per_owner:
                raise AdmissionError(
                    f"this token holds {active} unfinished jobs, at most "
                    f"{max_active_per_owner}; wait for one to finish and retry in "
                    f"{retry_after_s} s",
                    retry_after_s,
                )
            db.execute(
                "INSERT INTO jobs (id, model, owner, status, input, input_kind, created, "
                "options) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?)",
                (
                    job.id,
                    job.model,
                    job.owner,
                    job.input,
                    job.input_kind,
                    job.created,
                    None if not job.options else json.dumps(job.options),
                ),
            )

    def get(self, job_id: str) -> Job | None:
        """The job, or None when there is none of that id."""
        with self.connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _job(row)

    def claim(self, worker_pid: int) -> Job | None:
        """Take the oldest queued job for `worker_pid` (now ``running``), or None."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT id FROM jobs WHERE status = 'queued' ORDER BY created, rowid LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET status = 'running', started = ?, attempts = attempts + 1, "
                "worker_pid = ?, done = 0, total = 0 WHERE id = ?",
                (time.time(), worker_pid, row["id"]),
            )
            claimed = db.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone()
        return _job(claimed)

    def progress(self, job_id: str, done: int, total: int) -> bool:
        """Record windows done of total; False when the job is gone (deleted)."""
        with self.connect() as db:
            cursor = db.execute(
                "UPDATE jobs SET done = ?, total = ? WHERE id = ? AND status = 'running'",
                (done, total, job_id),
            )
        return cursor.rowcount == 1

    def finish(self, job_id: str, result: dict[str, str], findings: Any) -> bool:
        """Mark the job done with its result files; False when it is gone (deleted)."""
        with self.connect() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = 'done', finished = ?, result = ?, findings = ?, "
                "worker_pid = NULL WHERE id = ? AND status = 'running'",
                (time.time(), json.dumps(result), json.dumps(findings), job_id),
            )
        return cursor.rowcount == 1

    def fail(self, job_id: str, error: str) -> bool:
        """Mark the job failed with `error`; False when it is gone or already finished."""
        with self.connect() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = 'failed', finished = ?, error = ?, worker_pid = NULL "
                "WHERE id = ? AND status IN ('queued', 'running')",
                (time.time(), error, job_id),
            )
        return cursor.rowcount == 1

    def delete(self, job_id: str) -> bool:
        """Remove the job's row; False when there was none."""
        with self.connect() as db:
            cursor = db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return cursor.rowcount == 1

    def fail_running_of(self, worker_pid: int, reason: str) -> list[str]:
        """Fail the jobs `worker_pid` was running (it died); their ids."""
        with self.transaction() as db:
            rows = db.execute(
                "SELECT id FROM jobs WHERE status = 'running' AND worker_pid = ?", (worker_pid,)
            ).fetchall()
            db.execute(
                "UPDATE jobs SET status = 'failed', finished = ?, error = ?, worker_pid = NULL "
                "WHERE status = 'running' AND worker_pid = ?",
                (time.time(), reason, worker_pid),
            )
        return [row["id"] for row in rows]

    def recover(self, max_attempts: int) -> tuple[int, int]:
        """At start, before any worker: rerun or fail the jobs that were running.

        A job started fewer than `max_attempts` times goes back to the queue; the others are
        failed with the reason. Returns (requeued, failed).
        """
        reason = (
            "the service stopped while this job was running, {n} times (killed, crashed or "
            "out of memory); it was not run again; submit it again or check the service's log"
        )
        with self.transaction() as db:
            rows = db.execute("SELECT id, attempts FROM jobs WHERE status = 'running'").fetchall()
            requeued = failed = 0
            for row in rows:
                if row["attempts"] < max_attempts:
                    db.execute(
                        "UPDATE jobs SET status = 'queued', worker_pid = NULL, done = 0, "
                        "total = 0 WHERE id = ?",
                        (row["id"],),
                    )
                    requeued += 1
                else:
                    db.execute(
                        "UPDATE jobs SET status = 'failed', finished = ?, error = ?, "
                        "worker_pid = NULL WHERE id = ?",
                        (time.time(), reason.format(n=row["attempts"]), row["id"]),
                    )
                    failed += 1
        return requeued, failed

    def expired(self, before: float) -> list[str]:
        """Ids of finished jobs that finished before `before` (seconds since the epoch)."""
        with self.connect() as db:
            rows = db.execute(
                "SELECT id FROM jobs WHERE status IN ('done', 'failed') AND finished < ?",
                (before,),
            ).fetchall()
        return [row["id"] for row in rows]

    def counts(self) -> dict[str, int]:
        """Jobs by status (every status present, 0 when none)."""
        with self.connect() as db:
            rows = db.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall()
        found = {row[0]: row[1] for row in rows}
        return {status: int(found.get(status, 0)) for status in STATUSES}
