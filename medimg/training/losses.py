"""Losses: Dice + cross-entropy for segmentation, with deep supervision."""

from __future__ import annotations

from typing import TYPE_CHECKING

from medimg.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["SEGMENTATION_LOSSES", "segmentation_loss"]

SEGMENTATION_LOSSES = ("dice_ce", "dice", "ce")
"""Loss names: Dice + cross-entropy (nnU-Net's), Dice alone, cross-entropy alone."""


def segmentation_loss(kind: str = "dice_ce", *, deep_supervision: bool = False) -> torch.nn.Module:
    """Dice + cross-entropy on softmax logits against an integer label map (nnU-Net's loss).

    ``kind="dice"`` or ``"ce"`` keeps one of the two terms.

    The Dice term is computed over the batch (``batch=True``) and without the background
    channel, as nnU-Net does. With ``deep_supervision`` the loss also accepts the stacked output
    of a deep-supervised DynUNet, ``(B, heads, C, ...)``: each head (DynUNet upsamples them to full
    size) is scored against the label and the terms weighted ``1, 1/2, 1/4, ...`` (MONAI's
    ``DeepSupervisionLoss``; a head of another size is scored against the label resized by
    nearest neighbour). A plain ``(B, C, ...)`` output (evaluation mode) is scored as is.

    Returns
    -------
    torch.nn.Module
        Called as ``loss(logits, label)`` with ``label`` of shape ``(B, 1, ...)``.

    Raises
    ------
    ConfigError
        For an unknown ``kind``.
    """
    from monai.losses.dice import DiceCELoss

    if kind not in SEGMENTATION_LOSSES:
        raise ConfigError(f"loss must be one of {', '.join(SEGMENTATION_LOSSES)}, got {kind!r}")
    dice_ce = DiceCELoss(
        to_onehot_y=True,
        softmax=True,
        include_background=False,
        batch=True,
        lambda_dice=0.0 if kind == "ce" else 1.0,
        lambda_ce=0.0 if kind == "dice" else 1.0,
    )
    if not deep_supervision:
        return dice_ce
    from medimg.training._deep_supervision import DeepSupervised

    return DeepSupervised(dice_ce)
