"""Figures: overlays on representative slices, training curves, ROC curves, confusion matrices.

matplotlib is imported, and its non-interactive Agg backend selected, inside each function, so
importing this module neither loads matplotlib nor changes a notebook's backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medimg.errors import GeometryError
from medimg.io.writing import atomic_path
from medimg.typing import PathLike

__all__ = [
    "representative_slices",
    "save_confusion_figure",
    "save_overlay_figure",
    "save_roc_figure",
    "save_training_curves",
]


def representative_slices(reference: NDArray[Any], *, count: int = 3) -> list[int]:
    """Indices along the last axis: spread over the foreground's extent, busiest slice included.

    Falls back to evenly spaced slices when ``reference`` has no foreground.

    Examples
    --------
    >>> ref = np.zeros((4, 4, 10), np.uint8); ref[1:3, 1:3, 4:8] = 1
    >>> representative_slices(ref)
    [4, 6, 7]
    """
    n = reference.shape[-1]
    area = (reference > 0).reshape(-1, n).sum(axis=0)
    busy = np.flatnonzero(area)
    if busy.size == 0:
        return sorted({int(i) for i in np.linspace(0, n - 1, count + 2)[1:-1].round()})
    spread = np.linspace(busy[0], busy[-1], count).round().astype(int)
    chosen = {int(i) for i in spread[[0, -1]]} | {int(area.argmax())}
    for i in spread:
        if len(chosen) >= count:
            break
        chosen.add(int(i))
    return sorted(chosen)


def _figure_module() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_overlay_figure(
    image: NDArray[Any],
    prediction: NDArray[Any],
    reference: NDArray[Any],
    path: PathLike,
    *,
    title: str = "",
    overwrite: bool = False,
) -> Path:
    """PNG with one row per representative slice: reference overlay, prediction overlay.

    Parameters
    ----------
    image, prediction, reference : (X, Y, Z) ndarray
        Image and label maps on one grid; slices are taken along Z and shown with X to the
        right.
    path : path-like
        Output ``.png``.
    title : str
        Figure title (e.g. the case id and its Dice).
    overwrite : bool
        Replace an existing file.

    Raises
    ------
    GeometryError
        When the three arrays are not 3D arrays of one shape.
    """
    if not (image.ndim == 3 and image.shape == prediction.shape == reference.shape):
        raise GeometryError(
            "image, prediction and reference must be 3D arrays of one shape, got "
            f"{image.shape}, {prediction.shape} and {reference.shape}"
        )
    plt = _figure_module()
    slices = representative_slices(reference)
    fig, axes = plt.subplots(len(slices), 2, figsize=(6, 3 * len(slices)), squeeze=False)
    top = max(int(reference.max()), int(prediction.max()), 1)
    for row, z in enumerate(slices):
        for col, (labels, name) in enumerate(
            ((reference, "reference"), (prediction, "prediction"))
        ):
            ax = axes[row][col]
            ax.imshow(image[:, :, z].T, cmap="gray", origin="lower")
            overlay = np.ma.masked_equal(labels[:, :, z].T, 0)
            ax.imshow(overlay, cmap="tab10", vmin=0, vmax=max(top, 9), alpha=0.5, origin="lower")
            ax.set_title(f"{name}, slice {z}", fontsize=8)
            ax.axis("off")
    fig.suptitle(title, fontsize=9)
    return _save(fig, plt, Path(path), overwrite)


def save_training_curves(
    history: Mapping[str, Sequence[float]],
    path: PathLike,
    *,
    overwrite: bool = False,
) -> Path:
    """PNG of training curves, one panel per series (``{"train_loss": [...], "val_dice": [...]}``).

    A series may hold NaN for epochs without a value (validation every few epochs).
    """
    plt = _figure_module()
    names = [n for n, values in history.items() if len(values)]
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(4 * max(len(names), 1), 3))
    for ax, name in zip(np.atleast_1d(axes), names, strict=False):
        values = np.asarray(history[name], dtype=float)
        epochs = np.arange(1, values.size + 1)
        keep = np.isfinite(values)
        ax.plot(epochs[keep], values[keep], marker=".")
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, plt, Path(path), overwrite)


def save_roc_figure(
    y_true: ArrayLike,
    probabilities: ArrayLike,
    class_names: Sequence[str],
    path: PathLike,
    *,
    overwrite: bool = False,
) -> Path:
    """PNG of ROC curves: the positive class for two classes, one-vs-rest for more.

    ``y_true`` holds class indices and ``probabilities`` is ``(N, K)``, as for
    :func:`~medimg.evaluation.classification.roc_auc`; each curve's legend gives its AUC. A class
    without positives or negatives in ``y_true`` has no curve.
    """
    from medimg.evaluation.classification import _binary_auc, roc_curve

    y = np.asarray(y_true).astype(np.int64).ravel()
    p = np.asarray(probabilities, dtype=np.float64)
    plt = _figure_module()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for k in [1] if p.shape[1] == 2 else range(p.shape[1]):
        positive = y == k
        if positive.all() or not positive.any():
            continue
        fpr, tpr = roc_curve(positive, p[:, k])
        auc = _binary_auc(positive, p[:, k])
        ax.plot(fpr, tpr, label=f"{class_names[k]} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, plt, Path(path), overwrite)


def save_confusion_figure(
    matrix: ArrayLike, class_names: Sequence[str], path: PathLike, *, overwrite: bool = False
) -> Path:
    """PNG of a confusion matrix (rows true, columns predicted) with its counts.

    Raises
    ------
    ValueError
        When ``matrix`` is not ``(K, K)`` with ``K = len(class_names)``.
    """
    m = np.asarray(matrix, dtype=np.int64)
    k = len(class_names)
    if m.shape != (k, k):
        raise ValueError(f"matrix must be ({k}, {k}) for {k} class names, got shape {m.shape}")
    plt = _figure_module()
    fig, ax = plt.subplots(figsize=(1.2 * k + 2.5, 1.2 * k + 2))
    ax.imshow(m, cmap="Blues")
    for (i, j), count in np.ndenumerate(m):
        dark = count > m.max() / 2
        ax.text(j, i, str(count), ha="center", va="center", color="white" if dark else "black")
    ax.set_xticks(range(k), list(class_names), rotation=45, ha="right")
    ax.set_yticks(range(k), list(class_names))
    ax.set(xlabel="predicted", ylabel="true")
    fig.tight_layout()
    return _save(fig, plt, Path(path), overwrite)


def _save(fig: Any, plt: Any, path: Path, overwrite: bool) -> Path:
    try:
        with atomic_path(path, overwrite=overwrite) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path
