"""Dataset fingerprint: the statistics of a manifest's data that configure preprocessing.

The statistics are those nnU-Net v2 computes in its ``DatasetFingerprintExtractor`` (spacings,
shapes, foreground intensity percentiles) plus label voxel fractions and class counts. All
spatial quantities are in RAS voxel order (``Volume.to_ras()``), spacings in millimetres.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from medimg.modality import Modality

__all__ = ["ANISOTROPY_THRESHOLD", "FINGERPRINT_VERSION", "ChannelStats", "Fingerprint"]

FINGERPRINT_VERSION = 1
"""Version of the JSON layout written by :meth:`Fingerprint.to_json`."""

ANISOTROPY_THRESHOLD = 3.0
"""A dataset is anisotropic when its coarsest median spacing is at least this many times its
finest (nnU-Net's threshold for separate low-resolution-axis resampling)."""


@dataclass(frozen=True, kw_only=True)
class ChannelStats:
    """Intensity statistics of one input channel over the dataset's sampled foreground voxels.

    Attributes
    ----------
    mean, std : float
        Mean and (population) standard deviation of the sampled voxels.
    percentile_00_5, percentile_99_5 : float
        0.5th and 99.5th percentiles (linear interpolation, as ``numpy.percentile``).
    median, min, max : float
        Median, minimum and maximum of the sampled voxels.
    n_voxels : int
        Number of voxels the statistics were computed from.
    """

    mean: float
    std: float
    percentile_00_5: float
    percentile_99_5: float
    median: float
    min: float
    max: float
    n_voxels: int


@dataclass(frozen=True, kw_only=True)
class Fingerprint:
    """Statistics of a dataset that configure preprocessing, saved next to its manifest.

    Attributes
    ----------
    manifest_sha256 : str
        SHA-256 of the manifest file's bytes when the fingerprint was computed; a fingerprint
        is reused only while it matches.
    modalities : tuple of Modality
        Modality of each input channel, in channel order.
    n_cases : int
        Number of cases the statistics cover.
    spacings_mm : tuple of tuple of float
        Voxel spacing of every case, RAS axis order, millimetres.
    shapes_vox : tuple of tuple of int
        Spatial shape of every case, RAS axis order, voxels.
    median_spacing_mm, p10_spacing_mm : tuple of float
        Per-axis median and 10th percentile of `spacings_mm`.
    median_shape_vox : tuple of int
        Per-axis median of `shapes_vox`, rounded to whole voxels.
    anisotropy_ratio : float
        ``max(median_spacing_mm) / min(median_spacing_mm)``.
    anisotropic : bool
        ``anisotropy_ratio >= ANISOTROPY_THRESHOLD``.
    lowres_axis : int or None
        RAS axis with the coarsest median spacing when `anisotropic`, else None.
    intensity : tuple of ChannelStats
        One entry per input channel, from foreground voxels (label > 0) when the dataset has
        label maps, else from all voxels (see `intensity_source`).
    intensity_source : str
        ``"foreground"`` or ``"all"``.
    label_fractions : dict of int to float
        Fraction of all label-map voxels (all cases together) holding each declared label value,
        background included; empty for datasets without label maps.
    class_counts : dict of str to int
        Number of cases per classification class; empty for segmentation datasets.
    samples_per_case : int
        Upper bound on foreground voxels sampled per case and channel.
    seed : int
        Seed of the voxel subsampling.
    """

    manifest_sha256: str
    modalities: tuple[Modality, ...]
    n_cases: int
    spacings_mm: tuple[tuple[float, ...], ...]
    shapes_vox: tuple[tuple[int, ...], ...]
    median_spacing_mm: tuple[float, ...]
    p10_spacing_mm: tuple[float, ...]
    median_shape_vox: tuple[int, ...]
    anisotropy_ratio: float
    anisotropic: bool
    lowres_axis: int | None
    intensity: tuple[ChannelStats, ...]
    intensity_source: str
    label_fractions: dict[int, float] = field(default_factory=dict)
    class_counts: dict[str, int] = field(default_factory=dict)
    samples_per_case: int
    seed: int

    def to_json(self) -> str:
        """Serialize to a JSON document (with a ``fingerprint_version`` key)."""
        record: dict[str, Any] = {"fingerprint_version": FINGERPRINT_VERSION, **asdict(self)}
        record["modalities"] = [m.value for m in self.modalities]
        record["label_fractions"] = {str(k): v for k, v in self.label_fractions.items()}
        return json.dumps(record, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Fingerprint:
        """Parse a document written by :meth:`to_json`.

        Raises
        ------
        ValueError
            If the document's ``fingerprint_version`` is not :data:`FINGERPRINT_VERSION`.
        """
        record = json.loads(text)
        version = record.pop("fingerprint_version", None)
        if version != FINGERPRINT_VERSION:
            raise ValueError(
                f"fingerprint_version must be {FINGERPRINT_VERSION}, got {version!r}; "
                "recompute it with `medimg fingerprint MANIFEST --force`"
            )
        return cls(
            manifest_sha256=record["manifest_sha256"],
            modalities=tuple(Modality(m) for m in record["modalities"]),
            n_cases=int(record["n_cases"]),
            spacings_mm=tuple(tuple(float(v) for v in s) for s in record["spacings_mm"]),
            shapes_vox=tuple(tuple(int(v) for v in s) for s in record["shapes_vox"]),
            median_spacing_mm=tuple(float(v) for v in record["median_spacing_mm"]),
            p10_spacing_mm=tuple(float(v) for v in record["p10_spacing_mm"]),
            median_shape_vox=tuple(int(v) for v in record["median_shape_vox"]),
            anisotropy_ratio=float(record["anisotropy_ratio"]),
            anisotropic=bool(record["anisotropic"]),
            lowres_axis=record["lowres_axis"],
            intensity=tuple(ChannelStats(**c) for c in record["intensity"]),
            intensity_source=str(record["intensity_source"]),
            label_fractions={int(k): float(v) for k, v in record["label_fractions"].items()},
            class_counts={str(k): int(v) for k, v in record["class_counts"].items()},
            samples_per_case=int(record["samples_per_case"]),
            seed=int(record["seed"]),
        )
