"""Wall time and peak host memory of one unit of work (one case of a batch prediction).

Peak memory is the process's peak resident set size (RSS) while the work ran, model and
interpreter included, so it answers "how much RAM does predicting this case need".

* On Linux it is ``VmHWM`` of ``/proc/self/status`` after resetting the high-water mark by
  writing ``5`` to ``/proc/self/clear_refs`` (``method="VmHWM"``): the peak of this case alone.
* Where that fails (not Linux, or ``/proc`` not writable) it is ``ru_maxrss`` of
  ``getrusage(RUSAGE_SELF)`` (``method="ru_maxrss"``): the process's peak *so far*, an upper
  bound that an earlier, larger case can dominate (``ru_maxrss`` cannot be reset, and its
  delta is 0 for any case smaller than an earlier one, which is worse).
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["Usage", "measure_usage"]

_PROC = Path("/proc/self")


@dataclass
class Usage:
    """What :func:`measure_usage` measured; filled in when the ``with`` block ends.

    Attributes
    ----------
    time_s : float
        Wall-clock seconds.
    peak_memory_bytes : int
        Peak resident set size of the process (see the module docstring).
    method : {"VmHWM", "ru_maxrss"}
        How the peak was measured.
    """

    time_s: float = 0.0
    peak_memory_bytes: int = 0
    method: Literal["VmHWM", "ru_maxrss"] = "ru_maxrss"


def _reset_high_water_mark() -> bool:
    try:
        (_PROC / "clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _vm_hwm_bytes() -> int | None:
    try:
        status = (_PROC / "status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # reported in kB
    return None


def _ru_maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # bytes on macOS, kB else


@contextmanager
def measure_usage() -> Iterator[Usage]:
    """Measure the wall time and peak RSS of the ``with`` block.

    Yields
    ------
    Usage
        Filled in on exit, also when the block raises.

    Examples
    --------
    >>> with measure_usage() as usage:
    ...     block = b"x" * (50 * 2**20)  # written, so resident
    >>> usage.peak_memory_bytes > 50 * 2**20, usage.time_s >= 0.0
    (True, True)
    """
    usage = Usage()
    resettable = _reset_high_water_mark()
    start = time.perf_counter()
    try:
        yield usage
    finally:
        usage.time_s = time.perf_counter() - start
        hwm = _vm_hwm_bytes() if resettable else None
        if hwm is None:
            usage.peak_memory_bytes, usage.method = _ru_maxrss_bytes(), "ru_maxrss"
        else:
            usage.peak_memory_bytes, usage.method = hwm, "VmHWM"
