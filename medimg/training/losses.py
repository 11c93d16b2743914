"""Losses: Dice + cross-entropy for segmentation (deep supervision); weighted classification."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from medimg.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch.nn.modules.loss import _Loss

__all__ = [
    "SEGMENTATION_LOSSES",
    "balanced_class_weights",
    "classification_loss",
    "segmentation_loss",
]

SEGMENTATION_LOSSES = ("dice_ce", "dice", "ce")
"""Loss names: Dice + cross-entropy (nnU-Net's), Dice alone, cross-entropy alone."""


def segmentation_loss(
    kind: str = "dice_ce", *, deep_supervision: bool = False, distributed: bool | None = None
) -> torch.nn.Module:
    """Dice + cross-entropy on softmax logits against an integer label map (nnU-Net's loss).

    ``kind="dice"`` or ``"ce"`` keeps one of the two terms.

    The Dice term is computed over the batch (``batch=True``) and without the background
    channel, as nnU-Net does. With ``deep_supervision`` the loss also accepts the stacked output
    of a deep-supervised DynUNet, ``(B, heads, C, ...)``: each head (DynUNet upsamples them to full
    size) is scored against the label and the terms weighted ``1, 1/2, 1/4, ...`` (MONAI's
    ``DeepSupervisionLoss``; a head of another size is scored against the label resized by
    nearest neighbour). A plain ``(B, C, ...)`` output (evaluation mode) is scored as is.

    Under torchrun (``distributed``; by default whether this process is a rank of a
    distributed run) a loss with a Dice term sums the Dice overlaps over every rank's rows
    (:class:`~medimg.training._global_dice.GlobalDiceCE`), so each rank's loss is the global
    batch's, as one process would compute it; one process keeps MONAI's ``DiceCELoss``.

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
    if distributed is None:
        from medimg.training.distributed import current

        distributed = current().enabled
    dice_ce: _Loss
    if distributed and kind != "ce":
        from medimg.training._global_dice import GlobalDiceCE

        dice_ce = GlobalDiceCE(lambda_dice=1.0, lambda_ce=0.0 if kind == "dice" else 1.0)
    else:
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


def balanced_class_weights(counts: Sequence[int]) -> list[float]:
    """Inverse-frequency class weights ``n / (K * count_k)`` (scikit-learn's ``"balanced"``).

    Each class then carries the same total weight in the loss; a class without cases gets
    weight 0.

    Raises
    ------
    ConfigError
        When there are fewer than two classes or no case at all.

    Examples
    --------
    >>> balanced_class_weights([30, 10])  # 40 cases: 40 / (2 * 30), 40 / (2 * 10)
    [0.6666666666666666, 2.0]
    """
    total = sum(counts)
    if len(counts) < 2 or total <= 0 or min(counts) < 0:
        raise ConfigError(
            f"counts must give >= 2 classes with non-negative counts and at least one case, "
            f"got {list(counts)}"
        )
    return [total / (len(counts) * c) if c else 0.0 for c in counts]


def classification_loss(
    class_weights: Sequence[float] | None = None, *, multi_label: bool = False
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Cross-entropy on logits ``(B, K)`` against class indices ``(B,)``, optionally weighted.

    With ``multi_label`` each of the ``K`` outputs is an independent yes/no (sigmoid,
    binary cross-entropy against the one-hot target); ``class_weights`` then weight each
    class's positive term (``pos_weight``), which balances rare positives the same way.

    Returns
    -------
    callable
        ``loss(logits, target)``; ``target`` holds class indices, shape ``(B,)`` or ``(B, 1)``.
    """
    import torch

    weight = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        index = target.reshape(-1).long()
        w = None if weight is None else weight.to(logits.device)
        if not multi_label:
            return torch.nn.functional.cross_entropy(logits.float(), index, weight=w)
        onehot = torch.nn.functional.one_hot(index, logits.shape[1]).float()
        return torch.nn.functional.binary_cross_entropy_with_logits(
            logits.float(), onehot, pos_weight=w
        )

    return loss
