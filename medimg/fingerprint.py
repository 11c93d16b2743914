"""Dataset fingerprint: the statistics of a manifest's data that configure preprocessing.

The statistics are those nnU-Net v2 computes in its ``DatasetFingerprintExtractor`` (spacings,
shapes, foreground intensity percentiles) plus label voxel fractions and class counts. All
spatial quantities are in RAS voxel order (``Volume.to_ras()``), spacings in millimetres.

**Reuse.** :func:`load_or_compute_fingerprint` (which the pipelines call before every training
run) reuses the saved ``<stem>.fingerprint.json`` only while the manifest's bytes, the sampling
settings *and every input file's content* are unchanged. Each file the statistics were computed
from (images, labels, every file of a DICOM series folder) is recorded with its
:class:`~medimg.io.integrity.FileIdentity`: size and SHA-256 decide, so rescaling the images
behind an unchanged manifest recomputes (and the log names the file), while a ``touch``, a copy
or a restore does not. Hashing costs one read per file, done once: the recorded ``mtime_ns``,
``ctime_ns`` and inode let an untouched file skip it (``ctime`` is set by the kernel on every
write, so a tool that puts the old ``mtime`` back is still caught). Identities are taken before
a case is read, so a file changed during the computation is caught on the next run. Saved
fingerprints are written atomically (temporary file, then rename); concurrent runs each write
a whole document.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from medimg.io.integrity import FileIdentity, file_identity
from medimg.modality import Modality
from medimg.typing import PathLike

if TYPE_CHECKING:
    from medimg.io import Volume
    from medimg.manifests import Manifest, ResolvedCase

__all__ = [
    "ANISOTROPY_THRESHOLD",
    "DEFAULT_MAX_SAMPLES",
    "FINGERPRINT_VERSION",
    "ChannelStats",
    "Fingerprint",
    "FingerprintInput",
    "FingerprintUpdate",
    "compute_fingerprint",
    "fingerprint_path",
    "load_or_compute_fingerprint",
    "update_fingerprint",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_SAMPLES = 10_000_000
"""Foreground voxels sampled per channel over the whole dataset (split evenly over cases);
nnU-Net v2 uses 10e7 in total, i.e. ``10e7 // n_cases`` per case."""

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


def fingerprint_path(manifest_path: PathLike) -> Path:
    """Where the fingerprint of a manifest is stored: ``<stem>.fingerprint.json`` beside it."""
    path = Path(manifest_path)
    return path.with_name(f"{path.stem}.fingerprint.json")


@dataclass(frozen=True)
class FingerprintUpdate:
    """What :func:`update_fingerprint` did.

    Attributes
    ----------
    fingerprint : Fingerprint
        The saved one (reused) or the new one.
    reused : bool
        Whether the saved fingerprint was still valid.
    reason : str
        Why: ``"manifest and 8 input files unchanged"``, or what changed (the first changed
        file is named), e.g. ``"case c1 image (/data/i1.nii.gz) changed: SHA-256 4f1c... ->
        9ab0..."``.
    """

    fingerprint: Fingerprint
    reused: bool
    reason: str


def load_or_compute_fingerprint(
    manifest_path: PathLike,
    *,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    seed: int = 0,
    force: bool = False,
) -> Fingerprint:
    """The saved fingerprint of a manifest while it and its files are unchanged, else a new one.

    See :func:`update_fingerprint` (this returns its ``fingerprint``).

    Parameters
    ----------
    manifest_path : path-like
        The manifest.
    max_samples : int
        See :func:`compute_fingerprint`.
    seed : int
        Seed of the voxel subsampling.
    force : bool
        Recompute even when a matching fingerprint is saved.

    Returns
    -------
    Fingerprint
    """
    update = update_fingerprint(manifest_path, max_samples=max_samples, seed=seed, force=force)
    return update.fingerprint


