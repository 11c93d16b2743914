"""Sliding-window inference with Gaussian stitching in bounded memory.

:func:`iter_slabs` runs a segmentation network over a volume window by window and yields the
finished output one slab (a range of the last axis) at a time; :func:`predict_volume` collects
the slabs into an array. The windows, their Gaussian weights and the padding of volumes smaller
than the window are those of ``monai.inferers.sliding_window_inference`` with
``mode="gaussian", sigma_scale=0.125`` (nnU-Net's defaults), so results agree with MONAI to
float rounding, but the full ``(K, X, Y, Z)`` float32 score map is never held: only about one
step between rows of windows (``K * X * Y * step_z`` floats, see
:mod:`medimg.inference._stitch`), whatever the depth of the volume.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from medimg.errors import ConfigError
from medimg.inference._fast_layers import fast_layers
from medimg.inference._runtime import HeapTrimmer, autocast_for, prefetched
from medimg.inference._stitch import Slab, Stitcher, WindowGrid, class_weights, window_grid
from medimg.inference.config import InferenceConfig
from medimg.inference.gaussian import gaussian_importance_map
from medimg.inference.planner import InferencePlan, plan_inference
from medimg.inference.source import SlabSource, open_source

__all__ = ["Slab", "iter_slabs", "predict_volume"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Batch:
    windows: list[tuple[int, int, int]]
    images: torch.Tensor


def _read_row(source: SlabSource, grid: WindowGrid, z_start: int) -> torch.Tensor:
    """Input voxels under one row of windows, zero-padded to ``(C, PX, PY, roi_z)``."""
    (px, py, _), (ox, oy, oz), rz = grid.padded, grid.pad, grid.roi[2]
    lo, hi = max(z_start - oz, 0), min(z_start + rz - oz, grid.shape[2])
    block = source.read(lo, hi)
    if (px, py, rz) == tuple(block.shape[1:]):
        return block
    row = torch.zeros((source.shape[0], px, py, rz), dtype=torch.float32)
    nx, ny = grid.shape[0], grid.shape[1]
    row[:, ox : ox + nx, oy : oy + ny, lo + oz - z_start : hi + oz - z_start] = block
    return row


def _batches(
    source: SlabSource, grid: WindowGrid, batch_size: int, channels_last: bool, skip: int = 0
) -> Iterator[_Batch]:
    """Windows in the grid's order after the first ``skip``, ``batch_size`` at a time.

    A batch may span two rows. Arrays and tensors that need no padding are cut window by
    window; files (and padded volumes) are read one row of windows at a time, each row once.
    """
    windows = grid.windows()[skip:]
    direct = source.random_access and not grid.needs_padding
    rows: dict[int, torch.Tensor] = {}
    last_use = {z: i for i, (_, _, z) in enumerate(windows)}
    layout = torch.channels_last_3d if channels_last else torch.contiguous_format
    for i in range(0, len(windows), batch_size):
        chunk = windows[i : i + batch_size]
        shape = (len(chunk), source.shape[0], *grid.roi)
        images = torch.empty(shape, dtype=torch.float32, memory_format=layout)  # filled in place
        if direct:
            for image, start in zip(images, chunk, strict=True):
                source.read_window(start, grid.roi, image)
        else:
            _from_rows(source, grid, rows, chunk, images)
            for z in [z for z in rows if last_use[z] < i + batch_size]:
                del rows[z]  # no later window needs it
        yield _Batch(chunk, images)


def _from_rows(
    source: SlabSource,
    grid: WindowGrid,
    rows: dict[int, torch.Tensor],
    chunk: list[tuple[int, int, int]],
    images: torch.Tensor,
) -> None:
    """Fill ``images`` from the rows under ``chunk``, reading the rows not held yet."""
    rx, ry, _ = grid.roi
    for z in {w[2] for w in chunk} - rows.keys():
        rows[z] = _read_row(source, grid, z)
    for image, (x, y, z) in zip(images, chunk, strict=True):
        image.copy_(rows[z][:, x : x + rx, y : y + ry])


def _calibration_windows(source: SlabSource, grid: WindowGrid, n: int = 4) -> torch.Tensor:
    """Up to ``n`` consecutive windows from the middle of the grid, for a calibration."""
    windows = grid.windows()
    first = max(0, min(len(windows) // 2 - n // 2, len(windows) - n))
    return next(_batches(source, grid, n, False, skip=first)).images


def _forward(
    model: torch.nn.Module, images: torch.Tensor, mirror_axes: Sequence[int]
) -> torch.Tensor:
    """Network logits as float32, averaged over every mirrored copy of the batch."""
    flips = [
        [a + 2 for a in subset]
        for k in range(len(mirror_axes) + 1)
        for subset in itertools.combinations(mirror_axes, k)
    ]
    total: torch.Tensor | None = None
    for dims in flips:
        out = model(images.flip(dims) if dims else images).float()
        out = out.flip(dims) if dims else out
        total = out if total is None else total.add_(out)
    assert total is not None  # flips always holds the identity
    if total.shape[0] != images.shape[0] or total.shape[2:] != images.shape[2:]:
        raise ConfigError(
            f"model output must be (B, K, {', '.join(map(str, images.shape[2:]))}) for input "
            f"{tuple(images.shape)}, got {tuple(total.shape)}; sliding-window inference needs a "
            "segmentation network that keeps the window's spatial shape"
        )
    return total.div_(len(flips)) if len(flips) > 1 else total


def iter_slabs(
    model: torch.nn.Module,
    image: Any,
    config: InferenceConfig | None = None,
    *,
    plan: InferencePlan | None = None,
    on_window: Callable[[int, int], None] | None = None,
) -> Iterator[Slab]:
    """Run ``model`` over ``image`` window by window; yield finished slabs along Z in order.

    Parameters
    ----------
    model : torch.nn.Module
        Segmentation network mapping ``(B, C, *roi)`` to ``(B, K, *roi)`` logits. It is put in
        eval mode for the run (its previous mode is restored), moved to the plan's device and,
        with ``config.channels_last``, to ``torch.channels_last_3d`` memory format, in place.
        With ``config.fast_layers`` on the CPU in float32, some layers are swapped for
        equivalent faster forms during the run and put back afterwards.
    image : Volume, ndarray, np.memmap, torch.Tensor, path-like or nibabel image
        Channel-first ``(C, X, Y, Z)``; see :func:`~medimg.inference.source.open_source`.
        Arrays, tensors and memory maps are cut window by window; files are read one row of
        windows at a time. Either way a memory map or an uncompressed ``.nii`` larger than
        memory works.
    config : InferenceConfig, optional
        Window, overlap, output kind, precision, device, TTA (defaults: ``InferenceConfig()``).
    plan : InferencePlan, optional
        A plan from :func:`~medimg.inference.plan_inference`; made here when not given.
    on_window : callable, optional
        ``on_window(done, total)``: called with ``(0, total)`` before the first window and
        after each window is stitched, ``total`` being the number of windows of the whole
        volume (the plan's ``n_windows``). What it raises stops the run.

    Yields
    ------
    Slab
        Consecutive, non-overlapping Z ranges covering the volume, on the CPU.
    """
    config = config or InferenceConfig()
    source = open_source(image)
    grid = window_grid(source.shape[1:], config.roi_size_vox, config.overlap)
    plan = plan or plan_inference(
        model,
        source.shape,
        config,
        input_in_memory=source.random_access,
        windows=lambda: _calibration_windows(source, grid),
    )
    logger.debug("%s", plan.describe())  # per call: validation runs it every few epochs
    was_training = model.training
    model.eval().to(plan.device)
    layout = torch.channels_last_3d if plan.channels_last else torch.contiguous_format
    model.to(memory_format=layout)  # type: ignore[call-overload]  # accepted at runtime, missing from torch's overloads
    # the plan keeps them off under autocast unless a calibration measured them (float32 or not)
    fast = plan.fast_layers and plan.device.type == "cpu"
    try:
        with fast_layers(model, float32=plan.float32_layers) if fast else nullcontext(0) as swapped:
            logger.debug("%d layers in their fast CPU form for the run", swapped)
            yield from _run(model, source, grid, config, plan, on_window)
    finally:
        model.train(was_training)


def _run(
    model: torch.nn.Module,
    source: SlabSource,
    grid: WindowGrid,
    config: InferenceConfig,
    plan: InferencePlan,
    on_window: Callable[[int, int], None] | None = None,
) -> Iterator[Slab]:
    # Only the network runs in inference mode and autocast; stitching runs under no_grad on
    # ordinary tensors, and slabs are yielded outside every mode, so none leaks to the caller.
    importance = gaussian_importance_map(grid.roi, config.sigma_scale)
    batches = prefetched(
        lambda: _batches(source, grid, plan.batch_size, plan.channels_last),
        enabled=config.prefetch,
    )
    stitcher: Stitcher | None = None
    weights: torch.Tensor | None = None
    # a forward pass's working set: its freed blocks stay resident for the next pass, while
    # idle memory that grows by more than that is fragmentation (see HeapTrimmer)
    trimmer = HeapTrimmer(slack=plan.memory.activations + plan.memory.windows)
    bar = _progress(grid.n_windows, config.progress)
    done_windows = 0
    if on_window is not None:
        on_window(0, grid.n_windows)
    for batch in batches:
        with torch.inference_mode(), autocast_for(plan.device, plan.compute_dtype):
            logits = _forward(model, batch.images.to(plan.device), config.mirror_axes)
            weights = class_weights(importance, logits) if weights is None else weights
            logits.mul_(weights)
        if stitcher is None:
            k = int(logits.shape[1])
            stitcher = Stitcher(grid, k, importance, config.output, plan.accumulate_on)
        done = _stitch(stitcher, batch.windows, logits.to(plan.accumulate_on))
        if bar is not None:
            bar.update(len(batch.windows))
        if on_window is not None:
            for _ in batch.windows:
                done_windows += 1
                on_window(done_windows, grid.n_windows)
        del logits, batch  # not held while the next batch runs through the network
        if plan.accumulate_on.type == "cpu":
            trimmer.after_batch()
        yield from _hand_out(done)
    assert stitcher is not None  # a grid has at least one window
    assert stitcher.complete  # every cell was covered and finished
    if bar is not None:
        bar.close()


def _stitch(
    stitcher: Stitcher, windows: list[tuple[int, int, int]], logits: torch.Tensor
) -> list[Slab]:
    """Add a batch's weighted logits window by window; return the slabs they completed."""
    done: list[Slab] = []
    with torch.no_grad():  # ordinary tensors: the slabs handed out are not inference tensors
        for window, out in zip(windows, logits, strict=True):
            done.extend(stitcher.add(out, window))
    return done


def _hand_out(slabs: list[Slab]) -> Iterator[Slab]:
    """Yield and forget each slab, so none is held while the next one is computed."""
    while slabs:
        slab = slabs.pop(0)
        yield slab
        del slab


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="window", desc="sliding window", leave=False)


