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

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from medimg._fingerprint_inputs import (
    case_inputs,
    check_saved,
    path_key,
    samples_per_case,
    training_cases,
)
from medimg._fingerprint_record import (
    FINGERPRINT_VERSION,
    ChannelStats,
    Fingerprint,
    FingerprintInput,
)
from medimg._fingerprint_stats import ANISOTROPY_THRESHOLD, Accumulator, load_case
from medimg.errors import FingerprintError
from medimg.io.integrity import file_identity
from medimg.typing import PathLike

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
        except (FingerprintError, UnicodeDecodeError) as exc:
            reason = f"the saved fingerprint is not readable ({exc})"
        else:
            reused, reason = check_saved(saved, manifest_path, max_samples, seed)
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
    manifest, cases = training_cases(manifest_path)
    by_path = {i.identity.path: i.identity for i in previous}
    per_case = samples_per_case(max_samples, len(cases))
    acc = Accumulator(len(manifest.channels))
    inputs: list[FingerprintInput] = []
    for index, case in enumerate(cases):
        try:
            inputs += [
                FingerprintInput(cid, role, file_identity(p, previous=by_path.get(path_key(p))))
                for cid, role, p in case_inputs(case)
            ]
        except OSError:
            load_case(manifest, case)  # raises the reader's error naming the file
            raise
        rng = np.random.default_rng((seed, index))
        acc.add(load_case(manifest, case), per_case, rng)
    fingerprint = acc.finish(manifest, manifest_sha256(manifest_path), per_case, seed)
    return replace(fingerprint, inputs=tuple(inputs))
