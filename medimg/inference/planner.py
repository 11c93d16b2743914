"""Predicting the memory of a sliding-window run and choosing its settings: :func:`plan_inference`.

The estimate adds what is alive at the worst moment of a run of :func:`iter_slabs`:

* the stitcher's cells, about ``K * (X + roi_x) * Y * step_z`` float32 (class scores, plus
  the summed weights unless the output is labels), found exactly by replaying the stitcher's
  bookkeeping over the window grid (:func:`~medimg.inference._stitch.stitch_memory`);
* for a file, two rows of input, ``C * X * Y * roi_z`` float32 each, plus the block being
  read (arrays and tensors are cut window by window and need none);
* the windows of the batches in flight (prefetch queue of two, one being cut, one running),
  the batch's logits, and the Gaussian weights repeated for each class;
* the network's activations for one batch, measured by running the network once on PyTorch's
  ``meta`` device (no memory, no compute) and adding the sizes of every layer's output, an
  upper bound for eager inference (oneDNN scratch space aside);
* one cell being reduced, the finished layers not yet handed out, and the result array when
  it is kept in memory.

Placement: the network runs on ``config.device``; on CUDA the stitcher's cells stay on the GPU
when it fits the budget with the network, otherwise it moves to host memory.

Settings: without calibration the batch is the largest choice that fits, and the layout and
layer forms are the config's. With ``config.calibrate`` (and for ``precision="auto"`` where
bfloat16 is native) the batch, memory layout, fast layers and, under bfloat16, whether those
layers stay float32 are the fastest measured on a few windows among the choices that fit
(:mod:`medimg.inference._calibration`, cached per machine), and ``"auto"`` takes bfloat16 only
when it agrees with float32 and is faster.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from medimg.errors import ConfigError
from medimg.inference import _calibration
from medimg.inference._calibration import Calibration, CalibrationRequest, RunSettings
from medimg.inference._runtime import choose_device, resolve_precision
from medimg.inference._stitch import stitch_memory, window_grid
from medimg.inference.config import InferenceConfig

__all__ = ["InferencePlan", "MemoryEstimate", "plan_inference"]

logger = logging.getLogger(__name__)

_BATCH_CHOICES = {"cuda": (8, 4, 2, 1), "cpu": (2, 1)}
"""Batches the plan may choose, largest first. On the CPU, 2 windows per pass ran fastest:
MONAI's UNet (16-256 channels, 96**3, 2 threads, float32, fast layers) took 60-67 ms per
window at batch 2, 83-86 at 4, 97-99 at 8 and 97-114 at 1."""
_F32 = 4


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes by component at the peak of a run, on the host and on the device."""

    model: int
    activations: int
    windows: int
    input_rows: int
    stitching: int
    slab: int
    result: int
    on_device: frozenset[str] = frozenset()

    def parts(self) -> dict[str, int]:
        """Each component's bytes, by name."""
        names = ("model", "activations", "windows", "input_rows", "stitching", "slab", "result")
        return {name: int(getattr(self, name)) for name in names}

    @property
    def host_bytes(self) -> int:
        """Peak bytes in host memory."""
        return sum(v for k, v in self.parts().items() if k not in self.on_device)

    @property
    def device_bytes(self) -> int:
        """Peak bytes in accelerator memory (0 on CPU)."""
        return sum(v for k, v in self.parts().items() if k in self.on_device)


