"""Deterministic k-fold cross-validation splits, stored beside the manifest, stable on append.

Method. Training cases are placed one at a time in the order of a SHA-256 hash of
``"{seed}:{case_id}"`` (so the order depends on the seed and the ids, never on file order).
Each goes to the fold holding the fewest cases of its stratum (its class for classification,
one stratum otherwise), ties broken by the fold's total size, then by the lowest fold index.
This gives folds whose sizes, and per-class counts, differ by at most one.

Stability. The assignment is saved as ``<manifest stem>.splits.json``. When the manifest
changes, cases already assigned keep their fold, removed cases are dropped, and only new cases
are placed by the rule above, so appending cases never moves an existing case to another fold
(a pure ``hash mod k`` rule would also be stable, but neither balanced nor stratified).
The saved ``folds`` list uses nnU-Net's ``splits_final.json`` layout
(``[{"train": [...], "val": [...]}, ...]``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from medimg.errors import ConfigError
from medimg.manifests.schema import Manifest
from medimg.typing import PathLike

__all__ = ["Splits", "load_or_make_splits", "make_splits", "splits_path"]

_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class Splits:
    """A k-fold assignment of a manifest's training cases.

    Attributes
    ----------
    n_folds : int
    seed : int
    stratified : bool
        Whether folds were balanced per class.
    assignments : dict of str to int
        Fold of each training case id, in manifest order.
    """

    n_folds: int
    seed: int
    stratified: bool
    assignments: dict[str, int]

    def fold(self, k: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``(train_ids, val_ids)`` of fold `k`.

        Raises
        ------
        ValueError
            If `k` is not in ``range(n_folds)``.
        """
        if not 0 <= k < self.n_folds:
            raise ValueError(f"fold must be in 0..{self.n_folds - 1}, got {k}")
        train = tuple(i for i, f in self.assignments.items() if f != k)
        val = tuple(i for i, f in self.assignments.items() if f == k)
        return train, val

    def to_json(self) -> str:
        """JSON with the assignments and nnU-Net-style ``folds``."""
        record = {
            "splits_version": _VERSION,
            "n_folds": self.n_folds,
            "seed": self.seed,
            "stratified": self.stratified,
            "assignments": self.assignments,
            "folds": [
                dict(zip(("train", "val"), map(list, self.fold(k)), strict=True))
                for k in range(self.n_folds)
            ],
        }
        return json.dumps(record, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Splits:
        """Parse :meth:`to_json` output."""
        record = json.loads(text)
        return cls(
            n_folds=int(record["n_folds"]),
            seed=int(record["seed"]),
            stratified=bool(record["stratified"]),
            assignments={str(k): int(v) for k, v in record["assignments"].items()},
        )


def _rank(seed: int, case_id: str) -> str:
    return hashlib.sha256(f"{seed}:{case_id}".encode()).hexdigest()


def make_splits(
    manifest: Manifest, n_folds: int = 5, *, seed: int = 0, previous: Splits | None = None
) -> Splits:
    """Assign the training cases of `manifest` to `n_folds` folds (see the module docstring).

    Parameters
    ----------
    manifest : Manifest
    n_folds : int
        At least 2 and at most the number of training cases.
    seed : int
        Seed of the placement order.
    previous : Splits, optional
        Earlier assignment to keep (same `n_folds` and `seed`); only new cases are placed.

    Returns
    -------
    Splits

    Raises
    ------
    ConfigError
        If `n_folds` is out of range, or `previous` has another `n_folds` or `seed`.
    """
    cases = manifest.training
    if not 2 <= n_folds <= len(cases):
        raise ConfigError(
            f"n_folds must be between 2 and the {len(cases)} training cases, got {n_folds}"
        )
    if previous is not None and (previous.n_folds, previous.seed) != (n_folds, seed):
        raise ConfigError(
            f"saved splits have n_folds={previous.n_folds}, seed={previous.seed}, asked for "
            f"n_folds={n_folds}, seed={seed}; use the saved values, or regenerate (--force)"
        )
    stratum = {c.case_id: c.class_name or "" for c in cases}
    kept = {i: f for i, f in (previous.assignments if previous else {}).items() if i in stratum}
    totals = [0] * n_folds
    per_stratum: list[dict[str, int]] = [{} for _ in range(n_folds)]
    assigned = dict(kept)
    new = sorted((i for i in stratum if i not in kept), key=lambda i: _rank(seed, i))
    for case_id in [*kept, *new]:
        s = stratum[case_id]
        if case_id not in assigned:
            assigned[case_id] = min(
                range(n_folds), key=lambda f: (per_stratum[f].get(s, 0), totals[f], f)
            )
        fold = assigned[case_id]
        totals[fold] += 1
        per_stratum[fold][s] = per_stratum[fold].get(s, 0) + 1
    return Splits(
        n_folds=n_folds,
        seed=seed,
        stratified=manifest.classes is not None,
        assignments={c.case_id: assigned[c.case_id] for c in cases},
    )


def splits_path(manifest_path: PathLike) -> Path:
    """Where the splits of a manifest are stored: ``<stem>.splits.json`` beside it."""
    path = Path(manifest_path)
    return path.with_name(f"{path.stem}.splits.json")


def load_or_make_splits(
    manifest_path: PathLike, n_folds: int = 5, *, seed: int = 0, force: bool = False
) -> Splits:
    """The saved splits of a manifest, updated for added or removed cases, saved again.

    Without a saved file (or with `force`), the splits are made afresh.
    """
    from medimg.io.writing import atomic_path
    from medimg.manifests.load import load_manifest

    manifest = load_manifest(manifest_path, check_files=False)
    out = splits_path(manifest_path)
    previous = None
    if out.is_file() and not force:
        previous = Splits.from_json(out.read_text(encoding="utf-8"))
    splits = make_splits(manifest, n_folds, seed=seed, previous=previous)
    if splits != previous:
        with atomic_path(out, overwrite=True) as tmp:
            tmp.write_text(splits.to_json() + "\n", encoding="utf-8")
    return splits
