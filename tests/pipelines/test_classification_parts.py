"""The shared pieces the classification pipeline added to medimg.training and medimg.evaluation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from medimg.errors import ConfigError
from medimg.evaluation import roc_auc, roc_curve, save_confusion_figure, save_roc_figure
from medimg.training import (
    apply_chain,
    balanced_class_weights,
    balanced_indices,
    classification_loss,
)


def test_balanced_class_weights() -> None:
    # 30 + 10 cases, 2 classes: 40 / (2 * 30) and 40 / (2 * 10); an empty class weighs 0
    assert balanced_class_weights([30, 10]) == pytest.approx([2 / 3, 2.0])
    assert balanced_class_weights([4, 0, 4]) == pytest.approx([2 / 3, 0.0, 2 / 3])  # 8 / (3 * 4)
    with pytest.raises(ConfigError, match=r"counts must give >= 2 classes .* got \[5\]"):
        balanced_class_weights([5])
    with pytest.raises(ConfigError, match=r"at least one case, got \[0, 0\]"):
        balanced_class_weights([0, 0])


def test_balanced_indices_draws_classes_equally() -> None:
    classes = [0] * 900 + [1] * 100
    picks = balanced_indices(classes, seed=3, epoch=0)
    rare = sum(i >= 900 for i in picks) / len(picks)
    assert abs(rare - 0.5) < 0.05  # binomial SD at n=1000 is 0.016
    assert picks == balanced_indices(classes, seed=3, epoch=0)
    assert picks != balanced_indices(classes, seed=3, epoch=1)
    with pytest.raises(ConfigError, match=r"classes must hold at least one case, got none"):
        balanced_indices([], seed=0, epoch=0)


def test_classification_loss_known_values() -> None:
    logits = torch.zeros(2, 2)  # uniform: CE = ln 2 per case
    target = torch.tensor([0, 1])
    assert float(classification_loss()(logits, target)) == pytest.approx(math.log(2))
    # weighted mean: (w0 * ln2 + w1 * ln2) / (w0 + w1) = ln 2 whatever the weights
    assert float(classification_loss([1.0, 3.0])(logits, target)) == pytest.approx(math.log(2))
    confident = torch.tensor([[4.0, 0.0], [4.0, 0.0]])  # right on case 0, wrong on case 1
    plain = float(classification_loss()(confident, target))
    weighted = float(classification_loss([1.0, 3.0])(confident, target))
    assert weighted > plain  # the mistake on the up-weighted class costs more
    # multi-label: BCE of sigmoid(0) = 0.5 against one-hot is ln 2 per output
    bce = classification_loss(multi_label=True)(logits, target.reshape(2, 1))
    assert float(bce) == pytest.approx(math.log(2))


def test_roc_curve_and_figures(tmp_path: Path) -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    score = np.array([0.1, 0.5, 0.5, 0.9, 0.2, 0.7])
    fpr, tpr = roc_curve(y == 1, score)
    # thresholds 0.9, 0.7, 0.5 (one tie of a positive and a negative), 0.2, 0.1
    assert fpr.tolist() == pytest.approx([0, 0, 0, 1 / 3, 2 / 3, 1])
    assert tpr.tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1, 1, 1])
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(y, score))
    with pytest.raises(
        ValueError,
        match=r"must have one length and both classes, got 3 and 3 values with 3 positives",
    ):
        roc_curve([1, 1, 1], [0.1, 0.2, 0.3])
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]])
    roc = save_roc_figure([0, 1, 2, 1], probs, ["a", "b", "c"], tmp_path / "roc.png")
    assert roc.read_bytes()[:4] == b"\x89PNG"
    matrix = save_confusion_figure([[1, 0], [2, 3]], ["no", "yes"], tmp_path / "cm.png")
    assert matrix.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(
        ValueError, match=r"matrix must be \(3, 3\) for 3 class names, got shape \(2, 2\)"
    ):
        save_confusion_figure([[1, 0], [2, 3]], ["a", "b", "c"], tmp_path / "x.png")


def test_apply_chain_surfaces_our_errors() -> None:
    from monai.transforms.compose import Compose
    from monai.transforms.utility.dictionary import Lambdad

    def unreadable(_: object) -> None:
        raise ConfigError("value must be readable, got none")

    def buggy(_: object) -> None:
        raise KeyError("bug")

    assert apply_chain(Compose([Lambdad("x", lambda v: v + 1)]), {"x": 1}) == {"x": 2}
    with pytest.raises(ConfigError, match=r"value must be readable, got none"):
        apply_chain(Compose([Lambdad("x", unreadable)]), {"x": 1})
    with pytest.raises(RuntimeError, match=r"applying transform"):
        apply_chain(Compose([Lambdad("x", buggy)]), {"x": 1})