@dataclass(frozen=True)
class InferencePlan:
    """What a sliding-window run will do and how much memory it is predicted to need.

    Attributes
    ----------
    device, accumulate_on : torch.device
        Where the network runs, and where the stitcher keeps its cells.
    compute_dtype : torch.dtype
        Autocast dtype of the network (float32: no autocast).
    batch_size : int
        Windows per forward pass.
    image_shape : tuple of int
        ``(C, X, Y, Z)`` of the input.
    n_classes : int
        Output channels of the network.
    n_windows, n_rows : int
        Windows in all, and rows of windows (slabs) along Z.
    slab_depth_vox : int
        Deepest slab handed out, in Z voxels (the largest step between window edges).
    memory : MemoryEstimate
        Predicted peak, by component.
    budget_bytes : int or None
        The budget the plan was made to fit.
    channels_last, fast_layers, float32_layers : bool
        Memory layout of the network and windows; whether the fast CPU layers are swapped
        in; whether they run in float32 under bfloat16 autocast.
    calibration : Calibration or None
        The measurement the settings came from, when calibrated.
    """

    device: torch.device
    accumulate_on: torch.device
    compute_dtype: torch.dtype
    batch_size: int
    image_shape: tuple[int, int, int, int]
    n_classes: int
    n_windows: int
    n_rows: int
    slab_depth_vox: int
    memory: MemoryEstimate
    budget_bytes: int | None
    channels_last: bool = True
    fast_layers: bool = True
    float32_layers: bool = False
    calibration: Calibration | None = None

    def describe(self) -> str:
        """A few readable lines: placement, windows, and the memory prediction by part."""
        gib = 1024**3
        c, x, y, z = self.image_shape
        parts = ", ".join(f"{k} {v / gib:.2f}" for k, v in self.memory.parts().items() if v)
        budget = "none" if self.budget_bytes is None else f"{self.budget_bytes / gib:.2f} GiB"
        lines = [
            f"sliding window over {x}x{y}x{z} ({c} channel(s)) -> {self.n_classes} classes: "
            f"{self.n_windows} windows in {self.n_rows} rows, batch {self.batch_size}, "
            f"slabs of <= {self.slab_depth_vox} voxels along Z",
            f"network on {self.device} ({str(self.compute_dtype).removeprefix('torch.')}), "
            f"stitching on {self.accumulate_on}",
            f"network in {'channels-last' if self.channels_last else 'contiguous'} memory with "
            f"{self._layers()}{' (calibrated)' if self.calibration else ''}",
            f"predicted peak: host {self.memory.host_bytes / gib:.2f} GiB, device "
            f"{self.memory.device_bytes / gib:.2f} GiB (budget {budget}); GiB by part: {parts}",
        ]
        return "\n".join(lines)

    def _layers(self) -> str:
        if not self.fast_layers:
            return "own layers"
        return "fast layers in float32" if self.float32_layers else "fast layers"


