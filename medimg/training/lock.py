"""The run-folder lock of training: one run at a time per folder, leftovers of a dead one removed.

:func:`training_lock` holds :class:`medimg.io.locks.OutputLock` on the folder a run writes
(``fit``'s ``out_dir``; the pipelines' ``model/``) for the whole run. A second run into the same
folder is refused with :class:`~medimg.errors.OutputLockedError` naming the holder's pid and
start time, so it can neither overwrite nor interleave with the first run's checkpoints. A lock
left by a run that died (``kill -9``, a crash, a lost node on this host) is taken over with a
warning, after which ``resume`` continues that run. Once the lock is held, the temporaries an
interrupted atomic write left in the folder (``.last.pt.XXXXXXXX.tmp.pt``) are deleted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from medimg.io.integrity import remove_stale_temporaries
from medimg.io.locks import OutputLock
from medimg.typing import PathLike

__all__ = ["training_lock"]


@contextmanager
def training_lock(folder: PathLike, what: str = "medimg train") -> Iterator[OutputLock]:
    """Hold ``folder``'s output lock for a training run; remove stale temporaries once held.

    Parameters
    ----------
    folder : path-like
        The run folder (created when missing).
    what : str
        What the run is, for messages.

    Yields
    ------
    OutputLock
        The held lock; released on exit, also when the run fails.

    Raises
    ------
    OutputLockedError
        When another live run holds ``folder``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = (Path(d) / ".last.pt.k2j3h_x9.tmp.pt").write_bytes(b"half")
    ...     with training_lock(d) as lock:
    ...         sorted(p.name for p in Path(d).iterdir())
    ['.medimg.lock']
    """
    with OutputLock(folder, what) as lock:
        remove_stale_temporaries(folder)
        yield lock
