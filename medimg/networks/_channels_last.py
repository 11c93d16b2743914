"""Layers that keep channels-last memory fast, forward and backward (private).

**Instance normalisation.**

PyTorch's ``instance_norm`` views an ``(N, C, ...)`` input as one sample of ``N * C``
channels, which for a channels-last tensor is a contiguous copy, and hands back a contiguous
output, so the next convolution converts it to channels-last again; its backward pays the same
copies. In a profiled channels-last DynUNet training step on a 2-core CPU, copies were 11% of
the time; this form removed three quarters of them (731 to 181 ms over 60 steps).
:func:`instance_norm_channels_last` works on the tensor viewed as ``(N, positions, C)`` (a
view for channels-last memory) and returns channels-last memory; its backward is written
out (:class:`_InstanceNormCL`) rather than traced through the forward's operations, whose
saved intermediates made an autograd version slower than PyTorch's.

Statistics take two passes (the mean, then the mean square about it): one pass
(``E[x^2] - E[x]^2``) loses digits when ``|mean| >> std``, and ``torch.linalg.vector_norm``
for the second was 1e-3 off at 4 x 96**3 voxels.

:func:`pointwise_conv_single_channel` (**one input channel, kernel 1**): oneDNN runs such a
convolution (``nn.Conv3d(1, C, 1)``, the residual projection of a DynUNet's first block) on a
slow path. On a 2-core CPU with AVX-512, 1 to 8 channels at 2 x 32 x 32 x 16 voxels took 2.9 ms
forward and 5.5 ms forward and backward, against 0.23 and 0.45 ms as the matrix product it is
(``F.linear`` over the ``(N, positions, 1)`` view); at 64 x 64 x 32, 16.5 and 27.5 ms against
0.8 and 1.4 ms. With two or more input channels oneDNN's convolution is the faster (2 to 8
channels: 0.22 ms forward and backward against 0.87), so only one-channel input takes this form.

:func:`channels_last_layers` gives a model's ``InstanceNorm2d``/``3d`` and one-channel
pointwise ``Conv2d``/``3d`` layers these forwards for a while by changing their class to a
subclass that adds nothing but the forward, so parameters, state-dict keys and checkpoints are
the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F  # the usual name
from torch import nn

__all__ = [
    "channels_last_batch",
    "channels_last_layers",
    "instance_norm_channels_last",
    "pointwise_conv_single_channel",
    "single_channel_pointwise",
]


def _layout(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last_3d if x.dim() == 5 else torch.channels_last


def channels_last_batch(x: torch.Tensor) -> bool:
    """Whether ``x`` is a batch ``(N, C, ...)`` of 2D or 3D images in channels-last memory."""
    return x.dim() in (4, 5) and x.is_contiguous(memory_format=_layout(x))


def _positions(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, *S)`` as ``(N, prod(S), C)``: a view of channels-last memory, else a copy."""
    n, c = x.shape[:2]
    return x.permute(0, *range(2, x.dim()), 1).reshape(n, -1, c)