def predict_volume(
    model: torch.nn.Module,
    image: Any,
    config: InferenceConfig | None = None,
    *,
    plan: InferencePlan | None = None,
) -> NDArray[Any]:
    """Sliding-window prediction of a whole volume, in memory.

    Parameters
    ----------
    model, image, config, plan
        As for :func:`iter_slabs`.

    Returns
    -------
    ndarray
        ``config.output == "labels"``: ``(X, Y, Z)`` uint8 labels (argmax of the averaged
        logits). Otherwise ``(K, X, Y, Z)`` float32 probabilities or logits.

    Raises
    ------
    ConfigError
        When the image is not ``(C, X, Y, Z)`` or the model does not keep the window's shape.

    Examples
    --------
    >>> net = torch.nn.Conv3d(1, 2, kernel_size=1)
    >>> cfg = InferenceConfig(roi_size_vox=(8, 8, 8), prefetch=False)
    >>> predict_volume(net, np.zeros((1, 12, 10, 9), np.float32), cfg).shape
    (12, 10, 9)
    """
    config = config or InferenceConfig()
    source = open_source(image)
    result: NDArray[Any] | None = None
    for slab in iter_slabs(model, source, config, plan=plan):
        data = slab.data.numpy()
        if result is None:
            result = np.empty((*data.shape[:-1], source.shape[3]), dtype=data.dtype)
        result[..., slab.z_start : slab.z_start + slab.depth] = data
    assert result is not None  # iter_slabs covers the whole volume
    return result
