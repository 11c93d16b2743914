"""class_argmax equals torch.argmax(dim=0): random scores, ties, NaN, one class, wide labels."""

from __future__ import annotations

import pytest
import torch

from medimg.inference._argmax import class_argmax


@pytest.mark.parametrize("k", [2, 3, 7])
def test_equals_torch_argmax_on_random_scores(k) -> None:
    scores = torch.randn((k, 9, 5, 4), generator=torch.Generator().manual_seed(k))
    assert torch.equal(class_argmax(scores), scores.argmax(dim=0).to(torch.uint8))


def test_ties_go_to_the_first_class_and_nan_counts_as_highest() -> None:
    scores = torch.tensor(
        [[0.5, 0.2, 0.1, 0.3], [0.5, 0.4, 0.4, float("nan")], [0.1, 0.4, 0.4, 0.9]]
    )
    assert class_argmax(scores).tolist() == [0, 1, 1, 1]
    assert class_argmax(scores).tolist() == scores.argmax(dim=0).tolist()


def test_rounded_probabilities_tie_often_and_still_agree() -> None:
    """Quantised scores (many exact ties between several classes)."""
    gen = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 3, (5, 16, 16, 8), generator=gen).float()
    assert torch.equal(class_argmax(scores), scores.argmax(dim=0).to(torch.uint8))


def test_one_class_and_wider_dtype() -> None:
    assert class_argmax(torch.rand(1, 3, 3)).eq(0).all()
    scores = torch.zeros((300, 2, 2))
    scores[299, 1, 1] = 1.0
    labels = class_argmax(scores, torch.int32)
    assert labels.dtype == torch.int32
    assert labels.tolist() == [[0, 0], [0, 299]]


def test_classes_innermost_in_memory_keep_the_ties_and_nan_rule() -> None:
    """The stitcher's cells: (X, Y, Z, K) memory seen as (K, X, Y, Z), as torch.argmax takes."""
    gen = torch.Generator().manual_seed(4)
    store = torch.randint(0, 3, (6, 5, 4, 4), generator=gen).float()  # many exact ties
    store[0, 0, 1] = torch.tensor([2.0, 2.0, 1.0, 2.0])  # a tie: the first class
    scores = store.permute(3, 0, 1, 2)
    labels = class_argmax(scores)
    assert labels.dtype == torch.uint8
    assert labels[0, 0, 1] == 0
    assert torch.equal(labels, class_argmax(scores.contiguous()))  # the class-by-class form
    store[0, 0, 0] = torch.tensor([1.0, float("nan"), 2.0, float("nan")])  # the first NaN wins
    assert class_argmax(scores)[0, 0, 0] == 1
