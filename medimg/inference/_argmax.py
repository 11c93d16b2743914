"""The label of each voxel from its class scores, several times faster than ``argmax(dim=0)``.

``torch.argmax`` over the leading (class) axis of a ``(K, X, Y, Z)`` tensor reduces across
strides of ``X * Y * Z`` elements, which torch's CPU kernel does slowly: 0.33 s for a
4-class 256x256x64 slab on a 2-core Xeon, while ``K - 1`` passes of compare, fill and maximum
over contiguous planes take 0.04 s (the way back onto the stored grid pays it once per
stored-grid slab of every case, the stitcher once per finished cell). The result is the
same: the first class with the highest score wins ties, and a NaN score counts as the highest,
as in ``torch.argmax``.

Scores whose class axis is the innermost in memory (the stitcher's cells, laid out like
channels-last network output) are the opposite case: ``argmax`` reduces contiguous groups
of ``K`` there, and took 0.97 ms for a 4-class 48**3 cell against 1.42 ms class by class
(strided planes), so they go to ``torch.argmax``.
"""

from __future__ import annotations

import torch

__all__ = ["class_argmax"]


def class_argmax(scores: torch.Tensor, dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    """``scores.argmax(dim=0).to(dtype)`` of ``(K, *spatial)`` scores, computed class by class.

    Parameters
    ----------
    scores : (K, *spatial) float tensor
        Per-class scores (logits or probabilities), any device.
    dtype : torch.dtype
        Of the labels; it must hold ``K - 1``.

    Examples
    --------
    >>> s = torch.tensor([[0.1, 0.5, 0.2], [0.7, 0.5, 0.1], [0.2, 0.0, 0.7]])
    >>> class_argmax(s).tolist()  # the tie in the middle goes to the first class
    [1, 0, 2]
    """
    classes_innermost = scores.dim() > 1 and scores.stride(0) == 1
    if scores.shape[0] <= 1 or classes_innermost or bool(torch.isnan(scores).any()):
        return scores.argmax(dim=0).to(dtype)
    labels = torch.zeros(scores.shape[1:], dtype=dtype, device=scores.device)
    best = scores[0].clone()
    for k in range(1, int(scores.shape[0])):
        higher = scores[k] > best
        labels.masked_fill_(higher, k)
        torch.maximum(best, scores[k], out=best)
    return labels
