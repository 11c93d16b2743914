"""The memory layout of a network while it trains.

Training runs convolutional networks in channels-last memory (:func:`conv_layout`,
:func:`to_layout`; ``TrainConfig.channels_last``), whose oneDNN kernels are faster on CPUs, and
keeps that one layout for the whole run (:func:`same_layout`), so an uninterrupted run and a
resumed one take the same kernels and stay equal bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads when training starts, not with medimg.training
    import torch

__all__ = ["conv_layout", "layout_rank", "same_layout", "to_layout"]


def conv_layout(model: torch.nn.Module) -> torch.memory_format | None:
    """The channels-last format of ``model``'s convolutions (3D or 2D), None without any."""
    import torch

    for module in model.modules():
        if isinstance(module, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)):
            return torch.channels_last_3d
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            return torch.channels_last
    return None


def layout_rank(layout: torch.memory_format) -> int:
    """The tensor rank a channels-last format applies to: 5 (3D) or 4 (2D)."""
    import torch

    return 5 if layout == torch.channels_last_3d else 4


def to_layout(model: torch.nn.Module, layout: torch.memory_format) -> None:
    """Store every parameter and buffer of the layout's rank in ``layout`` (values unchanged)."""
    rank = layout_rank(layout)
    for t in [*model.parameters(), *model.buffers()]:
        if t.dim() == rank:
            t.data = t.data.contiguous(memory_format=layout)


@contextmanager
def same_layout(model: torch.nn.Module) -> Iterator[None]:
    """Give every parameter and buffer of ``model`` its memory layout back on exit.

    Validation may change the layout in place: :func:`medimg.inference.predict_volume` moves
    the network to ``channels_last_3d``. Convolutions then pick other kernels whose sums
    differ in the last bits, so an uninterrupted run (trained in the new layout after its first
    validation) and a resumed one (whose freshly loaded weights are contiguous) would drift
    apart by ~1e-4 after a few epochs. Restoring the strides keeps training in one layout.
    """
    import torch

    tensors = [*model.parameters(), *model.buffers()]
    strides = [t.stride() for t in tensors]
    try:
        yield
    finally:
        for t, stride in zip(tensors, strides, strict=True):
            if t.stride() != stride:
                kept = torch.empty_strided(t.shape, stride, dtype=t.dtype, device=t.device)
                t.data = kept.copy_(t.data)
