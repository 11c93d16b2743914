"""Faster CPU forms of layers that dominate MONAI's UNet and DynUNet on the CPU (private).

Profiled on a 2-core Xeon (AVX-512), MONAI's ``UNet`` (channels 16 to 256, 96**3 windows,
batch 4, channels-last) spends about 37% of its forward pass in its last transposed
convolution (32 to 4 channels: oneDNN runs it at 6.6 GFLOP/s) and 22% in instance
normalisation, which PyTorch computes through a contiguous copy of a channels-last input. Both
have exact equivalents that run on fast paths:

* :class:`SubPixelConvTranspose` replaces a transposed convolution with kernel 3, stride 2,
  padding 1 and output padding 1 (MONAI's up-sampling convolution) by an ordinary convolution
  with kernel 2 and ``2**d`` times the output channels, one per output phase, followed by a
  pixel shuffle. Along one axis output ``2i`` is ``w[1] x[i]`` and output ``2i + 1`` is
  ``w[2] x[i] + w[0] x[i + 1]``, so phase 0 takes taps ``(w[1], 0)`` and phase 1 ``(w[2],
  w[0])`` over ``x[i], x[i + 1]``; in 3D the phase kernels are the outer products of these.
* :class:`InstanceNormChannelsLast` computes the per-channel statistics over the spatial
  positions of a channels-last tensor viewed as ``(N, positions, C)``, and normalises in one
  fused multiply-add, keeping the layout
  (:func:`medimg.networks._channels_last.instance_norm_channels_last`, which training
  uses too).
* :class:`SingleChannelPointwise` computes a kernel-1 convolution of one input channel (a
  DynUNet's first residual projection), which oneDNN runs 10x slower, as a matrix product
  (:func:`medimg.networks._channels_last.pointwise_conv_single_channel`, as in training).

:func:`fast_layers` swaps them in for a run and puts the originals back afterwards. The
results equal the originals' to float32 rounding (a test compares them on random weights).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F  # the usual name
from torch import nn

from medimg.networks._channels_last import (
    channels_last_batch,
    instance_norm_channels_last,
    pointwise_conv_single_channel,
    single_channel_pointwise,
)

__all__ = [
    "Float32Layer",
    "InstanceNormChannelsLast",
    "SingleChannelPointwise",
    "SubPixelConvTranspose",
    "fast_layers",
]

# Kernel tap of the transposed convolution feeding (output phase, input offset), per axis.
_TAP = {(0, 0): 1, (0, 1): None, (1, 0): 2, (1, 1): 0}


_NARROW = 16
"""Fewer output channels than this: oneDNN's transposed convolution is slow (AVX-512 holds 16
float32 lanes), so the sub-pixel form, with 64/27 of the arithmetic, is faster. Measured with
16 output channels: 65 ms transposed against 106 ms sub-pixel; with 4: 434 ms against 102 ms."""


def _eligible_transpose(module: nn.Module) -> bool:
    if not isinstance(module, (nn.ConvTranspose2d, nn.ConvTranspose3d)):
        return False
    d = module.weight.dim() - 2
    return (
        module.out_channels < _NARROW
        and tuple(module.kernel_size) == (3,) * d
        and tuple(module.stride) == (2,) * d
        and tuple(module.padding) == (1,) * d
        and tuple(module.output_padding) == (1,) * d
        and tuple(module.dilation) == (1,) * d
        and module.groups == 1
        and module.padding_mode == "zeros"
    )


class SubPixelConvTranspose(nn.Module):
    """A stride-2, kernel-3 transposed convolution as a kernel-2 convolution and a shuffle.

    Parameters
    ----------
    conv : nn.ConvTranspose2d or nn.ConvTranspose3d
        Kernel 3, stride 2, padding 1, output padding 1, no groups or dilation.
    """

    def __init__(self, conv: nn.ConvTranspose2d | nn.ConvTranspose3d) -> None:
        super().__init__()
        w = conv.weight.detach()  # (in, out, 3, ..., 3)
        c_in, c_out, d = w.shape[0], w.shape[1], w.dim() - 2
        phases = list(itertools.product((0, 1), repeat=d))
        dense = w.new_zeros((len(phases), c_out, c_in, *(2,) * d))
        for p, phase in enumerate(phases):
            for taps in itertools.product((0, 1), repeat=d):
                index = [_TAP[(r, t)] for r, t in zip(phase, taps, strict=True)]
                kernel = [k for k in index if k is not None]
                if len(kernel) == d:  # every axis has a tap here
                    target: tuple[int | slice, ...] = (p, slice(None), slice(None), *taps)
                    taps_of_w: tuple[int | slice, ...] = (slice(None), slice(None), *kernel)
                    dense[target] = w[taps_of_w].T
        self.dims, self.c_out = d, c_out
        dense = dense.reshape(len(phases) * c_out, c_in, *(2,) * d)
        layout = torch.channels_last_3d if d == 3 else torch.channels_last
        if conv.weight.is_contiguous(memory_format=layout):
            dense = dense.contiguous(memory_format=layout)
        self.weight = nn.Parameter(dense)
        # every output voxel belongs to exactly one phase: the bias goes with each phase
        bias = None if conv.bias is None else conv.bias.detach().repeat(len(phases))
        self.bias = None if bias is None else nn.Parameter(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C_in, *S)`` to ``(N, C_out, *2S)``, in the input's memory format."""
        d, n, spatial = self.dims, x.shape[0], x.shape[2:]
        conv = F.conv3d if d == 3 else F.conv2d
        # Padded by one on both sides, output i + 1 reads x[i] and x[i + 1] (zero past the
        # end, like the transposed convolution's): drop output 0.
        inner: tuple[slice, ...] = (slice(None), slice(None), *(slice(1, None),) * d)
        y = conv(x, self.weight, self.bias, padding=1)[inner]
        last = y.permute(0, *range(2, d + 2), 1)  # (N, *S, phases * C_out), a view if CL
        last = last.reshape(n, *spatial, *(2,) * d, self.c_out)
        order = [0, *itertools.chain.from_iterable((1 + a, 1 + d + a) for a in range(d)), 1 + 2 * d]
        out = last.permute(order).reshape(n, *(2 * s for s in spatial), self.c_out)
        return out.permute(0, d + 1, *range(1, d + 1))  # channels-last memory, (N, C, ...)


