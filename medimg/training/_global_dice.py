"""``dice_ce`` under DDP: batch Dice whose overlaps are summed over every rank's rows."""

from __future__ import annotations

import torch
from torch.nn.modules.loss import _Loss

from medimg.training.distributed import all_reduce_with_grad

__all__ = ["GlobalDiceCE"]

_SMOOTH = 1e-5  # MONAI DiceLoss's smooth_nr and smooth_dr


class GlobalDiceCE(_Loss):
    """MONAI's ``DiceCELoss(to_onehot_y, softmax, include_background=False, batch=True)``.

    The Dice term's overlap ``sum(p * g)`` and size ``sum(p) + sum(g)`` per foreground channel
    are summed over the batch, the voxels and every rank (:func:`all_reduce_with_grad`), so
    every rank gets the Dice of the global batch and its gradient; the cross-entropy term is
    the mean over this rank's voxels (the loop's weights and DDP's average make it the global
    mean). In a world of one it equals MONAI's loss up to float rounding.

    Parameters
    ----------
    lambda_dice, lambda_ce : float
        Weights of the two terms.
    """

    def __init__(self, *, lambda_dice: float = 1.0, lambda_ce: float = 1.0) -> None:
        super().__init__()
        self.lambda_dice, self.lambda_ce = lambda_dice, lambda_ce

    def forward(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """The loss of ``(B, C, ...)`` logits against a ``(B, 1, ...)`` integer label map."""
        index = label[:, 0].long()
        ce = torch.nn.functional.cross_entropy(logits, index)
        probs = logits.softmax(dim=1)[:, 1:]
        onehot = torch.nn.functional.one_hot(index, logits.shape[1]).movedim(-1, 1)[:, 1:]
        dims = [0, *range(2, logits.ndim)]
        overlap = (probs * onehot).sum(dims)
        size = probs.sum(dims) + onehot.sum(dims)
        sums = all_reduce_with_grad(torch.stack([overlap, size]))
        dice = (1.0 - (2.0 * sums[0] + _SMOOTH) / (sums[1] + _SMOOTH)).mean()
        return self.lambda_dice * dice + self.lambda_ce * ce
