"""Figures: overlays, training curves, ROC curves, confusion matrices, FROC curves, box slices.

matplotlib is imported, and its non-interactive Agg backend selected, inside each function, so
importing this module neither loads matplotlib nor changes a notebook's backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medimg.errors import GeometryError
from medimg.io.writing import atomic_path
from medimg.typing import PathLike

if TYPE_CHECKING:
    from medimg.evaluation.detection import Detection, FrocResult, Lesion
    from medimg.evaluation.published import PublishedFroc

__all__ = [
    "representative_slices",
    "save_confusion_figure",
    "save_detection_figure",
    "save_froc_figure",
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


def save_froc_figure(
    result: FrocResult,
    path: PathLike,
    *,
    published: Sequence[PublishedFroc] = (),
    title: str = "",
    overwrite: bool = False,
) -> Path:
    """PNG of a FROC curve (log2 false positives per scan), with its CPM in the legend.

    Parameters
    ----------
    result : FrocResult
        Measured FROC (:func:`~medimg.evaluation.detection.froc`); its sensitivities at the
        rates are marked, with their bootstrap interval when it has one.
    path : path-like
        Output ``.png``.
    published : sequence of PublishedFroc
        Figures published by others (e.g.
        :data:`~medimg.evaluation.published.PUBLISHED_LUNA16`), drawn grey and dashed and
        labelled "published", never as measured; one with only a CPM is listed in the legend.
    title : str
        Figure title.
    overwrite : bool
        Replace an existing file.
    """
    plt = _figure_module()
    fig, ax = plt.subplots(figsize=(6.0, 5.2))
    rates = np.asarray(result.fp_rates)
    fps, sens = np.asarray(result.curve_fp_per_scan), np.asarray(result.curve_sensitivity)
    lo, hi = rates.min() / 2, rates.max() * 2
    # from the left edge (its LUNA16 value) over the operating points, then flat to the right
    keep = (fps > lo) & (fps < hi)
    ax.step(
        np.concatenate([[lo], fps[keep], [hi]]),
        np.concatenate([np.interp([lo], fps, sens), sens[keep], np.interp([hi], fps, sens)]),
        where="post",
        color="tab:blue",
        label=f"measured here (CPM {result.cpm:.3f}, {result.n_lesions} lesions, "
        f"{result.n_scans} scans)",
    )
    at = np.asarray(result.sensitivities)
    if result.sensitivity_ci is not None:
        ci = np.asarray(result.sensitivity_ci).T
        ax.errorbar(rates, at, yerr=np.abs(ci - at), fmt="o", color="tab:blue", capsize=3)
    else:
        ax.plot(rates, at, "o", color="tab:blue")
    for entry, style in zip(published, ("s--", "^--", "D--", "v--"), strict=False):
        name = f"{entry.name} (published, not measured here): CPM {entry.cpm:.3f}"
        if entry.sensitivities is None:
            ax.plot([], [], " ", label=name)
        else:
            ax.plot(entry.fp_rates, entry.sensitivities, style, color="grey", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(rates, [f"{r:g}" if r >= 1 else f"1/{round(1 / r)}" for r in rates])
    ax.set(xlim=(lo, hi), ylim=(0, 1.02), xlabel="false positives per scan")
    ax.set_ylabel("sensitivity")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=7, frameon=False)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, plt, Path(path), overwrite)


def _slices_with_boxes(boxes: Sequence[tuple[NDArray[Any], NDArray[Any]]], n: int) -> list[int]:
    """Slice indices through the centres of up to 3 boxes (given best first), else the middle."""
    chosen: list[int] = []
    for lo, hi in boxes:
        z = int(np.clip(round((lo[2] + hi[2]) / 2), 0, n - 1))
        if z not in chosen:
            chosen.append(z)
        if len(chosen) == 3:
            break
    return sorted(chosen) or [n // 2]


def save_detection_figure(
    image: NDArray[Any],
    affine: ArrayLike,
    lesions: Sequence[Lesion],
    detections: Sequence[Detection],
    path: PathLike,
    *,
    min_score: float = 0.0,
    title: str = "",
    overwrite: bool = False,
) -> Path:
    """PNG of axial slices with true (green) and predicted (red, with score) boxes.

    Parameters
    ----------
    image : (X, Y, Z) ndarray
        Image on its stored grid; slices are taken along Z and shown with X to the right.
    affine : (4, 4) array_like
        Voxel-to-world matrix of that grid; world boxes are drawn as the voxel box covering
        them (:func:`~medimg.evaluation.lesions.world_box_to_voxel`).
    lesions, detections : sequence of Lesion, sequence of Detection
        True lesions and detections in world mm; the slices pass through the centres of up to
        three true lesions (the largest first), else of the highest-scored detections.
    path : path-like
        Output ``.png``.
    min_score : float
        Detections scored below this are not drawn.
    title : str
        Figure title.
    overwrite : bool
        Replace an existing file.

    Raises
    ------
    GeometryError
        When ``image`` is not 3D or ``affine`` is not an invertible 4x4 matrix.
    """
    from matplotlib.patches import Rectangle

    from medimg.evaluation.lesions import world_box_to_voxel

    if image.ndim != 3:
        raise GeometryError(f"image must be a 3D array (X, Y, Z), got shape {image.shape}")
    ranked = sorted(lesions, key=lambda les: -les.diameter_mm)
    true_vox = [world_box_to_voxel(les.iou_box(), affine) for les in ranked]
    shown = sorted((d for d in detections if d.score >= min_score), key=lambda d: -d.score)
    pred_vox = [(world_box_to_voxel(d.box, affine), d.score) for d in shown]
    slices = _slices_with_boxes(true_vox or [b for b, _ in pred_vox], image.shape[2])
    nx, ny = image.shape[:2]
    plt = _figure_module()
    fig, axes = plt.subplots(1, len(slices), figsize=(4 * len(slices), 4.4), squeeze=False)
    for ax, z in zip(axes[0], slices, strict=True):
        ax.imshow(image[:, :, z].T, cmap="gray", origin="lower")
        boxes = [(b, "lime", "") for b in true_vox] + [
            (b, "red", f"{score:.2f}") for b, score in pred_vox
        ]
        cell_lo, cell_hi = np.array([-0.5, -0.5, z - 0.5]), np.array([nx - 0.5, ny - 0.5, z + 0.5])
        for (lo, hi), colour, text in boxes:
            if np.any(lo > cell_hi) or np.any(hi < cell_lo):  # misses this slice's voxels
                continue
            ax.add_patch(
                Rectangle(
                    (lo[0], lo[1]), hi[0] - lo[0], hi[1] - lo[1], fill=False, color=colour, lw=1.5
                )
            )
            if text:
                ax.text(
                    lo[0],
                    hi[1] + 0.5,
                    text,
                    color="white",
                    fontsize=7,
                    va="bottom",
                    bbox={"facecolor": colour, "edgecolor": "none", "pad": 1, "alpha": 0.8},
                    clip_on=True,
                )
        ax.set_title(f"slice {z}", fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{title}  (green: truth, red: predicted with score)".strip(), fontsize=9)
    fig.tight_layout()
    return _save(fig, plt, Path(path), overwrite)


def _save(fig: Any, plt: Any, path: Path, overwrite: bool) -> Path:
    try:
        with atomic_path(path, overwrite=overwrite) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path
