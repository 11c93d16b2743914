"""The run record ``run.json``: what a run needs to be reproduced and audited."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import platform
import subprocess
from collections.abc import Mapping
from enum import Enum
from importlib import metadata
from pathlib import Path
from typing import Any

from medimg.evaluation.report import write_json
from medimg.training.distributed import current
from medimg.typing import PathLike

__all__ = ["git_commit", "package_versions", "to_jsonable", "utc_now", "write_run_record"]

logger = logging.getLogger(__name__)

_PACKAGES = ("medimg", "monai", "torch", "numpy", "scipy", "nibabel", "SimpleITK", "pydicom")


def utc_now() -> str:
    """The current time, ISO 8601 in UTC (``2026-01-31T12:00:00+00:00``)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    """Installed versions of medimg, Python and the packages results depend on."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(path: PathLike | None = None) -> str | None:
    """The commit of the git work tree holding ``path`` (medimg's own by default), if any.

    A ``-dirty`` suffix marks uncommitted changes to tracked files.
    """
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def to_jsonable(value: Any) -> Any:
    """Dataclasses, paths, enums, tuples and mappings as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_run_record(
    out_dir: PathLike,
    *,
    config: Any,
    seed: int,
    started: str,
    manifest: PathLike | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``out_dir/run.json`` (replacing an earlier one) and return its path.

    It holds the config (dataclass fields), the manifest path and SHA-256, the seed, the
    number of processes (``world_size``, :func:`~medimg.training.distributed.current`), package
    versions, the git commit, the start time and the end time (now), plus ``extra`` (e.g.
    checkpoint digests, per-case status, the fingerprint).
    """
    manifest_path = Path(manifest) if manifest is not None else None
    record = {
        "config": to_jsonable(config),
        "manifest": str(manifest_path) if manifest_path else None,
        "manifest_sha256": _sha256(manifest_path) if manifest_path else None,
        "seed": seed,
        "world_size": current().world_size,  # processes of a torchrun run; 1 otherwise
        "versions": package_versions(),
        "git_commit": git_commit(),
        "started": started,
        "finished": utc_now(),
        **to_jsonable(dict(extra or {})),
    }
    path = write_json(record, Path(out_dir) / "run.json", overwrite=True)
    logger.info("run record written to %s", path)
    return path
