"""Channels-last layers (instance norm, one-channel pointwise convolution): PyTorch's values
and gradients, kept layout, swapped and back."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # the usual name
from torch import nn

from medimg.networks._channels_last import (
    channels_last_layers,
    instance_norm_channels_last,
    pointwise_conv_single_channel,
    single_channel_pointwise,
)
from medimg.training import TrainConfig, fit, segmentation_loss

CL = {5: torch.channels_last_3d, 4: torch.channels_last}


def _input(shape: tuple[int, ...], offset: float = 0.0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(len(shape) * 7 + shape[1])
    x = torch.randn(shape, generator=g, dtype=dtype) * 2.0 + offset
    return x.contiguous(memory_format=CL[len(shape)])


@pytest.mark.parametrize("shape", [(2, 3, 5, 4, 3), (3, 2, 6, 5)])
@pytest.mark.parametrize("affine", [True, False])
def test_gradients_pass_gradcheck(shape, affine) -> None:
    x = _input(shape, offset=3.0, dtype=torch.float64).requires_grad_()
    c = shape[1]
    w = torch.rand(c, dtype=torch.float64, requires_grad=True) if affine else None
    b = torch.rand(c, dtype=torch.float64, requires_grad=True) if affine else None
    args = (x, w, b) if affine else (x,)
    assert torch.autograd.gradcheck(
        lambda *a: instance_norm_channels_last(*a, eps=1e-5) if affine else
        instance_norm_channels_last(a[0], eps=1e-5),
        args,
    )  # fmt: skip


@pytest.mark.parametrize("shape", [(2, 8, 12, 10, 6), (2, 4, 9, 7, 5), (2, 16, 11, 9)])
def test_values_and_gradients_equal_pytorchs(shape) -> None:
    # a mean 250 standard deviations from zero: a one-pass variance would lose it
    x = _input(shape, offset=500.0)
    c = shape[1]
    g = torch.Generator().manual_seed(2)  # seeded: the global generator's state varies
    w, b = torch.rand(c, generator=g) + 0.5, torch.rand(c, generator=g)
    ref = F.instance_norm(x.double(), weight=w.double(), bias=b.double(), eps=1e-5)
    # A float32 mean is off by up to an ulp or so at 500 (6e-5, 3e-5 standard deviations):
    # allow 4 ulps of the mean, in standard deviations (2) and scaled by the weight. Ours was
    # 1 to 5x PyTorch's own error over 24 seeded weights (its CPU kernel keeps the mean in
    # double); a one-pass variance (E[x^2] - E[x]^2) is 2.4e-2 off on this input.
    ulp = torch.finfo(torch.float32).eps * 500.0
    bound = 4 * ulp / 2.0 * float(w.max()) + 1e-6
    with torch.no_grad():  # the lean, no-gradient form
        lean = instance_norm_channels_last(x, w, b, 1e-5)
    assert lean.is_contiguous(memory_format=CL[len(shape)])
    assert float((lean.double() - ref).abs().max()) <= bound

    mine = [t.clone().requires_grad_() for t in (x, w, b)]
    theirs = [t.clone().requires_grad_() for t in (x, w, b)]
    out = instance_norm_channels_last(*mine, eps=1e-5)
    expected = F.instance_norm(theirs[0], weight=theirs[1], bias=theirs[2], eps=1e-5)
    assert out.is_contiguous(memory_format=CL[len(shape)])
    assert float((out.detach().double() - ref).abs().max()) <= bound
    grad = torch.randn(shape, generator=g).contiguous(memory_format=CL[len(shape)])
    out.backward(grad)
    expected.backward(grad)
    for m, t in zip(mine, theirs, strict=True):
        assert m.grad is not None
        assert t.grad is not None
        # the weight's gradient sums dy * xhat over every voxel of a channel: xhat's float32
        # error at this offset (above) adds up to ~3e-4 of it
        torch.testing.assert_close(m.grad, t.grad, atol=1e-3, rtol=1e-3)
    assert mine[0].grad.is_contiguous(memory_format=CL[len(shape)])  # type: ignore[union-attr]


def test_contiguous_input_and_gradient_are_read_through_a_copy() -> None:
    x = _input((2, 3, 6, 5, 4)).contiguous().requires_grad_()
    out = instance_norm_channels_last(x)
    torch.testing.assert_close(out, F.instance_norm(x.detach()), atol=1e-5, rtol=0)
    out.backward(torch.ones_like(out).contiguous())  # a contiguous gradient
    assert x.grad is not None
    assert float(x.grad.abs().max()) < 1e-4  # d(sum of a normalised channel)/dx is zero


def test_autocast_training_returns_the_input_dtype_channels_last() -> None:
    x = _input((2, 4, 8, 6, 5), offset=50.0)
    w = (torch.rand(4) + 0.5).requires_grad_()
    conv = nn.Conv3d(4, 4, 1).to(memory_format=torch.channels_last_3d)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
        out = instance_norm_channels_last(y, w, None)
    assert out.dtype == torch.bfloat16  # the input's dtype, as PyTorch's instance norm
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    ref = F.instance_norm(y.detach().float(), weight=w.detach())
    torch.testing.assert_close(out.float(), ref, atol=0.05, rtol=0.02)  # bf16 output rounding
    out.float().square().sum().backward()
    assert w.grad is not None
    assert torch.isfinite(w.grad).all()


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 4, 3, padding=1)
        self.norm = nn.InstanceNorm3d(4, affine=True)
        self.stats = nn.InstanceNorm3d(4, track_running_stats=True)  # not ours: left alone
        self.head = nn.Conv3d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stats(F.leaky_relu(self.norm(self.conv(x)))))


def test_swap_changes_only_the_forward_and_puts_the_classes_back() -> None:
    net = _Net()
    keys = list(net.state_dict())
    x = _input((2, 1, 6, 5, 4))
    with torch.no_grad():
        before = net.norm(net.conv(x))
        with channels_last_layers(net) as n:
            assert n == 1
            assert type(net.norm) is not nn.InstanceNorm3d
            assert isinstance(net.norm, nn.InstanceNorm3d)
            assert type(net.stats) is nn.InstanceNorm3d
            assert list(net.state_dict()) == keys
            inside = net.norm(net.conv(x))
            contiguous = net.norm(net.conv(x.contiguous()))  # PyTorch's path
    assert type(net.norm) is nn.InstanceNorm3d
    torch.testing.assert_close(inside, before, atol=1e-5, rtol=0)
    torch.testing.assert_close(contiguous, before, atol=1e-5, rtol=0)


@pytest.mark.parametrize("channels_last", [True, False])
def test_training_uses_it_only_channels_last_and_leaves_the_model_as_it_was(
    tmp_path, channels_last
) -> None:
    torch.manual_seed(0)
    net = _Net()
    seen: list[type] = []
    net.norm.register_forward_hook(lambda m, i, o: seen.append(type(m)))
    image = torch.randn(2, 1, 6, 5, 4)
    target = torch.randint(0, 2, (2, 1, 6, 5, 4))
    cfg = TrainConfig(
        max_epochs=1, iterations_per_epoch=2, device="cpu", channels_last=channels_last
    )
    fit(net, segmentation_loss(), lambda e: [(image, target)] * 2, cfg, out_dir=tmp_path)
    assert len(seen) == 2
    assert all((t is not nn.InstanceNorm3d) == channels_last for t in seen)
    assert type(net.norm) is nn.InstanceNorm3d


def test_bfloat16_without_gradients_is_normalised_in_float32() -> None:
    x = _input((2, 4, 8, 6, 5), offset=50.0).bfloat16()
    w, b = torch.rand(4) + 0.5, torch.rand(4)
    with torch.inference_mode():
        out = instance_norm_channels_last(x, w, b)
    assert out.dtype == torch.float32
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    ref = F.instance_norm(x.double(), weight=w.double(), bias=b.double(), eps=1e-5)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=0)  # float32 digits


def test_a_gradient_for_the_bias_alone() -> None:
    x = _input((2, 3, 4, 5, 3))
    bias = torch.zeros(3, requires_grad=True)
    out = instance_norm_channels_last(x, None, bias)
    out.sum().backward()
    assert bias.grad is not None
    torch.testing.assert_close(bias.grad, torch.full((3,), 2.0 * 4 * 5 * 3))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_one_channel_pointwise_equals_the_convolution(dims, stride, bias) -> None:
    g = torch.Generator().manual_seed(dims * 10 + stride)
    spatial = (7, 6, 5)[:dims]  # odd sizes: a stride keeps ceil(s / 2) voxels
    x = (torch.randn((2, 1, *spatial), generator=g) * 3.0 + 1.0).requires_grad_()
    w = torch.randn((6, 1, *(1,) * dims), generator=g, requires_grad=True)
    b = torch.randn(6, generator=g, requires_grad=True) if bias else None
    conv = F.conv3d if dims == 3 else F.conv2d
    expected = conv(x, w, b, stride)
    got = pointwise_conv_single_channel(x, w, b, stride)
    assert got.shape == expected.shape == (2, 6, *((s + stride - 1) // stride for s in spatial))
    assert got.is_contiguous(memory_format=CL[dims + 2])
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    grad = torch.randn(expected.shape, generator=g)
    leaves = [t for t in (x, w, b) if t is not None]
    mine = torch.autograd.grad(got, leaves, grad)
    theirs = torch.autograd.grad(expected, leaves, grad)
    for m, t in zip(mine, theirs, strict=True):
        torch.testing.assert_close(m, t, rtol=1e-5, atol=1e-5)


def test_one_channel_pointwise_follows_autocast_as_the_convolution_does() -> None:
    conv = nn.Conv3d(1, 8, 1)
    x = torch.randn(2, 1, 6, 5, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = conv(x)
        got = pointwise_conv_single_channel(x, conv.weight, conv.bias)
    assert got.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected.float(), rtol=0.02, atol=0.02)


def test_only_one_channel_unpadded_kernel_1_convolutions_are_taken() -> None:
    assert single_channel_pointwise(nn.Conv3d(1, 8, 1))
    assert single_channel_pointwise(nn.Conv2d(1, 8, 1, stride=2))
    assert not single_channel_pointwise(nn.Conv3d(2, 8, 1))  # oneDNN is faster from 2 channels
    assert not single_channel_pointwise(nn.Conv3d(1, 8, 3, padding=1))
    assert not single_channel_pointwise(nn.Conv3d(1, 8, 1, padding=1))  # pads with zeros
    assert not single_channel_pointwise(nn.ConvTranspose3d(1, 8, 1))


def test_swap_takes_the_one_channel_pointwise_convolution_and_puts_it_back() -> None:
    net = nn.Sequential(nn.Conv3d(1, 4, 1, stride=2), nn.InstanceNorm3d(4), nn.Conv3d(4, 2, 1))
    x = _input((2, 1, 6, 5, 4))
    keys = list(net.state_dict())
    with torch.no_grad():
        before = net(x)
        with channels_last_layers(net) as n:
            assert n == 2  # the first convolution and the norm; not the 4-channel head
            assert type(net[0]) is not nn.Conv3d
            assert isinstance(net[0], nn.Conv3d)
            assert type(net[2]) is nn.Conv3d
            assert list(net.state_dict()) == keys
            inside = net(x)
    assert type(net[0]) is nn.Conv3d
    assert inside.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(inside, before, atol=1e-5, rtol=0)
