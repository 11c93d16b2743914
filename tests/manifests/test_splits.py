"""k-fold splits: deterministic, balanced, stratified, stable when cases are appended."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from medimg.errors import ConfigError
from medimg.manifests import Manifest
from medimg.manifests.splits import Splits, load_or_make_splits, make_splits, splits_path


def cls_manifest(n: int, *, order: list[int] | None = None) -> dict[str, Any]:
    ids = order if order is not None else list(range(n))
    return {
        "schema_version": 1,
        "name": "cls",
        "channels": [{"name": "XR", "modality": "XR"}],
        "classes": ["normal", "nodule"],
        # 2 of every 3 cases are 'normal'
        "training": [
            {
                "id": f"c{i:02d}",
                "image": f"{i}.nii.gz",
                "class": "nodule" if i % 3 == 0 else "normal",
            }
            for i in ids
        ],
    }


def test_balanced_stratified_and_independent_of_file_order() -> None:
    manifest = Manifest.model_validate(cls_manifest(17))
    splits = make_splits(manifest, 5, seed=1)
    assert splits.stratified
    sizes = Counter(splits.assignments.values())
    assert sorted(sizes.values()) == [3, 3, 3, 4, 4]  # 17 = 4 + 4 + 3 + 3 + 3
    nodules = Counter(f for i, f in splits.assignments.items() if int(i[1:]) % 3 == 0)
    assert sorted(nodules.values()) == [1, 1, 1, 1, 2]  # 6 nodule cases over 5 folds
    shuffled = Manifest.model_validate(cls_manifest(17, order=list(range(16, -1, -1))))
    assert make_splits(shuffled, 5, seed=1).assignments == splits.assignments
    assert make_splits(manifest, 5, seed=2).assignments != splits.assignments
    train, val = splits.fold(0)
    assert set(train) | set(val) == set(splits.assignments)
    assert not set(train) & set(val)


def test_appending_cases_keeps_every_assignment(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps(cls_manifest(12)), encoding="utf-8")
    first = load_or_make_splits(path, 4, seed=0)
    assert splits_path(path) == tmp_path / "m.splits.json"
    saved = json.loads(splits_path(path).read_text())
    assert saved["folds"][0]["val"] == list(first.fold(0)[1])
    path.write_text(json.dumps(cls_manifest(20)), encoding="utf-8")
    second = load_or_make_splits(path, 4, seed=0)
    assert {i: second.assignments[i] for i in first.assignments} == first.assignments
    assert sorted(Counter(second.assignments.values()).values()) == [5, 5, 5, 5]
    assert Splits.from_json(splits_path(path).read_text()) == second
    with pytest.raises(
        ConfigError, match=r"saved splits have n_folds=4, seed=0, asked for n_folds=3"
    ):
        load_or_make_splits(path, 3, seed=0)
    assert load_or_make_splits(path, 3, seed=0, force=True).n_folds == 3


def test_fold_count_and_index_are_checked() -> None:
    manifest = Manifest.model_validate(cls_manifest(3))
    with pytest.raises(
        ConfigError, match=r"n_folds must be between 2 and the 3 training cases, got 4"
    ):
        make_splits(manifest, 4)
    with pytest.raises(ValueError, match=r"fold must be in 0\.\.2, got 3"):
        make_splits(manifest, 3).fold(3)
