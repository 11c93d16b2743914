"""Tiny networks with known behaviour for the inference tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def conv_net(in_ch: int = 1, n_classes: int = 3, seed: int = 0) -> torch.nn.Module:
    """A small random convolutional network (not flip-equivariant)."""
    gen = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv3d(in_ch, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv3d(4, n_classes, 3, padding=1),
    )
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return net


def identity_net(n_classes: int = 2) -> torch.nn.Module:
    """Class k's logit is ``k * x``: a 1x1 convolution with hand-set weights, no bias."""
    net = torch.nn.Conv3d(1, n_classes, 1, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.arange(n_classes, dtype=torch.float32).reshape(-1, 1, 1, 1, 1))
    return net


@pytest.fixture
def image() -> np.ndarray:
    """A (1, 37, 29, 23) float32 image: no axis divisible by the test windows."""
    return np.random.default_rng(0).normal(size=(1, 37, 29, 23)).astype(np.float32)