def update_fingerprint(
    manifest_path: PathLike,
    *,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    seed: int = 0,
    force: bool = False,
) -> FingerprintUpdate:
    """Reuse the saved fingerprint if still valid, else compute and save it; say which and why.

    The saved file (:func:`fingerprint_path`) is reused when its ``manifest_sha256`` matches
    the manifest's bytes, it was computed with the same sampling settings, and every input file
    has the size and SHA-256 it recorded (files whose size, ``mtime_ns``, ``ctime_ns`` and inode
    are unchanged are not re-read). When only stat fields changed (a ``touch``, a copy) the
    saved file is rewritten with the new ones so the next run skips hashing again. Otherwise
    the fingerprint is computed and written atomically. The decision is logged at INFO.

    Parameters
    ----------
    manifest_path : path-like
        The manifest.
    max_samples : int
        See :func:`compute_fingerprint`.
    seed : int
        Seed of the voxel subsampling.
    force : bool
        Recompute even when a matching fingerprint is saved.

    Returns
    -------
    FingerprintUpdate
    """
    out = fingerprint_path(manifest_path)
    saved: Fingerprint | None = None
    if force:
        reason = "recomputation forced (--force)"
    elif not out.is_file():
        reason = f"no saved fingerprint at {out}"
    else:
        try:
            saved = Fingerprint.from_json(out.read_text(encoding="utf-8"))
        except (ValueError, KeyError, TypeError) as exc:
            reason = f"the saved fingerprint is not readable ({exc})"
        else:
            reused, reason = _check_saved(saved, manifest_path, max_samples, seed)
            if reused is not None:
                if reused.inputs != saved.inputs:  # same content, new stat fields
                    _save(reused, out)
                logger.info("%s: reused (%s)", out, reason)
                return FingerprintUpdate(reused, True, reason)
    logger.info("%s: recomputing: %s", out, reason)
    previous = saved.inputs if saved is not None else ()
    fingerprint = compute_fingerprint(
        manifest_path, max_samples=max_samples, seed=seed, previous=previous
    )
    _save(fingerprint, out)
    return FingerprintUpdate(fingerprint, False, reason)


def _save(fingerprint: Fingerprint, out: Path) -> None:
    from medimg.io.writing import atomic_path

    with atomic_path(out, overwrite=True) as tmp:
        tmp.write_text(fingerprint.to_json() + "\n", encoding="utf-8")


def _check_saved(
    saved: Fingerprint, manifest_path: PathLike, max_samples: int, seed: int
) -> tuple[Fingerprint | None, str]:
    """(the saved fingerprint with refreshed identities, why) or (None, why not)."""
    from medimg.manifests import manifest_sha256

    if saved.manifest_sha256 != manifest_sha256(manifest_path):
        return None, "the manifest changed"
    per_case = _per_case(max_samples, saved.n_cases)
    if (saved.seed, saved.samples_per_case) != (seed, per_case):
        return None, (
            f"sampling settings changed (seed {saved.seed} -> {seed}, samples per case "
            f"{saved.samples_per_case} -> {per_case})"
        )
    if not saved.inputs:
        return None, "the saved fingerprint records no input file identities (older medimg)"
    _, cases = _cases(manifest_path)
    by_path = {i.identity.path: i.identity for i in saved.inputs}
    try:
        current = [
            FingerprintInput(cid, role, file_identity(path, previous=by_path.get(_key(path))))
            for case in cases
            for cid, role, path in _input_files(case)
        ]
    except OSError as exc:
        return None, f"an input file cannot be read ({exc})"
    keys = [(i.case_id, i.role) for i in current]
    if keys != [(i.case_id, i.role) for i in saved.inputs]:
        return None, (
            f"the input files differ: {len(current)} now, {len(saved.inputs)} recorded "
            "(a file added to or removed from a series folder?)"
        )
    changed = [
        (old, new)
        for old, new in zip(saved.inputs, current, strict=True)
        if not new.identity.same_content(old.identity)
    ]
    for old, new in changed:
        logger.info("%s changed: %s", new.describe(), _difference(old.identity, new.identity))
    if changed:
        old, new = changed[0]
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        return None, f"{new.describe()} changed: {_difference(old.identity, new.identity)}{more}"
    return replace(saved, inputs=tuple(current)), (
        f"manifest and {len(current)} input files unchanged"
    )


def _difference(old: FileIdentity, new: FileIdentity) -> str:
    if old.size != new.size:
        return f"size {old.size} -> {new.size} bytes"
    return f"SHA-256 {old.sha256[:12]}... -> {new.sha256[:12]}..."


def _key(path: Path) -> str:
    return str(Path(path).resolve())


def _cases(manifest_path: PathLike) -> tuple[Manifest, list[ResolvedCase]]:
    """The manifest and its training and validation cases (what the statistics cover)."""
    from medimg.manifests import load_manifest, resolve_cases

    manifest = load_manifest(manifest_path, check_files=False)
    return manifest, [c for c in resolve_cases(manifest, manifest_path) if c.split != "test"]


