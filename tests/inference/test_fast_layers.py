"""The fast CPU forms of transposed convolutions, instance norms and one-channel pointwise
convolutions equal the originals."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medimg.inference._fast_layers import (
    InstanceNormChannelsLast,
    SingleChannelPointwise,
    SubPixelConvTranspose,
    fast_layers,
)


def _layouts(dims: int) -> list[torch.memory_format]:
    cl = torch.channels_last_3d if dims == 3 else torch.channels_last
    return [torch.contiguous_format, cl]


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_sub_pixel_equals_the_transposed_convolution(dims: int, bias: bool) -> None:
    gen = torch.Generator().manual_seed(dims)
    cls = nn.ConvTranspose3d if dims == 3 else nn.ConvTranspose2d
    conv = cls(5, 3, 3, stride=2, padding=1, output_padding=1, bias=bias)
    with torch.no_grad():
        for p in conv.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    x = torch.randn((2, 5, *(7, 4, 6)[:dims]), generator=gen)
    for layout in _layouts(dims):
        conv = conv.to(memory_format=layout)
        xl = x.contiguous(memory_format=layout)
        with torch.no_grad():
            expected, got = conv(xl), SubPixelConvTranspose(conv)(xl)
        assert got.shape == expected.shape == (2, 3, *(14, 8, 12)[:dims])
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        assert got.is_contiguous(memory_format=_layouts(dims)[1])


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("affine", [True, False])
def test_channels_last_instance_norm_equals_the_original(dims: int, affine: bool) -> None:
    gen = torch.Generator().manual_seed(1)
    cls = nn.InstanceNorm3d if dims == 3 else nn.InstanceNorm2d
    norm = cls(4, affine=affine, eps=1e-5)
    if affine:
        with torch.no_grad():
            norm.weight.copy_(torch.randn(4, generator=gen))
            norm.bias.copy_(torch.randn(4, generator=gen))
    x = 3 + 2 * torch.randn((2, 4, *(9, 6, 5)[:dims]), generator=gen)
    for layout in _layouts(dims):
        xl = x.contiguous(memory_format=layout)
        got = InstanceNormChannelsLast(norm)(xl)
        torch.testing.assert_close(got, norm(xl), rtol=1e-5, atol=1e-5)
        assert got.is_contiguous(memory_format=layout)


def test_fast_layers_swap_and_restore_a_monai_unet() -> None:
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    net = UNet(3, 1, 3, (4, 8, 16), (2, 2), num_res_units=1).eval()
    net = net.to(memory_format=torch.channels_last_3d)
    before = dict(net.named_modules())
    x = torch.randn((2, 1, 16, 12, 8)).contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        expected = net(x)
        with fast_layers(net) as swapped:
            got = net(x)
            assert any(isinstance(m, SubPixelConvTranspose) for m in net.modules())
    # 2 up-convolutions and the instance norms of the 2 down, 1 bottom and 1 up block
    assert swapped > 2
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert dict(net.named_modules()).keys() == before.keys()
    assert all(a is b for a, b in zip(net.modules(), before.values(), strict=True))


def test_fast_layers_take_a_dynunets_one_channel_residual_projection() -> None:
    from monai.networks.nets import DynUNet

    torch.manual_seed(0)
    net = DynUNet(3, 1, 3, [3, 3, 3], [1, 2, 2], [2, 2], filters=[8, 16, 32], res_block=True)
    net = net.eval()
    net = net.to(memory_format=torch.channels_last_3d)
    x = torch.randn((2, 1, 16, 12, 8)).contiguous(memory_format=torch.channels_last_3d)
    projection = net.input_block.conv3.conv  # Conv3d(1, 8, kernel 1)
    with torch.no_grad():
        expected = net(x)
        with fast_layers(net, float32=True):
            got = net(x)
            assert isinstance(net.input_block.conv3.conv, SingleChannelPointwise)
    assert net.input_block.conv3.conv is projection
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
