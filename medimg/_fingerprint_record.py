"""The saved form of a dataset fingerprint: :class:`Fingerprint` and its JSON document."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from medimg.errors import FingerprintError
from medimg.io.integrity import FileIdentity
from medimg.modality import Modality

FINGERPRINT_VERSION = 1
"""Version of the JSON layout written by :meth:`Fingerprint.to_json`."""

_FIX = "recompute it with `medimg fingerprint MANIFEST --force`"


@dataclass(frozen=True, kw_only=True)
class ChannelStats:
    """Intensity statistics of one input channel over the dataset's sampled foreground voxels.

    Attributes
    ----------
    mean, std : float
        Mean and (population) standard deviation of all foreground voxels (exact).
    percentile_00_5, percentile_99_5 : float
        0.5th and 99.5th percentiles of the sampled voxels (``numpy.percentile``, linear);
        exact when no case has more foreground voxels than ``samples_per_case``.
    median : float
        Median of the sampled voxels.
    min, max : float
        Minimum and maximum of all foreground voxels (exact).
    n_voxels : int
        Number of foreground voxels (before subsampling).
    """

    mean: float
    std: float
    percentile_00_5: float
    percentile_99_5: float
    median: float
    min: float
    max: float
    n_voxels: int


@dataclass(frozen=True)
class FingerprintInput:
    """One input file a fingerprint was computed from.

    Attributes
    ----------
    case_id : str
        The manifest case.
    role : str
        ``"image"`` (``"image[k]"`` for the k-th of several), ``"label"``; for a DICOM series
        folder one entry per file, ``"image: <path inside the folder>"``.
    identity : FileIdentity
        Size, SHA-256 and stat fields when the statistics were computed.
    """

    case_id: str
    role: str
    identity: FileIdentity

    def describe(self) -> str:
        """``case c1 image (/data/c1.nii.gz)``: for messages."""
        return f"case {self.case_id} {self.role} ({self.identity.path})"


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
    inputs : tuple of FingerprintInput
        Identity of every file the statistics were computed from (see the module docstring);
        provenance, not statistics: it takes no part in equality or in a chain's cache key.
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
    inputs: tuple[FingerprintInput, ...] = field(default=(), compare=False)

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
        FingerprintError
            If the text is not a JSON object, its ``fingerprint_version`` is not
            :data:`FINGERPRINT_VERSION`, or a field is missing or of the wrong type (the
            message names it). ``FingerprintError`` is a ``ValueError``.
        """
        try:
            record = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise FingerprintError(
                f"fingerprint document is not valid JSON ({type(exc).__name__}: {exc})", _FIX
            ) from None
        if not isinstance(record, dict):
            raise FingerprintError(
                f"fingerprint document must be a JSON object, got {type(record).__name__}", _FIX
            )
        version = record.pop("fingerprint_version", None)
        if version != FINGERPRINT_VERSION:
            raise FingerprintError(
                f"fingerprint_version must be {FINGERPRINT_VERSION}, got {version!r}", _FIX
            )
        try:
            return cls._from_record(record)
        except KeyError as exc:
            raise FingerprintError(f"fingerprint document lacks the key {exc}", _FIX) from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise FingerprintError(
                f"fingerprint document has a field of the wrong type or value "
                f"({type(exc).__name__}: {exc})",
                _FIX,
            ) from None

    @classmethod
    def _from_record(cls, record: dict[str, Any]) -> Fingerprint:
        lowres = record["lowres_axis"]
        if lowres is not None and (isinstance(lowres, bool) or not isinstance(lowres, int)):
            raise TypeError(f"lowres_axis must be an integer or null, got {lowres!r}")
        return cls(
            manifest_sha256=str(record["manifest_sha256"]),
            modalities=tuple(Modality(m) for m in record["modalities"]),
            n_cases=int(record["n_cases"]),
            spacings_mm=tuple(tuple(float(v) for v in s) for s in record["spacings_mm"]),
            shapes_vox=tuple(tuple(int(v) for v in s) for s in record["shapes_vox"]),
            median_spacing_mm=tuple(float(v) for v in record["median_spacing_mm"]),
            p10_spacing_mm=tuple(float(v) for v in record["p10_spacing_mm"]),
            median_shape_vox=tuple(int(v) for v in record["median_shape_vox"]),
            anisotropy_ratio=float(record["anisotropy_ratio"]),
            anisotropic=bool(record["anisotropic"]),
            lowres_axis=lowres,
            intensity=tuple(ChannelStats(**c) for c in record["intensity"]),
            intensity_source=str(record["intensity_source"]),
            label_fractions={int(k): float(v) for k, v in record["label_fractions"].items()},
            class_counts={str(k): int(v) for k, v in record["class_counts"].items()},
            samples_per_case=int(record["samples_per_case"]),
            seed=int(record["seed"]),
            inputs=tuple(_input_from_json(r) for r in record.get("inputs", ())),
        )

    def statistics_json(self) -> str:
        """:meth:`to_json` without ``inputs``: what configures preprocessing (cache keys)."""
        record = json.loads(self.to_json())
        record.pop("inputs", None)
        return json.dumps(record, sort_keys=True)


def _input_from_json(record: Any) -> FingerprintInput:
    identity = FileIdentity.from_json(record.get("identity")) if isinstance(record, dict) else None
    if identity is None:
        raise ValueError(f"inputs must hold case_id, role and identity records, got {record!r}")
    return FingerprintInput(str(record["case_id"]), str(record["role"]), identity)