def _eligible_norm(module: nn.Module) -> bool:
    return (
        isinstance(module, (nn.InstanceNorm2d, nn.InstanceNorm3d))
        and not module.track_running_stats
    )


class InstanceNormChannelsLast(nn.Module):
    """Instance normalisation that keeps a channels-last input's layout (falls back otherwise).

    Parameters
    ----------
    norm : nn.InstanceNorm2d or nn.InstanceNorm3d
        Without running statistics (the statistics of each sample are used).
    """

    def __init__(self, norm: nn.InstanceNorm2d | nn.InstanceNorm3d) -> None:
        super().__init__()
        self.original = norm
        self.eps = float(norm.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise each channel of each sample over its spatial positions."""
        if not channels_last_batch(x):
            return self.original(x)  # type: ignore[no-any-return]  # nn.Module call
        return instance_norm_channels_last(x, self.original.weight, self.original.bias, self.eps)


class SingleChannelPointwise(nn.Module):
    """A kernel-1 convolution of one input channel as a matrix product (channels-last out).

    Parameters
    ----------
    conv : nn.Conv2d or nn.Conv3d
        One input channel, kernel 1, no padding (:func:`single_channel_pointwise`).
    """

    def __init__(self, conv: nn.Conv2d | nn.Conv3d) -> None:
        super().__init__()
        self.original = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution of a batch ``(N, 1, ...)``; anything else through the original."""
        conv = self.original
        if x.dim() != conv.weight.dim() or x.shape[1] != 1:
            return conv(x)  # type: ignore[no-any-return]  # nn.Module call
        return pointwise_conv_single_channel(x, conv.weight, conv.bias, conv.stride)


class Float32Layer(nn.Module):
    """Run ``inner`` in float32 with autocast off, whatever the surrounding autocast dtype.

    Under bfloat16 autocast the next layer casts the float32 output back, so only ``inner``'s
    arithmetic changes: the narrow sub-pixel convolution keeps float32 digits (the planner
    measures whether that costs time on the machine). The fast instance norm computes in
    float32 either way (:func:`instance_norm_channels_last`), so wrapping it changes nothing.

    Parameters
    ----------
    inner : nn.Module
        The layer to keep in float32.
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``inner(x)`` in float32."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.inner(x.float())  # type: ignore[no-any-return]  # nn.Module call


@contextmanager
def fast_layers(model: nn.Module, *, float32: bool = False) -> Iterator[int]:
    """Swap the eligible layers of ``model`` for their fast forms; restore them on exit.

    With ``float32``, each fast transposed convolution and norm runs in float32 inside a
    :class:`Float32Layer` (for runs under bfloat16 autocast); a one-channel pointwise
    convolution keeps autocast's precision, as the convolution it replaces. Yields the number
    of layers swapped.
    """
    swaps: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if _eligible_transpose(child):
                fast: nn.Module = SubPixelConvTranspose(child)  # type: ignore[arg-type]  # checked
            elif _eligible_norm(child):
                fast = InstanceNormChannelsLast(child)  # type: ignore[arg-type]  # checked
            elif single_channel_pointwise(child):
                fast = SingleChannelPointwise(child)  # type: ignore[arg-type]  # checked
            else:
                continue
            fast.to(next(iter(child.parameters()), torch.empty(0)).device)
            keep = float32 and not isinstance(fast, SingleChannelPointwise)
            fast = Float32Layer(fast) if keep else fast
            swaps.append((parent, name, child))
            setattr(parent, name, fast)
    try:
        yield len(swaps)
    finally:
        for parent, name, child in reversed(swaps):
            setattr(parent, name, child)
