"""The deep-supervision loss module (imports torch, so it is loaded only when needed)."""

from __future__ import annotations

import torch
from monai.losses.ds_loss import DeepSupervisionLoss
from torch.nn.modules.loss import _Loss

__all__ = ["DeepSupervised"]


class DeepSupervised(torch.nn.Module):
    """Score a stacked ``(B, heads, C, ...)`` output head by head, or a plain one as is."""

    def __init__(self, loss: _Loss) -> None:
        super().__init__()
        self.loss = DeepSupervisionLoss(loss, weight_mode="exp")

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Weighted sum of the heads' losses, or the plain loss for an unstacked output."""
        if output.ndim == target.ndim + 1:
            heads: torch.Tensor | list[torch.Tensor] = list(torch.unbind(output, dim=1))
        else:
            heads = output
        result: torch.Tensor = self.loss(heads, target)
        return result