def _channels_last_like(
    x: torch.Tensor, dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A new channels-last tensor shaped like ``x``, and its ``(N, positions, C)`` view."""
    out = torch.empty_like(x, dtype=dtype, memory_format=_layout(x))
    return out, _positions(out)


class _InstanceNormCL(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        eps: float,
    ) -> torch.Tensor:
        pos = _positions(x)
        mean = pos.mean(dim=1, keepdim=True)  # (N, 1, C)
        xhat = pos - mean
        var = xhat.square().mean(dim=1, keepdim=True)  # torch.linalg.vector_norm: 1e-3 off
        rstd = torch.rsqrt(var + eps)
        xhat.mul_(rstd)
        out, out_pos = _channels_last_like(x)  # written through the view: no copy
        if weight is None:
            out_pos.copy_(xhat)
        else:
            torch.mul(xhat, weight, out=out_pos)
        if bias is not None:
            out_pos.add_(bias)
        ctx.save_for_backward(xhat, rstd, weight)  # only built when a gradient is needed
        return out

    @staticmethod
    def backward(
        ctx: Any, grad_out: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, None]:
        xhat, rstd, weight = ctx.saved_tensors
        dy = _positions(grad_out)
        dy_xhat = dy * xhat
        grad_w = dy_xhat.sum(dim=(0, 1)) if ctx.needs_input_grad[1] else None
        grad_b = dy.sum(dim=(0, 1)) if ctx.needs_input_grad[2] else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            g = dy if weight is None else dy * weight
            mean_g = g.mean(dim=1, keepdim=True)
            mean_gx = dy_xhat.mean(dim=1, keepdim=True)
            if weight is not None:
                mean_gx = mean_gx * weight
            grad_x, grad = _channels_last_like(grad_out)
            torch.sub(g, mean_g, out=grad)
            grad.addcmul_(xhat, mean_gx, value=-1.0).mul_(rstd)
        return grad_x, grad_w, grad_b, None


def _no_grad_forward(
    x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> torch.Tensor:
    """The forward without saving anything for a backward: one temporary, one fused write."""
    if x.dtype in (torch.bfloat16, torch.float16):
        x = x.float()  # CPU kernels for these are 4x slower than the float32 copy and math
    pos = _positions(x)
    mean = pos.mean(dim=1, keepdim=True)
    var = (pos - mean).square_().mean(dim=1, keepdim=True)
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * weight
    shift = -mean * scale
    if bias is not None:
        shift = shift + bias
    out, out_pos = _channels_last_like(x, torch.promote_types(x.dtype, scale.dtype))
    torch.addcmul(shift, pos, scale, out=out_pos)
    return out


def instance_norm_channels_last(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Instance normalisation of ``(N, C, *S)`` (2D or 3D), output in channels-last memory.

    Equal to ``torch.nn.functional.instance_norm`` (without running statistics) to float32
    rounding, with gradients for ``x``, ``weight`` and ``bias`` when autograd needs them (and
    a leaner forward that saves nothing when it does not). With gradients, the output has the
    input's dtype and under autocast the statistics and gradients are computed in float32.
    Without, bfloat16 and float16 input is normalised in float32 and float32 is returned (the
    next layer's autocast casts it back): on a CPU with AVX512-BF16 that took 3.9 ms for
    2 x 16 x 48**3 voxels against 15.9 ms in bfloat16.
    Input in another layout is read through one copy.
    """
    tracked = [t for t in (x, weight, bias) if t is not None and t.requires_grad]
    if not (torch.is_grad_enabled() and tracked):
        return _no_grad_forward(x, weight, bias, eps)
    if torch.is_autocast_enabled(x.device.type):  # statistics and gradients in float32
        with torch.autocast(device_type=x.device.type, enabled=False):
            w = None if weight is None else weight.float()
            b = None if bias is None else bias.float()
            out: torch.Tensor = _InstanceNormCL.apply(x.float(), w, b, eps)  # type: ignore[no-untyped-call]
        return out.to(x.dtype)  # like PyTorch's: the input's dtype
    return _InstanceNormCL.apply(x, weight, bias, eps)  # type: ignore[no-any-return,no-untyped-call]


def single_channel_pointwise(module: nn.Module) -> bool:
    """Whether ``module`` is a ``Conv2d``/``3d`` with one input channel and kernel 1, unpadded."""
    if not isinstance(module, (nn.Conv2d, nn.Conv3d)):
        return False
    d = module.weight.dim() - 2
    return (
        module.in_channels == 1
        and module.groups == 1
        and tuple(module.kernel_size) == (1,) * d
        and (module.padding in ("valid", "same") or tuple(module.padding) == (0,) * d)
    )


def pointwise_conv_single_channel(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: tuple[int, ...] | int = 1,
) -> torch.Tensor:
    """A kernel-1 convolution of one-channel ``(N, 1, *S)`` as a matrix product, channels-last out.

    Equal to ``F.conv3d(x, weight, bias, stride)`` (or ``conv2d``) for a ``weight`` of shape
    ``(C, 1, 1, ...)``, to float32 rounding, with autograd's gradients for every argument and
    autocast's casts (``F.linear`` is on its lower-precision list, as convolutions are). The
    output, ``(N, C, *S')``, is in channels-last memory. A stride takes every ``s``-th voxel.
    """
    d = x.dim() - 2
    strides = (stride,) * d if isinstance(stride, int) else tuple(stride)
    if any(s != 1 for s in strides):
        x = x[(slice(None), slice(None), *(slice(None, None, s) for s in strides))]
    n, spatial, c = x.shape[0], x.shape[2:], weight.shape[0]
    out = F.linear(_positions(x), weight.reshape(c, 1), bias)  # (N, positions, C)
    return out.view(n, *spatial, c).permute(0, d + 1, *range(1, d + 1))


def _eligible(module: nn.Module) -> bool:
    if type(module) in (nn.Conv2d, nn.Conv3d):
        return single_channel_pointwise(module)
    return type(module) in _SUBCLASS and not module.track_running_stats


class _ChannelsLastForward(nn.Module):
    """The forward of the norm subclasses below (batched channels-last input; else nn's)."""

    rank: int
    eps: float

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # nn's argument name
        """Normalise channels-last ``input`` here, anything else as PyTorch does."""
        if input.dim() != self.rank or not channels_last_batch(input):
            return super().forward(input)  # type: ignore[no-any-return]  # nn's instance norm
        weight, bias = getattr(self, "weight", None), getattr(self, "bias", None)
        return instance_norm_channels_last(input, weight, bias, self.eps)


class _ChannelsLastInstanceNorm2d(_ChannelsLastForward, nn.InstanceNorm2d):
    rank = 4


class _ChannelsLastInstanceNorm3d(_ChannelsLastForward, nn.InstanceNorm3d):
    rank = 5


class _PointwiseForward(nn.Module):
    """The forward of the one-channel pointwise convolution subclasses below."""

    rank: int
    weight: torch.Tensor
    bias: torch.Tensor | None
    stride: tuple[int, ...]

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # nn's argument name
        """A batch ``(N, 1, ...)`` as a matrix product (channels-last out), else nn's conv."""
        if input.dim() != self.rank or input.shape[1] != 1:
            return super().forward(input)  # type: ignore[no-any-return]  # nn's convolution
        return pointwise_conv_single_channel(input, self.weight, self.bias, self.stride)


class _PointwiseConv2d(_PointwiseForward, nn.Conv2d):
    rank = 4


class _PointwiseConv3d(_PointwiseForward, nn.Conv3d):
    rank = 5


_SUBCLASS: dict[type[nn.Module], type[nn.Module]] = {
    nn.InstanceNorm2d: _ChannelsLastInstanceNorm2d,
    nn.InstanceNorm3d: _ChannelsLastInstanceNorm3d,
    nn.Conv2d: _PointwiseConv2d,
    nn.Conv3d: _PointwiseConv3d,
}


@contextmanager
def channels_last_layers(model: nn.Module) -> Iterator[int]:
    """Run ``model``'s instance norms and one-channel pointwise convolutions fast, in the block.

    Each ``nn.InstanceNorm2d``/``3d`` without running statistics (exactly those classes) gets a
    subclass whose forward is :func:`instance_norm_channels_last` for channels-last input
    (others take PyTorch's path); each ``nn.Conv2d``/``3d`` with one input channel and kernel
    1 (:func:`single_channel_pointwise`) one whose forward is
    :func:`pointwise_conv_single_channel`. The classes are put back on exit. Yields the number
    of layers changed.
    """
    changed = [m for m in model.modules() if _eligible(m)]
    for module in changed:
        module.__class__ = _SUBCLASS[type(module)]
    try:
        yield len(changed)
    finally:
        back = {sub: base for base, sub in _SUBCLASS.items()}
        for module in changed:
            module.__class__ = back[type(module)]
