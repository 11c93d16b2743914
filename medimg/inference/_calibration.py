"""Measured run settings for sliding-window inference, cached per machine (private).

:func:`calibrate` times a network on a few windows under each candidate :class:`RunSettings`
(windows per pass, channels-last memory, the fast CPU layers, and under bfloat16 whether those
layers stay in float32) and keeps the fastest. ``precision="auto"`` then picks bfloat16 only
where it is native (:func:`native_bf16`), the bfloat16 argmax agrees with float32's on at least
:data:`AGREEMENT` of the calibration voxels, and bfloat16 is the faster of the two
(:func:`choose_precision`); otherwise float32.

The measurements are cached in a small JSON file (:func:`default_cache_path`, under the user's
cache folder), keyed by the machine (CPU model and flags, or the CUDA device), medimg's and
torch's versions, the thread count and the network's shape; the agreement also by a digest of
the weights.
Writes go through a temporary file renamed into place while an exclusive ``flock`` is held on
a lock file beside it, so two processes calibrating at once each leave a whole, valid file with
both their entries; an unreadable cache is treated as empty and rewritten.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from medimg.inference._fast_layers import fast_layers
from medimg.inference._runtime import autocast_for, cpu_has_native_bf16

__all__ = [
    "AGREEMENT",
    "Calibration",
    "CalibrationCache",
    "CalibrationRequest",
    "RunSettings",
    "calibrate",
    "candidates",
    "choose_precision",
    "default_cache_path",
    "native_bf16",
]

logger = logging.getLogger(__name__)

AGREEMENT = 0.999
"""Least fraction of calibration voxels whose bfloat16 argmax equals float32's for ``auto``."""

_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "fma")
_VERSION = 3
"""The cache file's format and the timings' validity: raised when the run settings' layers
change speed (2: the fast instance norm normalises bfloat16 in float32; 3: one-channel
pointwise convolutions are a matrix product), so a cache written by an earlier medimg is
treated as empty, not trusted."""


@dataclass(frozen=True, order=True)
class RunSettings:
    """How the network runs: windows per pass, memory layout and the layers' forms.

    Attributes
    ----------
    batch_size : int
        Windows per forward pass.
    channels_last : bool
        Network and windows in ``torch.channels_last_3d``.
    fast_layers : bool
        The fast CPU layers of :mod:`medimg.inference._fast_layers` swapped in.
    float32_layers : bool
        Under bfloat16: those fast layers run in float32 (autocast off).
    """

    batch_size: int
    channels_last: bool
    fast_layers: bool
    float32_layers: bool = False

    def label(self) -> str:
        """A short name, e.g. ``b2-cl-fast``."""
        parts = [f"b{self.batch_size}", "cl" if self.channels_last else "ncdhw"]
        parts += ["fast"] * self.fast_layers + ["f32layers"] * self.float32_layers
        return "-".join(parts)


def candidates(
    device: torch.device, dtype: torch.dtype, batches: Sequence[int]
) -> list[RunSettings]:
    """The settings worth timing for ``dtype`` on ``device`` with the given batch sizes.

    The fast layers are CPU forms and their instance norm needs channels-last input, so they
    are tried only on the CPU with channels-last; ``float32_layers`` only under bfloat16.
    """
    forms: list[tuple[bool, bool, bool]] = [(True, False, False), (False, False, False)]
    if device.type == "cpu":
        forms.insert(0, (True, True, False))
        if dtype != torch.float32:
            forms.insert(0, (True, True, True))
    return [RunSettings(b, cl, fast, f32) for b in batches for cl, fast, f32 in forms]


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 natively (CUDA with bf16; AVX512-BF16 or AMX CPU)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return device.type == "cpu" and cpu_has_native_bf16()


def choose_precision(
    *,
    native: bool,
    agreement: float | None,
    float32_s: float | None,
    bfloat16_s: float | None,
    threshold: float = AGREEMENT,
) -> torch.dtype:
    """``precision="auto"``: bfloat16 when native, agreeing and faster; else float32.

    Examples
    --------
    >>> choose_precision(native=True, agreement=0.9995, float32_s=2.0, bfloat16_s=1.0)
    torch.bfloat16
    >>> choose_precision(native=True, agreement=0.99, float32_s=2.0, bfloat16_s=1.0)
    torch.float32
    >>> choose_precision(native=False, agreement=1.0, float32_s=2.0, bfloat16_s=1.0)
    torch.float32
    """
    if not native or agreement is None or agreement < threshold:
        return torch.float32
    if float32_s is not None and bfloat16_s is not None and bfloat16_s >= float32_s:
        return torch.float32
    return torch.bfloat16