def _probe(model: torch.nn.Module, in_channels: int, roi: tuple[int, ...]) -> tuple[int, int]:
    """Output channels and summed layer-output bytes of one window, run on the meta device."""
    sizes: list[int] = []

    def hook(_m: torch.nn.Module, _i: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            sizes.append(out.numel() * _F32)

    params = {
        name: torch.empty_like(t, device="meta")
        for name, t in [*model.named_parameters(), *model.named_buffers()]
    }
    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.inference_mode():
            x = torch.empty((1, in_channels, *roi), device="meta")
            # tie_weights=False: a module registered under two names (MONAI's DynUNet) would
            # otherwise keep the meta tensors after the call.
            out = torch.func.functional_call(model, params, (x,), tie_weights=False)
    finally:
        for h in handles:
            h.remove()
    return int(out.shape[1]), sum(sizes) + x.numel() * _F32


def _estimate(
    config: InferenceConfig,
    image_shape: tuple[int, int, int, int],
    probe: tuple[int, int],
    batch: int,
    result_in_memory: bool,
    input_in_memory: bool,
) -> MemoryEstimate:
    c, x, y, z = image_shape
    n_classes, per_window = probe
    grid = window_grid((x, y, z), config.roi_size_vox, config.overlap)
    (px, py, _), roi_vox = grid.padded, grid.roi[0] * grid.roi[1] * grid.roi[2]
    stitch = stitch_memory(grid, n_classes, config.output)
    result = (x * y * z if config.output == "labels" else n_classes * x * y * z * _F32) * int(
        result_in_memory
    )
    # one cell being reduced: scores divided by the weights, then argmax (int64 + uint8) or
    # softmax; plus the finished layers not yet handed out
    reduce = n_classes * _F32 + (9 if config.output == "labels" else _F32 * n_classes)
    cell = grid.roi[0] * grid.roi[1] * stitch.depth  # cells are cut on every axis
    # inputs: two batches queued, one being cut, one running; logits, and with mirroring the
    # running sum and one flipped output besides
    tta = 2 if config.mirror_axes else 0
    rows = 0 if input_in_memory and not grid.needs_padding else 3  # see sliding._batches
    return MemoryEstimate(
        model=0,
        activations=per_window * batch,
        windows=((4 * c + (1 + tta) * n_classes) * batch + n_classes) * roi_vox * _F32,
        input_rows=rows * c * px * py * grid.roi[2] * _F32,
        stitching=stitch.cells,
        slab=reduce * cell + stitch.layers,
        result=result,
    )


def _place(
    estimate: MemoryEstimate, device: torch.device, stitch_on_device: bool
) -> MemoryEstimate:
    if device.type == "cpu":
        return estimate
    names = {"model", "activations", "windows"} | (
        {"stitching", "slab"} if stitch_on_device else set()
    )
    return MemoryEstimate(**estimate.parts(), on_device=frozenset(names))


def _budget(config: InferenceConfig, device: torch.device) -> int | None:
    if config.memory_budget_bytes is not None or device.type != "cuda":
        return config.memory_budget_bytes
    free, _total = torch.cuda.mem_get_info(device)
    return int(free * 0.9)


def plan_inference(
    model: torch.nn.Module,
    image_shape: tuple[int, ...],
    config: InferenceConfig | None = None,
    *,
    result_in_memory: bool = True,
    input_in_memory: bool = False,
    windows: torch.Tensor | Callable[[], torch.Tensor] | None = None,
) -> InferencePlan:
    """Choose batch size and placement for a run and predict its peak memory, before running.

    Parameters
    ----------
    model : torch.nn.Module
        The network; it is run once on PyTorch's ``meta`` device to learn its output channels
        and activation sizes (no memory is allocated and nothing is computed).
    image_shape : tuple of 4 int
        ``(C, X, Y, Z)`` of the input.
    config : InferenceConfig, optional
        The run's settings; ``batch_size=None`` (the default) lets the plan choose the
        largest batch (of 2, 1 on CPU; 8, 4, 2, 1 on CUDA) that fits the memory budget.
    result_in_memory : bool
        Whether the full result is kept in memory (:func:`predict_volume`) or written to disk
        slab by slab (:func:`~medimg.inference.predict_to_nifti`).
    input_in_memory : bool
        Whether the image is an array, tensor or memory map, which windows are cut from
        directly; files are read one row of windows at a time, which costs row buffers.
    windows : Tensor or callable returning one, optional
        ``(N, C, *roi)`` float32 windows of the image for a calibration (read only when one
        runs); seeded noise when not given, which is enough for timing but makes the
        bfloat16 agreement check of ``precision="auto"`` meaningless.

    Returns
    -------
    InferencePlan

    Raises
    ------
    ConfigError
        When no choice fits the memory budget, or the image shape is not ``(C, X, Y, Z)``.
    """
    from medimg.inference.source import _checked_shape

    config = config or InferenceConfig()
    shape = _checked_shape(image_shape)
    device = choose_device(config.device)
    probe = _probe(model, shape[0], config.roi_size_vox)
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    budget = _budget(config, device)
    calibrating = _wants_calibration(config, device)
    if config.batch_size is not None:
        batches: tuple[int, ...] = (config.batch_size,)
    else:
        batches = _BATCH_CHOICES["cuda" if device.type == "cuda" else "cpu"]
        batches = batches[:1] if budget is None and not calibrating else batches
    fits: list[tuple[int, bool, MemoryEstimate]] = []
    smallest: MemoryEstimate | None = None
    for batch, on_device in [(b, d) for b in batches for d in (True, False)]:
        raw = _estimate(config, shape, probe, batch, result_in_memory, input_in_memory)
        est = _place(replace(raw, model=model_bytes), device, on_device)
        used = _used(est, device)
        smallest = est if smallest is None or used < _used(smallest, device) else smallest
        if (budget is None or used <= budget) and batch not in [f[0] for f in fits]:
            fits.append((batch, on_device, est))
    if not fits:
        assert smallest is not None  # the loop ran at least once
        assert budget is not None  # only a budget can reject a plan
        by_part = ", ".join(f"{k} {v / 1024**3:.2f}" for k, v in smallest.parts().items())
        raise ConfigError(
            f"memory budget must cover the smallest plan's predicted peak of "
            f"{_used(smallest, device) / 1024**3:.2f} GiB on {device}, got "
            f"{budget / 1024**3:.2f} GiB (GiB by part: {by_part}); "
            "raise memory_budget_bytes, use a smaller roi_size_vox, or write the output to disk"
        )
    if not calibrating:
        batch, on_device, est = fits[0]
        dtype = resolve_precision(config.precision, device)
        settings = RunSettings(
            batch, config.channels_last, config.fast_layers and dtype == torch.float32
        )
        return _make_plan(config, shape, probe[0], device, on_device, est, budget, dtype, settings)
    cal = _calibrate(model, shape, config, device, [f[0] for f in fits], windows)
    batch, on_device, est = next(f for f in fits if f[0] == cal.settings.batch_size)
    return _make_plan(
        config, shape, probe[0], device, on_device, est, budget, cal.dtype, cal.settings, cal
    )


def _wants_calibration(config: InferenceConfig, device: torch.device) -> bool:
    auto = config.precision == "auto" and _calibration.native_bf16(device)
    return config.calibrate or auto


_CALIBRATION_WINDOWS = 4


def _calibrate(
    model: torch.nn.Module,
    shape: tuple[int, int, int, int],
    config: InferenceConfig,
    device: torch.device,
    batches: list[int],
    windows: torch.Tensor | Callable[[], torch.Tensor] | None,
) -> Calibration:
    if callable(windows):
        windows = windows()
    if windows is None:
        gen = torch.Generator().manual_seed(0)
        n, roi = _CALIBRATION_WINDOWS, config.roi_size_vox
        windows = torch.randn((n, shape[0], *roi), generator=gen)
    auto = config.precision == "auto"
    request = CalibrationRequest(
        device=device,
        precisions=(torch.float32,) if auto else (resolve_precision(config.precision, device),),
        batches=tuple(sorted(batches)),
        cache=_calibration.CalibrationCache(_calibration.default_cache_path()),
        auto=auto,
    )
    was_training = model.training
    try:
        return _calibration.calibrate(model, windows, request)
    finally:
        model.train(was_training)


def _used(estimate: MemoryEstimate, device: torch.device) -> int:
    return estimate.device_bytes if device.type == "cuda" else estimate.host_bytes


def _make_plan(
    config: InferenceConfig,
    shape: tuple[int, int, int, int],
    n_classes: int,
    device: torch.device,
    stitch_on_device: bool,
    estimate: MemoryEstimate,
    budget: int | None,
    dtype: torch.dtype,
    settings: RunSettings,
    calibration: Calibration | None = None,
) -> InferencePlan:
    grid = window_grid(shape[1:], config.roi_size_vox, config.overlap)
    return InferencePlan(
        device=device,
        accumulate_on=device if stitch_on_device else torch.device("cpu"),
        compute_dtype=dtype,
        batch_size=settings.batch_size,
        image_shape=shape,
        n_classes=n_classes,
        n_windows=grid.n_windows,
        n_rows=len(grid.starts[2]),
        slab_depth_vox=stitch_memory(grid, n_classes, config.output).depth,
        memory=estimate,
        budget_bytes=budget,
        channels_last=settings.channels_last,
        fast_layers=settings.fast_layers,
        float32_layers=settings.float32_layers,
        calibration=calibration,
    )
