"""Integrity primitives: input file identity, output-folder locks, stale temporaries.

These are the keys, locks and clean-ups that caches, resumable batches and training runs share,
so that nothing is reused when its inputs changed and no two runs write one folder at once.

**File identity.** :func:`file_identity` records a file's size, ``mtime_ns``, ``ctime_ns``,
inode and the SHA-256 of its bytes. Two identities *match* (:meth:`FileIdentity.same_content`)
when size and SHA-256 agree: the content decides, so a ``touch``, a copy or a restore from backup
does not invalidate a cache, while any change of a voxel does, even when a tool kept the old
``mtime`` (``cp -p``, ``rsync -t``, ``tar x`` and coarse network file systems all can). Hashing
costs one read of the file (about 1-2 GB/s); to avoid it on every run, ``previous=`` reuses a
recorded hash when size, ``mtime_ns``, ``ctime_ns`` and inode are all unchanged. ``ctime`` is set
by the kernel on every write or metadata change and cannot be set back by user tools, so that
shortcut trusts nothing a user can forge by accident.

A folder input (a DICOM series) is identified by every file in it (:func:`path_identities`).

**Output locks.** :class:`OutputLock` holds ``FOLDER/.medimg.lock`` (JSON: pid, host, process
start time, command, start time) for the duration of a run. A second run into the same folder is
refused with :class:`~medimg.errors.OutputLockedError` naming the holder. A lock whose process is
gone (same host; pid dead, or alive but started at another time, i.e. a reused pid) is taken over
with a warning. A lock from another host cannot be checked and is refused; the message says how
to remove it.

**Stale temporaries.** :func:`medimg.io.atomic_path` writes to ``.NAME.XXXXXXXX.tmp...`` beside
the target. A ``kill -9`` can leave one behind; :func:`remove_stale_temporaries` deletes them and
is called by a run once it holds the folder's lock (so no live writer can own them).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import socket
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from medimg.errors import OutputLockedError
from medimg.typing import PathLike

__all__ = [
    "LOCK_NAME",
    "FileIdentity",
    "OutputLock",
    "file_identity",
    "input_files",
    "is_temporary_name",
    "path_identities",
    "remove_stale_temporaries",
    "sha256_file",
]

logger = logging.getLogger(__name__)

LOCK_NAME = ".medimg.lock"
"""File name of an output folder's lock."""

_BLOCK = 1 << 20
_TEMP_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\..*)?$")
"""What :func:`medimg.io.atomic_path` names its temporaries: ``.NAME.<8 random>.tmp<suffix>``."""


