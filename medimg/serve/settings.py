"""The service's settings: one frozen record, validated once, built by ``medimg serve``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from medimg.errors import ConfigError

__all__ = ["MIB", "ServeSettings", "is_loopback"]

MIB = 1024 * 1024


def is_loopback(host: str) -> bool:
    """Whether `host` names only this machine (``127.0.0.0/8``, ``::1`` or ``localhost``).

    Examples
    --------
    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, kw_only=True)
class ServeSettings:
    """Everything ``medimg serve`` can be told.

    Parameters
    ----------
    data_dir : Path
        The job store (``jobs.sqlite3``), uploads, results and the token table live here.
    models : tuple of Path
        Model sources, each given to :func:`medimg.tasks.load_model` (a ``.medimg`` package,
        a model folder or a run folder).
    host, port : str, int
        Where uvicorn listens; a non-loopback host needs tokens (checked at start).
    workers : int
        Worker processes; each runs one job at a time.
    max_queued : int
        Jobs waiting at most; one more is answered 429 with ``Retry-After``.
    max_active_per_token : int
        Queued or running jobs one token (or, without tokens, everyone) may hold at once.
    max_upload_bytes : int
        Largest request body of ``POST /v1/jobs``; more is answered 413.
    max_decoded_bytes : int
        Largest decoded volume an upload may claim in its header; more is answered 413
        before any voxel is read.
    max_zip_members : int
        Most members of a DICOM zip.
    upload_timeout_s : float
        Longest an upload may take, and longest gap between two of its chunks (408).
    result_ttl_s : float
        Finished jobs (and their files) are deleted this long after they finished.
    max_attempts : int
        Times a job is started; a job whose worker died (crash, out of memory, kill -9 of
        the server) is started again until it has been started this often, then failed.
    cors_origins : tuple of str
        Origins allowed by CORS; empty (the default) sends no CORS headers at all.
    trust : tuple of Path
        Trusted signers' public keys, passed to ``load_model`` (empty: its default).
    device : str
        Device the workers run the models on.
    job_precisions : tuple of str
        Autocast precisions a job may ask for (form field ``precision``); empty (the
        default): every job runs at the model's own precision.
    """

    data_dir: Path
    models: tuple[Path, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_queued: int = 32
    max_active_per_token: int = 16
    max_upload_bytes: int = 1024 * MIB
    max_decoded_bytes: int = 2048 * MIB
    max_zip_members: int = 5000
    upload_timeout_s: float = 300.0
    result_ttl_s: float = 24 * 3600.0
    max_attempts: int = 2
    cors_origins: tuple[str, ...] = field(default=())
    trust: tuple[Path, ...] = ()
    device: str = "cpu"
    job_precisions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        checks = {
            "port": 0 <= self.port <= 65535,
            "workers": self.workers >= 1,
            "max_queued": self.max_queued >= 1,
            "max_active_per_token": self.max_active_per_token >= 1,
            "max_upload_bytes": self.max_upload_bytes >= 1,
            "max_decoded_bytes": self.max_decoded_bytes >= 1,
            "max_zip_members": self.max_zip_members >= 1,
            "upload_timeout_s": 0 < self.upload_timeout_s < float("inf"),
            "result_ttl_s": 0 < self.result_ttl_s < float("inf"),
            "max_attempts": self.max_attempts >= 1,
        }
        from medimg.serve._options import PRECISIONS

        for precision in self.job_precisions:
            if precision not in PRECISIONS:
                raise ConfigError(
                    f"serve setting job_precisions (--job-precision) must be among "
                    f"{', '.join(PRECISIONS)}, got {precision!r}"
                )
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(
                    f"serve setting {name} is out of range, got {getattr(self, name)!r}; "
                    "see medimg serve --help for the allowed values"
                )

    @property
    def db_path(self) -> Path:
        """The SQLite file of jobs and tokens."""
        return self.data_dir / "jobs.sqlite3"

    @property
    def jobs_dir(self) -> Path:
        """Per-job folders: ``<id>/input...`` and ``<id>/result/``."""
        return self.data_dir / "jobs"
