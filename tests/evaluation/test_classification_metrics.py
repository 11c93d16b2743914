from __future__ import annotations

import math

import numpy as np
import pytest

from medimg.evaluation import (
    balanced_accuracy,
    confusion_matrix,
    roc_auc,
    score_classification,
    sensitivity_specificity,
)


def test_binary_auc_counts_ordered_pairs_and_half_ties() -> None:
    # pairs (pos, neg): (0.35 > 0.1), (0.35 < 0.4), (0.8 > 0.1), (0.8 > 0.4) -> 3/4
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    # one tie (0.4 vs 0.4) counts 1/2: (1 + 0.5 + 1 + 1) / 4
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.4, 0.8]) == 0.875


def test_multiclass_auc_is_one_vs_rest_mean() -> None:
    y = [0, 1, 2, 2]
    p = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.3, 0.5], [0.5, 0.1, 0.4]])
    # class 0: pos 0.8 vs negs 0.3, 0.2, 0.5 -> 1; class 1: pos 0.6 vs 0.1, 0.3, 0.1 -> 1;
    # class 2: pos 0.5, 0.4 vs negs 0.1, 0.1 -> 1. Make class 2 imperfect:
    assert roc_auc(y, p) == 1.0
    p[1, 2] = 0.45  # class 2 negatives now 0.1, 0.45: pairs (0.5>0.1,0.5>0.45,0.4>0.1,0.4<0.45)
    assert roc_auc(y, p) == pytest.approx((1 + 1 + 0.75) / 3)


def test_auc_undefined_class_is_skipped_then_nan() -> None:
    p = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1]])
    # class 2 has no positive: AUC defined for classes 0 and 1 only (both perfect)
    assert roc_auc([0, 1], p) == 1.0
    assert math.isnan(roc_auc([1, 1], [0.2, 0.9]))


def test_confusion_accuracy_sensitivity_specificity() -> None:
    y = [0, 0, 0, 1, 1]
    prob = [0.1, 0.6, 0.3, 0.7, 0.4]
    # threshold 0.5: calls 0,1,0,1,0 -> TN 2, FP 1, TP 1, FN 1
    assert confusion_matrix(y, [0, 1, 0, 1, 0], num_classes=2).tolist() == [[2, 1], [1, 1]]
    assert sensitivity_specificity(y, prob, threshold=0.5) == (0.5, 2 / 3)
    assert sensitivity_specificity(y, prob, threshold=0.35) == (1.0, 2 / 3)
    scores = score_classification(y, prob)
    assert (scores.accuracy, scores.confusion) == (0.6, ((2, 1), (1, 1)))
    assert scores.balanced_accuracy == pytest.approx((2 / 3 + 0.5) / 2)
    assert (scores.sensitivity, scores.specificity, scores.threshold) == (0.5, 2 / 3, 0.5)


def test_multiclass_scores_use_argmax() -> None:
    p = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.3, 0.5], [0.5, 0.1, 0.4]])
    scores = score_classification([0, 1, 2, 2], p)
    assert scores.confusion == ((1, 0, 0), (0, 1, 0), (1, 0, 1))
    assert (scores.accuracy, scores.sensitivity) == (0.75, None)
    assert balanced_accuracy(np.array(scores.confusion)) == pytest.approx((1 + 1 + 0.5) / 3)


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"N = len\(y_true\) = 3, got shape \(2,\)"):
        roc_auc([0, 1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match=r"y_true must hold classes 0..1, got values 0..2"):
        roc_auc([0, 1, 2], [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match=r"same length, got 2 and 3"):
        confusion_matrix([0, 1], [0, 1, 1], num_classes=2)
    with pytest.raises(ValueError, match=r"classes must be in 0..1, got values 0..3"):
        confusion_matrix([0, 3], [0, 1], num_classes=2)
    with pytest.raises(ValueError, match=r"needs a binary problem, got 3 classes"):
        sensitivity_specificity([0, 1], np.full((2, 3), 1 / 3))