def sha256_file(path: PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (memory stays bounded).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile() as f:
    ...     _ = f.write(b"abc"); f.flush()
    ...     sha256_file(f.name)[:16]
    'ba7816bf8f01cfea'
    """
    sha = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            sha.update(block)
    return sha.hexdigest()


@dataclass(frozen=True)
class FileIdentity:
    """What identifies one input file's content; see the module docstring.

    Attributes
    ----------
    path : str
        The resolved path when the identity was taken (informational: content decides).
    size : int
        Bytes.
    mtime_ns, ctime_ns, inode : int
        From ``os.stat``; used only to skip re-hashing an unchanged file.
    sha256 : str
        Hex SHA-256 of the bytes.
    """

    path: str
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    sha256: str

    def same_content(self, other: FileIdentity | None) -> bool:
        """Whether ``other`` has the same size and SHA-256 (path and times do not matter)."""
        return other is not None and (self.size, self.sha256) == (other.size, other.sha256)

    def to_json(self) -> dict[str, Any]:
        """The identity as a JSON-ready dict (inverse of :meth:`from_json`)."""
        return asdict(self)

    @classmethod
    def from_json(cls, record: Any) -> FileIdentity | None:
        """Parse :meth:`to_json`'s output; ``None`` when ``record`` is not a valid identity."""
        if not isinstance(record, dict):
            return None
        try:
            return cls(
                path=str(record["path"]),
                size=int(record["size"]),
                mtime_ns=int(record["mtime_ns"]),
                ctime_ns=int(record["ctime_ns"]),
                inode=int(record["inode"]),
                sha256=str(record["sha256"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def file_identity(path: PathLike, *, previous: FileIdentity | None = None) -> FileIdentity:
    """Identity of the file at ``path``, hashing it unless ``previous`` still describes it.

    Parameters
    ----------
    path : path-like
        A regular file (symlinks are followed).
    previous : FileIdentity, optional
        An identity recorded earlier. When the resolved path, size, ``mtime_ns``, ``ctime_ns``
        and inode are all unchanged its SHA-256 is reused without reading the file.

    Raises
    ------
    FileNotFoundError, OSError
        When the file cannot be read.
    """
    resolved = Path(path).resolve()
    st = resolved.stat()
    stat_key = (str(resolved), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if previous is not None and stat_key == (
        previous.path,
        previous.size,
        previous.mtime_ns,
        previous.ctime_ns,
        previous.inode,
    ):
        return previous
    return FileIdentity(
        path=str(resolved),
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        ctime_ns=st.st_ctime_ns,
        inode=st.st_ino,
        sha256=sha256_file(resolved),
    )


def input_files(path: PathLike) -> list[Path]:
    """The files an input path stands for: itself, or every file of a (DICOM series) folder.

    A folder's files are listed recursively and sorted by their path inside it; names starting
    with ``.`` (hidden files, :func:`medimg.io.atomic_path` temporaries) are left out, as the
    DICOM reader leaves them out.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_dir():
        if not path.exists():
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return [path]
    return sorted(
        (p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")),
        key=lambda p: p.relative_to(path).parts,
    )


def path_identities(
    path: PathLike, *, previous: Mapping[str, FileIdentity] | None = None
) -> tuple[FileIdentity, ...]:
    """Identity of every file of an input path (:func:`input_files`), in that order.

    A file gives one identity; a DICOM series folder one per file, so adding, removing or
    changing any slice changes the result.

    Parameters
    ----------
    path : path-like
        A file or a folder.
    previous : mapping of str to FileIdentity, optional
        Identities recorded earlier, by resolved path: their hashes are reused where the stat
        fields allow (see :func:`file_identity`).

    Raises
    ------
    FileNotFoundError, OSError
        When a file cannot be read.
    """
    earlier = previous or {}
    return tuple(
        file_identity(p, previous=earlier.get(str(p.resolve()))) for p in input_files(path)
    )


# --------------------------------------------------------------------------------------------
# output-folder locks


def _process_start(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may contain spaces
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class _Holder:
    pid: int
    host: str
    started: str
    process_start: str | None
    command: str
    what: str = ""

    @classmethod
    def me(cls, what: str) -> _Holder:
        pid = os.getpid()
        return cls(
            pid=pid,
            host=socket.gethostname(),
            started=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            process_start=_process_start(pid),
            command=" ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:300],
            what=what,
        )

    def describe(self) -> str:
        """``what (command)``, or whichever of the two is known."""
        parts = [p for p in (self.what, self.command) if p]
        return f"{parts[0]} ({parts[1]})" if len(parts) == 2 else (parts or ["a medimg run"])[0]

    @classmethod
    def read(cls, path: Path) -> _Holder | None:
        try:
            record = json.loads(path.read_text())
            return cls(
                pid=int(record["pid"]),
                host=str(record["host"]),
                started=str(record["started"]),
                process_start=record.get("process_start"),
                command=str(record.get("command", "")),
                what=str(record.get("what", "")),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def is_gone(self) -> bool:
        """True when this holder certainly no longer runs (only decidable on this host)."""
        if self.host != socket.gethostname():
            return False
        if not _pid_alive(self.pid):
            return True
        now = _process_start(self.pid)
        return self.process_start is not None and now is not None and now != self.process_start


class OutputLock:
    """Exclusive use of an output folder by one run; a context manager.

    Parameters
    ----------
    folder : path-like
        The output folder; created when missing. The lock is ``folder/.medimg.lock``.
    what : str
        What the run is (``"medimg predict"``), for messages.

    Raises
    ------
    OutputLockedError
        On entry, when another live run holds the folder, or a run on another host does.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d, OutputLock(d, "demo") as lock:
    ...     lock.path.name
    '.medimg.lock'
    """

    def __init__(self, folder: PathLike, what: str = "a medimg run") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.what = what
        self._held = False

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, taking over one left by a dead process (with a warning)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        me = _Holder.me(self.what)
        for _ in range(3):
            if self._create(me):
                self._held = True
                return
            holder = _Holder.read(self.path)
            if holder is None:
                # unreadable: a writer between create and write, or a damaged file; a dead
                # writer's empty lock is taken over only when it is old
                if self._empty_and_old():
                    self._take_over(None)
                    continue
                raise OutputLockedError(
                    f"{self.folder} is in use: its lock {self.path} is unreadable; if no "
                    f"medimg run uses this folder, delete {self.path} and run again"
                )
            if holder.is_gone():
                self._take_over(holder)
                continue
            where = "" if holder.host == me.host else f" on host {holder.host}"
            hint = (
                "wait for it to finish or stop it"
                if holder.host == me.host
                else f"that host's process cannot be checked from here; if it has ended, "
                f"delete {self.path}"
            )
            raise OutputLockedError(
                f"{self.folder} is in use by pid {holder.pid}{where} since {holder.started} "
                f"({holder.describe()}); {hint}, or choose another output folder"
            )
        raise OutputLockedError(f"{self.folder}: could not take the lock {self.path}; try again")

    def release(self) -> None:
        """Remove the lock if this object holds it."""
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False

    def _create(self, me: _Holder) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(me), f)
        return True

    def _empty_and_old(self) -> bool:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return True
        age_s = dt.datetime.now().timestamp() - st.st_mtime
        return st.st_size == 0 and age_s > 60

    def _take_over(self, holder: _Holder | None) -> None:
        # rename first: of several processes taking over at once, one rename wins and the
        # others find the lock file gone or new (and then retry the exclusive create)
        stale = self.path.with_name(f"{LOCK_NAME}.stale.{os.getpid()}")
        try:
            os.replace(self.path, stale)
        except FileNotFoundError:
            return
        stale.unlink(missing_ok=True)
        who = "an unreadable lock" if holder is None else f"pid {holder.pid} since {holder.started}"
        logger.warning(
            "%s: taking over the lock of %s, which is no longer running (%s)",
            self.folder,
            self.what if holder is None else holder.describe(),
            who,
        )


# --------------------------------------------------------------------------------------------
# stale temporaries


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` is one of :func:`medimg.io.atomic_path`'s temporary file names.

    Examples
    --------
    >>> is_temporary_name(".case_004.nii.gz.k2j3h_x9.tmp.nii.gz")
    True
    >>> is_temporary_name("case_004.nii.gz")
    False
    """
    return bool(_TEMP_RE.match(name))


def remove_stale_temporaries(folder: PathLike, *, recursive: bool = False) -> list[Path]:
    """Delete temporaries left in ``folder`` by an interrupted write; return what was removed.

    Call this only while holding the folder's :class:`OutputLock`: a live writer's temporary
    looks the same.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    candidates = folder.rglob(".*") if recursive else folder.glob(".*")
    removed = []
    for path in candidates:
        if path.is_file() and is_temporary_name(path.name):
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        logger.warning(
            "%s: removed %d temporary file(s) left by an interrupted run: %s",
            folder,
            len(removed),
            ", ".join(p.name for p in removed[:5]) + (" ..." if len(removed) > 5 else ""),
        )
    return removed
