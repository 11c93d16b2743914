"""Device, precision and background-loading helpers for inference (private)."""

from __future__ import annotations

import ctypes
import functools
import queue
import resource
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

import torch

from medimg.errors import ConfigError
from medimg.inference.config import Precision

__all__ = [
    "HeapTrimmer",
    "autocast_for",
    "choose_device",
    "idle_resident_bytes",
    "prefetched",
    "release_freed_memory",
    "resolve_precision",
]

T = TypeVar("T")


def choose_device(name: str) -> torch.device:
    """``"auto"``: CUDA when available, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device must be 'auto' or a torch device, got {name!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but CUDA is not available; use 'auto'")
    return device


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether the CPU has bfloat16 dot-product instructions (AVX512-BF16 or AMX).

    oneDNN also runs bfloat16 on plain AVX-512 by emulation, but that is several times slower
    than float32 (measured here: 1.5 s against 0.26 s per 96**3 UNet window), so it does not
    count.
    """
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return False
    flags = cpuinfo.read_text(errors="replace")
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: Precision, device: torch.device) -> torch.dtype:
    """The autocast dtype for ``precision`` on ``device`` (float32 means no autocast).

    ``"auto"`` without a calibration is bfloat16 only where it is native (CUDA with bf16,
    AVX512-BF16 or AMX CPU) and float32 everywhere else, CUDA without bf16 included: float16's
    narrow range can overflow where float32 does not, so it is only used when asked for.
    The planner normally calibrates ``"auto"`` where bfloat16 is native, adding the speed and
    agreement checks; this is the answer when it does not.
    """
    if precision == "float32":
        return torch.float32
    if precision == "bfloat16":
        return torch.bfloat16
    if precision == "float16":
        if device.type != "cuda":
            raise ConfigError(
                "precision 'float16' needs a CUDA device, got device "
                f"{device.type!r}; use 'bfloat16' or 'float32' on CPU"
            )
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def autocast_for(device: torch.device, dtype: torch.dtype) -> AbstractContextManager[object]:
    """An autocast context for ``dtype`` on ``device``, or a no-op for float32."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@functools.cache
def _glibc_function(name: str) -> Any:
    """The C library's function ``name`` (ctypes); None off Linux or where it has none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(None), name)  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> None:
    """Give the C heap's free pages back to the system (glibc ``malloc_trim``; else nothing)."""
    trim = _glibc_function("malloc_trim")
    if trim is not None:
        trim(0)


class _MallInfo2(ctypes.Structure):
    _fields_ = [  # glibc's struct mallinfo2 (2.33+): ten size_t fields
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


@functools.cache
def _mallinfo2() -> Any:
    """The C library's ``mallinfo2`` (glibc 2.33+) returning :class:`_MallInfo2`, or None."""
    info = _glibc_function("mallinfo2")
    if info is not None:
        info.restype = _MallInfo2
    return info


_PAGE = resource.getpagesize()


def idle_resident_bytes() -> int | None:
    """Resident bytes not held by live C-heap blocks (freed heap pages, code, Python's pools).

    The resident size (``/proc/self/statm``) minus the bytes glibc's ``mallinfo2`` counts as
    allocated (heap blocks in use and ``mmap``-ed blocks); None where either is unavailable.
    """
    info = _mallinfo2()
    if info is None:
        return None
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    used = info()
    return pages * _PAGE - int(used.uordblks) - int(used.hblkhd)


class HeapTrimmer:
    """Return freed heap memory to the system only when idle resident memory has grown.

    Sliding-window inference frees a large batch of logits after every forward pass while
    stitcher cells of assorted sizes and lifetimes stay allocated around them. glibc serves
    such blocks from its heap once an equal one has been freed, the freed holes can get partly
    reused by longer-lived blocks, and the next batch goes to fresh memory: the resident size
    can ratchet up. A ``malloc_trim`` bounds that, but trimming on a schedule also hands back
    the pages the next forward pass would have reused, and faulting them in again (zeroed by
    the kernel) is what costs: a trim every 8 batches made a 256**3 UNet run 15% slower
    (400 000 page faults a run, almost none without). So :meth:`after_batch` trims only when
    the idle resident memory (:func:`idle_resident_bytes`: resident but not allocated, so a
    growing output does not count) is more than ``slack`` above its level in steady state:
    the most it reached over the first ``warmup`` batches (a 256**3 UNet run: 343 MB after
    the first batch, 470-570 MB over the next ones), raised to what a trim leaves when that
    is more.

    Parameters
    ----------
    slack : int
        Bytes of idle growth allowed before a trim (the planner's forward-pass working set).
    warmup : int
        Batches that set the steady-state level (no trim during them).
    """

    def __init__(self, slack: int, warmup: int = 8) -> None:
        self.slack, self.warmup = slack, warmup
        self.floor = 0
        self.batches = 0
        self.trims = 0

    def after_batch(self) -> None:
        """Trim if idle resident memory is more than ``slack`` above its steady level."""
        idle = idle_resident_bytes()
        if idle is None:
            return
        self.batches += 1
        if self.batches <= self.warmup:
            self.floor = max(self.floor, idle)
        elif idle > self.floor + self.slack:
            release_freed_memory()
            self.trims += 1
            # what a trim cannot hand back (fragments) is not worth trimming for again
            self.floor = max(self.floor, idle_resident_bytes() or idle)


_DONE = object()


def prefetched(make: Callable[[], Iterator[T]], *, enabled: bool, depth: int = 2) -> Iterator[T]:
    """Iterate ``make()`` with its items produced ``depth`` ahead in a background thread.

    Exceptions raised by the producer are re-raised in the consumer. Stopping early (closing
    the generator) stops the producer.
    """
    if not enabled:
        yield from make()
        return
    items: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in make():
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            items.put(exc)

    thread = threading.Thread(target=produce, name="medimg-prefetch", daemon=True)
    thread.start()
    try:
        while (item := items.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]  # queue holds T, the sentinel or an exception
    finally:
        stop.set()
        thread.join(timeout=5)