def _input_files(case: ResolvedCase) -> list[tuple[str, str, Path]]:
    """(case id, role, file) of every file a case's statistics read, in a fixed order."""
    files: list[tuple[str, str, Path]] = []
    images = list(case.images)
    for k, image in enumerate(images):
        role = "image" if len(images) == 1 else f"image[{k}]"
        if image.is_dir():  # a DICOM series: every file the reader may open
            inside = sorted(p for p in image.rglob("*") if p.is_file())
            files += [(case.case_id, f"{role}: {p.relative_to(image)}", p) for p in inside]
        else:
            files.append((case.case_id, role, image))
    if case.label is not None:
        files.append((case.case_id, "label", case.label))
    return files


def compute_fingerprint(
    manifest_path: PathLike,
    *,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    seed: int = 0,
    previous: tuple[FingerprintInput, ...] = (),
) -> Fingerprint:
    """Compute the fingerprint of a manifest's training and validation cases, one at a time.

    Method: every case is loaded, reoriented to RAS (``Volume.to_ras()``) and released before
    the next. Mean, std, min and max are exact over all foreground voxels (running float64
    sums). Percentiles and the median come from a subsample: at most
    ``max_samples // n_cases`` foreground voxels per case and channel, drawn without
    replacement with ``numpy.random.default_rng((seed, case_index))`` (all of them when the case
    has fewer), so memory is bounded by ``max_samples`` per channel whatever the dataset size.
    Foreground is label > 0 when the manifest has label maps, else every voxel. Each input
    file's identity is taken just before the case is read (``Fingerprint.inputs``).

    Parameters
    ----------
    manifest_path : path-like
        The manifest (it should pass ``medimg validate``).
    max_samples : int
        Total voxels kept per channel for the percentiles.
    seed : int
        Seed of the subsampling.
    previous : tuple of FingerprintInput
        Identities recorded earlier: an unchanged file's hash is reused, not re-read.

    Returns
    -------
    Fingerprint

    Raises
    ------
    ValueError
        If `max_samples` < 1 or the manifest has no training or validation case.
    """
    from medimg.manifests import manifest_sha256

    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")
    manifest, cases = _cases(manifest_path)
    by_path = {i.identity.path: i.identity for i in previous}
    per_case = _per_case(max_samples, len(cases))
    acc = _Accumulator(len(manifest.channels))
    inputs: list[FingerprintInput] = []
    for index, case in enumerate(cases):
        try:
            inputs += [
                FingerprintInput(cid, role, file_identity(p, previous=by_path.get(_key(p))))
                for cid, role, p in _input_files(case)
            ]
        except OSError:
            _load_case(manifest, case)  # raises the reader's error naming the file
            raise
        rng = np.random.default_rng((seed, index))
        acc.add(_load_case(manifest, case), per_case, rng)
    fingerprint = acc.finish(manifest, manifest_sha256(manifest_path), per_case, seed)
    return replace(fingerprint, inputs=tuple(inputs))


def _per_case(max_samples: int, n_cases: int) -> int:
    return max(1, max_samples // max(1, n_cases))


@dataclass
class _LoadedCase:
    channels: list[NDArray[Any]]  # each (X, Y[, Z]) in RAS order
    spacing_mm: tuple[float, ...]
    label: NDArray[Any] | None
    class_index: int | None


def _load_case(manifest: Manifest, case: ResolvedCase) -> _LoadedCase:
    from medimg.io import load_volume

    modalities = manifest.modalities
    if len(case.images) == 1 and len(modalities) > 1:
        volumes = [_load_any(case.images[0], None)]
    else:
        volumes = [
            _load_any(p, m.spatial_dims) for p, m in zip(case.images, modalities, strict=True)
        ]
    ras = [_ras_array(v) for v in volumes]
    channels = [c for array, _ in ras for c in array]
    label = None
    if case.label is not None:
        ndim = len(volumes[0].spatial_shape)
        label = _ras_array(load_volume(case.label, ndim=ndim))[0][0]
    return _LoadedCase(channels, ras[0][1], label, case.class_index)


def _ras_array(volume: Volume) -> tuple[NDArray[Any], tuple[float, ...]]:
    """Channel-first array and spacing in RAS axis order (2D planes too)."""
    ras = volume.to_ras()
    return ras.array, tuple(ras.spacing_mm)


def _load_any(path: Path, ndim: int | None) -> Volume:
    if path.is_dir():
        import importlib

        volume: Volume = importlib.import_module("medimg.io.dicom").load_dicom_series(path)
        return volume
    from medimg.io import load_volume

    return load_volume(path, ndim=ndim)


class _Accumulator:
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

    def add(self, case: _LoadedCase, per_case: int, rng: np.random.Generator) -> None:
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
