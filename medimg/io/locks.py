"""Output-folder locks: one run at a time writes a folder.

:class:`OutputLock` holds ``FOLDER/.medimg.lock`` (JSON: pid, host, process
start time, command, start time) for the duration of a run. A second run into the same folder is
refused with :class:`~medimg.errors.OutputLockedError` naming the holder. A lock whose process is
gone (same host; pid dead, or alive but started at another time, i.e. a reused pid) is taken over
with a warning. A lock from another host cannot be checked and is refused; the message says how
to remove it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

from medimg.errors import OutputLockedError
from medimg.typing import PathLike

__all__ = ["LOCK_NAME", "OutputLock"]

logger = logging.getLogger(__name__)

LOCK_NAME = ".medimg.lock"
"""File name of an output folder's lock."""


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