@dataclass(frozen=True)
class Calibration:
    """The outcome of :func:`calibrate`.

    Attributes
    ----------
    dtype : torch.dtype
        The precision chosen (float32 or bfloat16).
    settings : RunSettings
        The fastest settings measured for ``dtype``.
    seconds_per_window : dict of str to dict of str to float
        By precision name, by :meth:`RunSettings.label`.
    agreement : float or None
        bfloat16 against float32 argmax agreement on the windows (when compared).
    from_cache : bool
        Whether every figure came from the cache.
    """

    dtype: torch.dtype
    settings: RunSettings
    seconds_per_window: dict[str, dict[str, float]]
    agreement: float | None
    from_cache: bool


def default_cache_path() -> Path:
    """``<user cache dir>/medimg/calibration.json`` (``~/.cache/medimg`` on Linux)."""
    import platformdirs

    return platformdirs.user_cache_path("medimg") / "calibration.json"


class CalibrationCache:
    """A JSON file of calibration entries, safe to share between processes.

    Parameters
    ----------
    path : Path
        The cache file (its folder is created on the first write).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _read(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:  # another tool's file, or damaged: start afresh
            logger.warning("%s: calibration cache unreadable (%s); it is rewritten", self.path, exc)
            return {}
        ok = isinstance(doc, dict) and doc.get("version") == _VERSION
        entries = doc.get("entries") if ok else None
        return entries if isinstance(entries, dict) else {}

    def get(self, key: str) -> Any:
        """The entry stored under ``key``, or ``None``."""
        return self._read().get(key)

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``, keeping every other process's entries."""
        from medimg.io.writing import atomic_path

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.path.with_name(self.path.name + ".lock")):
            entries = self._read()
            entries[key] = value
            with atomic_path(self.path, overwrite=True) as tmp:
                tmp.write_text(json.dumps({"version": _VERSION, "entries": entries}, indent=1))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def machine_fingerprint(device: torch.device) -> dict[str, Any]:
    """What the timings depend on besides the network: CPU or GPU, medimg, torch, threads."""
    from medimg import __version__

    record: dict[str, Any] = {
        "medimg": __version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        record["device"] = torch.cuda.get_device_name(device)
        return record
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text(errors="replace") if cpuinfo.is_file() else ""
    names = [line.split(":", 1)[1].strip() for line in text.splitlines() if "model name" in line]
    flags = set(text.split())
    record["cpu"] = names[0] if names else "unknown"
    record["flags"] = [f for f in _FLAGS if f in flags]
    return record


def network_fingerprint(model: torch.nn.Module, windows_shape: Sequence[int]) -> dict[str, Any]:
    """The network's class and parameter shapes, and the window shape (not the weights)."""
    shapes = [[name, list(p.shape)] for name, p in model.state_dict().items()]
    digest = hashlib.sha256(json.dumps(shapes).encode()).hexdigest()[:16]
    return {"class": type(model).__qualname__, "shapes": digest, "window": list(windows_shape)}


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of the network's parameters and buffers."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _passes(
    model: torch.nn.Module,
    windows: torch.Tensor,
    settings: RunSettings,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[float, torch.Tensor]:
    """Seconds per window (median pass after a warm-up pass) and the windows' argmax."""
    layout = torch.channels_last_3d if settings.channels_last else torch.contiguous_format
    model.to(memory_format=layout)  # type: ignore[call-overload]  # accepted at runtime
    b = settings.batch_size
    batches = [windows[i : i + b] for i in range(0, windows.shape[0], b)]
    times: list[float] = []
    labels: list[torch.Tensor] = []
    swap = fast_layers(model, float32=settings.float32_layers) if settings.fast_layers else None
    with swap or contextlib.nullcontext(), torch.inference_mode():
        for i, batch in enumerate([batches[0], *batches]):
            x = batch.to(device).contiguous(memory_format=layout)
            start = time.perf_counter()
            with autocast_for(device, dtype):
                out = model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i:  # the first pass warms up (oneDNN primitives, allocator)
                times.append((time.perf_counter() - start) / batch.shape[0])
                labels.append(out.float().argmax(1).cpu())
    return statistics.median(times), torch.cat(labels)


@dataclass(frozen=True)
class CalibrationRequest:
    """What :func:`calibrate` compares: precisions, batch sizes and where the result is kept."""

    device: torch.device
    precisions: tuple[torch.dtype, ...]
    batches: tuple[int, ...]
    cache: CalibrationCache | None
    auto: bool = False


def calibrate(
    model: torch.nn.Module, windows: torch.Tensor, request: CalibrationRequest
) -> Calibration:
    """Time each candidate setting on ``windows`` (``(N, C, *roi)`` float32), cached.

    With ``request.auto``, float32 and bfloat16 are both measured where bfloat16 is native,
    and :func:`choose_precision` picks one; otherwise ``request.precisions[0]`` is used.
    The model is left in eval mode and contiguous memory format.
    """
    device = request.device
    machine = machine_fingerprint(device)
    network = network_fingerprint(model, tuple(windows.shape[1:]))
    native = native_bf16(device)
    dtypes = request.precisions
    if request.auto:
        dtypes = (torch.float32, torch.bfloat16) if native else (torch.float32,)
    model.eval().to(device)
    seconds: dict[str, dict[str, float]] = {}
    best: dict[torch.dtype, RunSettings] = {}
    cached = True
    for dtype in dtypes:
        name = str(dtype).removeprefix("torch.")
        key = _key("time", machine, network, name, list(request.batches))
        entry = request.cache.get(key) if request.cache is not None else None
        if not (isinstance(entry, dict) and isinstance(entry.get("settings"), dict)):
            cached = False
            times = _time_all(model, windows, device, dtype, request.batches)
            fastest = min(times, key=times.__getitem__)
            entry = {
                "settings": asdict(fastest),
                "seconds": {s.label(): t for s, t in times.items()},
            }
            if request.cache is not None:
                request.cache.put(key, {**entry, "machine": machine, "network": network})
        best[dtype] = RunSettings(**entry["settings"])
        seconds[name] = dict(entry["seconds"])
    agreement = None
    if torch.bfloat16 in best and torch.float32 in best:
        agreement, known = _agreement(model, windows, request, best, machine)
        cached = cached and known
    model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    dtype = dtypes[0]
    if request.auto:
        f32 = seconds["float32"][best[torch.float32].label()]
        bf16 = seconds["bfloat16"][best[torch.bfloat16].label()] if native else None
        dtype = choose_precision(native=native, agreement=agreement, float32_s=f32, bfloat16_s=bf16)
    logger.info("calibration (%s): %s; agreement %s", dtype, seconds, agreement)
    return Calibration(dtype, best[dtype], seconds, agreement, cached)


def _time_all(
    model: torch.nn.Module,
    windows: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype,
    batches: Sequence[int],
) -> dict[RunSettings, float]:
    """Best of two rounds per candidate, the second in reverse order, on the first windows.

    A loaded machine's noise and the first run's start-up costs then fall on no candidate in
    particular.
    """
    order = candidates(device, dtype, batches)
    timed = windows[: max(batches)]  # one pass of the largest batch: timing needs no more
    _passes(model, timed[:1], order[-1], device, dtype)  # thread pools, allocator
    times: dict[RunSettings, float] = {}
    for settings in [*order, *reversed(order)]:
        seconds = _passes(model, timed, settings, device, dtype)[0]
        times[settings] = min(seconds, times.get(settings, seconds))
    return times


def _agreement(
    model: torch.nn.Module,
    windows: torch.Tensor,
    request: CalibrationRequest,
    best: Mapping[torch.dtype, RunSettings],
    machine: dict[str, Any],
) -> tuple[float, bool]:
    """bfloat16 (its best settings) against float32 argmax agreement on ``windows``, cached.

    Returns the agreement and whether it came from the cache.
    """
    inputs = hashlib.sha256(windows.contiguous().numpy().tobytes()).hexdigest()[:16]
    key = _key("agreement", machine, weights_digest(model), inputs, best[torch.bfloat16].label())
    cached = request.cache.get(key) if request.cache is not None else None
    if isinstance(cached, float):
        return cached, True
    labels = [
        _passes(model, windows, best[dtype], request.device, dtype)[1]
        for dtype in (torch.float32, torch.bfloat16)
    ]
    value = float((labels[0] == labels[1]).double().mean())
    if request.cache is not None:
        request.cache.put(key, value)
    return value, False
