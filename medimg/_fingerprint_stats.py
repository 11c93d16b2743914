"""The statistics of a fingerprint: cases read one at a time into running sums and samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from medimg._fingerprint_record import ChannelStats, Fingerprint

if TYPE_CHECKING:
    from medimg.io import Volume
    from medimg.manifests import Manifest, ResolvedCase

ANISOTROPY_THRESHOLD = 3.0
"""A dataset is anisotropic when its coarsest median spacing is at least this many times its
finest (nnU-Net's threshold for separate low-resolution-axis resampling)."""


@dataclass
class LoadedCase:
    """One case's arrays as the statistics need them."""

    channels: list[NDArray[Any]]  # each (X, Y[, Z]) in RAS order
    spacing_mm: tuple[float, ...]
    label: NDArray[Any] | None
    class_index: int | None


def load_case(manifest: Manifest, case: ResolvedCase) -> LoadedCase:
    """Read a case's images (files or DICOM series folders) and label, in RAS voxel order."""
    from medimg.io import read_image

    modalities = manifest.modalities
    if len(case.images) == 1 and len(modalities) > 1:
        volumes = [read_image(case.images[0], ndim=None)]
    else:
        volumes = [
            read_image(p, ndim=m.spatial_dims) for p, m in zip(case.images, modalities, strict=True)
        ]
    ras = [_ras_array(v) for v in volumes]
    channels = [c for array, _ in ras for c in array]
    label = None
    if case.label is not None:
        ndim = len(volumes[0].spatial_shape)
        label = _ras_array(read_image(case.label, ndim=ndim))[0][0]
    return LoadedCase(channels, ras[0][1], label, case.class_index)


def _ras_array(volume: Volume) -> tuple[NDArray[Any], tuple[float, ...]]:
    """Channel-first array and spacing in RAS axis order (2D planes too)."""
    ras = volume.to_ras()
    return ras.array, tuple(ras.spacing_mm)


class Accumulator:
    """Running per-channel sums and bounded samples; label and class counts."""

    def __init__(self, n_channels: int) -> None:
        self.n = np.zeros(n_channels, np.int64)
        self.mean = np.zeros(n_channels, np.float64)
        self.m2 = np.zeros(n_channels, np.float64)  # sum of squared deviations (Chan et al.)
        self.min = np.full(n_channels, np.inf)
        self.max = np.full(n_channels, -np.inf)
        self.samples: list[list[NDArray[np.float64]]] = [[] for _ in range(n_channels)]
        self.spacings: list[tuple[float, ...]] = []
        self.shapes: list[tuple[int, ...]] = []
        self.label_counts: dict[int, int] = {}
        self.label_voxels = 0
        self.classes: dict[int, int] = {}
        self.foreground = False

    def add(self, case: LoadedCase, per_case: int, rng: np.random.Generator) -> None:
        self.spacings.append(case.spacing_mm)
        self.shapes.append(tuple(int(n) for n in case.channels[0].shape))
        mask = None
        if case.label is not None:
            mask = case.label > 0
            self.foreground = True
            values, counts = np.unique(case.label, return_counts=True)
            for v, k in zip(values.tolist(), counts.tolist(), strict=True):
                self.label_counts[int(v)] = self.label_counts.get(int(v), 0) + int(k)
            self.label_voxels += int(case.label.size)
        if case.class_index is not None:
            self.classes[case.class_index] = self.classes.get(case.class_index, 0) + 1
        for c, channel in enumerate(case.channels):
            voxels = (channel[mask] if mask is not None else channel.ravel()).astype(np.float64)
            if voxels.size == 0:
                continue
            self._merge_moments(c, voxels)
            self.min[c] = min(self.min[c], voxels.min())
            self.max[c] = max(self.max[c], voxels.max())
            if voxels.size > per_case:
                voxels = rng.choice(voxels, per_case, replace=False)
            self.samples[c].append(voxels)

    def _merge_moments(self, c: int, voxels: NDArray[np.float64]) -> None:
        n_a, n_b = int(self.n[c]), int(voxels.size)
        mean_b = float(voxels.mean())
        m2_b = float(np.square(voxels - mean_b).sum())
        delta, n = mean_b - self.mean[c], n_a + n_b
        self.mean[c] += delta * n_b / n
        self.m2[c] += m2_b + delta * delta * n_a * n_b / n
        self.n[c] = n

    def finish(self, manifest: Manifest, sha: str, per_case: int, seed: int) -> Fingerprint:
        spacings = np.asarray(self.spacings, np.float64)
        median_spacing = tuple(float(v) for v in np.median(spacings, axis=0))
        ratio = max(median_spacing) / min(median_spacing)
        anisotropic = ratio >= ANISOTROPY_THRESHOLD
        declared = [d.value for d in manifest.labels or ()]
        fractions = (
            {
                v: self.label_counts.get(v, 0) / self.label_voxels
                for v in sorted({*declared, *self.label_counts})
            }
            if self.label_voxels
            else {}
        )
        names = manifest.classes or ()
        return Fingerprint(
            manifest_sha256=sha,
            modalities=manifest.modalities,
            n_cases=len(self.spacings),
            spacings_mm=tuple(self.spacings),
            shapes_vox=tuple(self.shapes),
            median_spacing_mm=median_spacing,
            p10_spacing_mm=tuple(float(v) for v in np.percentile(spacings, 10, axis=0)),
            median_shape_vox=tuple(int(np.rint(v)) for v in np.median(self.shapes, axis=0)),
            anisotropy_ratio=float(ratio),
            anisotropic=bool(anisotropic),
            lowres_axis=int(np.argmax(median_spacing)) if anisotropic else None,
            intensity=tuple(self._stats(c) for c in range(len(self.n))),
            intensity_source="foreground" if self.foreground else "all",
            label_fractions=fractions,
            class_counts={name: self.classes.get(i, 0) for i, name in enumerate(names)},
            samples_per_case=per_case,
            seed=seed,
        )

    def _stats(self, c: int) -> ChannelStats:
        n = int(self.n[c])
        if n == 0:
            nan = float("nan")
            return ChannelStats(
                mean=nan,
                std=nan,
                percentile_00_5=nan,
                percentile_99_5=nan,
                median=nan,
                min=nan,
                max=nan,
                n_voxels=0,
            )
        mean, var = self.mean[c], self.m2[c] / n
        sample = np.concatenate(self.samples[c])
        p005, p50, p995 = np.percentile(sample, [0.5, 50.0, 99.5])
        return ChannelStats(
            mean=float(mean),
            std=float(np.sqrt(var)),
            percentile_00_5=float(p005),
            percentile_99_5=float(p995),
            median=float(p50),
            min=float(self.min[c]),
            max=float(self.max[c]),
            n_voxels=n,
        )
