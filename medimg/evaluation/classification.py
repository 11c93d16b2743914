"""Classification metrics: AUC, accuracy, balanced accuracy, sensitivity/specificity, confusion.

Conventions
-----------
* ``y_true`` holds integer classes ``0 .. K-1``; ``probabilities`` is ``(N, K)`` (rows need not
  sum to one; only their order matters for AUC and their argmax for the predicted class). For a
  binary problem a ``(N,)`` vector is read as the probability of class 1.
* AUC is the Mann-Whitney statistic with ties counted one half (equal to the trapezoidal ROC
  area). Multi-class AUC is the unweighted mean of one-vs-rest AUCs over the classes that have
  both positives and negatives; a class without either has AUC NaN (undefined), and the mean is
  NaN when no class is defined.
* Balanced accuracy is the mean recall over the classes present in ``y_true``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "ClassificationScores",
    "accuracy",
    "balanced_accuracy",
    "confusion_matrix",
    "roc_auc",
    "roc_curve",
    "score_classification",
    "sensitivity_specificity",
]


def _as_probabilities(
    y_true: ArrayLike, probabilities: ArrayLike
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    y = np.asarray(y_true).astype(np.int64).ravel()
    given = np.asarray(probabilities, dtype=np.float64)
    if given.ndim not in (1, 2) or given.shape[0] != y.size:
        raise ValueError(
            f"probabilities must be (N,) or (N, K) with N = len(y_true) = {y.size}, "
            f"got shape {given.shape}"
        )
    p = np.stack([1.0 - given, given], axis=1) if given.ndim == 1 else given
    if y.size and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(
            f"y_true must hold classes 0..{p.shape[1] - 1}, got values {y.min()}..{y.max()}"
        )
    return y, p


def _binary_auc(positive: NDArray[np.bool_], score: NDArray[np.float64]) -> float:
    from scipy.stats import rankdata

    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_auc(y_true: ArrayLike, probabilities: ArrayLike) -> float:
    """Area under the ROC curve; one-vs-rest macro average for more than two classes.

    Examples
    --------
    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])  # 3 of 4 (pos, neg) pairs ordered
    0.75
    """
    y, p = _as_probabilities(y_true, probabilities)
    if p.shape[1] == 2:
        return _binary_auc(y == 1, p[:, 1])
    aucs = np.array([_binary_auc(y == k, p[:, k]) for k in range(p.shape[1])])
    defined = aucs[~np.isnan(aucs)]
    return float(defined.mean()) if defined.size else float("nan")


def roc_curve(
    positive: ArrayLike, score: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """ROC points ``(fpr, tpr)`` from ``(0, 0)`` to ``(1, 1)``, one step per distinct score.

    ``positive`` marks the positive cases; a case is called positive when its score is at
    least the threshold, thresholds running from the highest score down. Tied scores move
    both rates at once (a diagonal step), so the trapezoidal area equals :func:`roc_auc`.

    Raises
    ------
    ValueError
        When the lengths differ or a class (positive or negative) is absent.

    Examples
    --------
    >>> fpr, tpr = roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> fpr.tolist(), tpr.tolist()
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    pos = np.asarray(positive).astype(bool).ravel()
    s = np.asarray(score, dtype=np.float64).ravel()
    if pos.shape != s.shape or pos.all() or not pos.any():
        raise ValueError(
            f"positive and score must have one length and both classes, got {pos.size} and "
            f"{s.size} values with {int(pos.sum())} positives"
        )
    order = np.argsort(-s, kind="stable")
    s, pos = s[order], pos[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each distinct score
    tp, fp = np.cumsum(pos)[last], np.cumsum(~pos)[last]
    return np.r_[0.0, fp / fp[-1]], np.r_[0.0, tp / tp[-1]]


def confusion_matrix(
    y_true: ArrayLike, y_pred: ArrayLike, *, num_classes: int
) -> NDArray[np.int64]:
    """``(K, K)`` counts: row = true class, column = predicted class.

    Examples
    --------
    >>> confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2], num_classes=3).tolist()
    [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    """
    t = np.asarray(y_true).astype(np.int64).ravel()
    p = np.asarray(y_pred).astype(np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must have the same length, got {t.size} and {p.size}")
    bad = np.concatenate([t, p])
    if bad.size and (bad.min() < 0 or bad.max() >= num_classes):
        raise ValueError(
            f"classes must be in 0..{num_classes - 1}, got values {bad.min()}..{bad.max()}"
        )
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (t, p), 1)
    return matrix


def accuracy(matrix: NDArray[np.int64]) -> float:
    """Share of correct predictions, from a confusion matrix."""
    total = int(matrix.sum())
    return float(np.trace(matrix)) / total if total else float("nan")


def balanced_accuracy(matrix: NDArray[np.int64]) -> float:
    """Mean recall over the classes present, from a confusion matrix.

    Examples
    --------
    >>> balanced_accuracy(np.array([[8, 0], [1, 1]]))  # recalls 1.0 and 0.5
    0.75
    """
    support = matrix.sum(axis=1)
    present = support > 0
    if not present.any():
        return float("nan")
    return float(np.mean(np.diag(matrix)[present] / support[present]))


def sensitivity_specificity(
    y_true: ArrayLike, probability_positive: ArrayLike, *, threshold: float = 0.5
) -> tuple[float, float]:
    """Sensitivity and specificity of ``probability >= threshold`` as the positive call.

    NaN for a rate whose denominator (positives or negatives) is zero.

    Examples
    --------
    >>> sensitivity_specificity([0, 0, 1, 1], [0.2, 0.6, 0.7, 0.4])
    (0.5, 0.5)
    """
    y, p = _as_probabilities(y_true, probability_positive)
    if p.shape[1] != 2:
        raise ValueError(
            f"sensitivity_specificity needs a binary problem, got {p.shape[1]} classes"
        )
    called = p[:, 1] >= threshold
    pos, neg = y == 1, y == 0
    sens = float((called & pos).sum() / pos.sum()) if pos.any() else float("nan")
    spec = float((~called & neg).sum() / neg.sum()) if neg.any() else float("nan")
    return sens, spec


@dataclass(frozen=True)
class ClassificationScores:
    """All classification scores of one evaluation (sensitivity/specificity binary only)."""

    auc: float
    accuracy: float
    balanced_accuracy: float
    confusion: tuple[tuple[int, ...], ...]
    sensitivity: float | None
    specificity: float | None
    threshold: float | None


def score_classification(
    y_true: ArrayLike, probabilities: ArrayLike, *, threshold: float = 0.5
) -> ClassificationScores:
    """Score predicted class probabilities against true classes.

    The predicted class is the argmax, except in a binary problem, where it is
    ``probability of class 1 >= threshold`` (so accuracy and sensitivity agree).
    """
    y, p = _as_probabilities(y_true, probabilities)
    binary = p.shape[1] == 2
    y_pred = (p[:, 1] >= threshold).astype(np.int64) if binary else p.argmax(axis=1)
    matrix = confusion_matrix(y, y_pred, num_classes=p.shape[1])
    sens, spec = sensitivity_specificity(y, p[:, 1], threshold=threshold) if binary else (None,) * 2
    return ClassificationScores(
        auc=roc_auc(y, p),
        accuracy=accuracy(matrix),
        balanced_accuracy=balanced_accuracy(matrix),
        confusion=tuple(tuple(int(v) for v in row) for row in matrix),
        sensitivity=sens,
        specificity=spec,
        threshold=threshold if binary else None,
    )
