"""Errors raised by medimg.

Every error subclasses :class:`MedimgError` (so the command line can tell a user error from a
bug) and a fitting built-in (so ``except ValueError`` keeps working). Messages follow one
template: what must hold, what was found, where (file, case, field), and how to fix it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "CaseError",
    "CheckpointError",
    "ConfigError",
    "DicomSeriesError",
    "FingerprintError",
    "GeometryError",
    "ImageNotFoundError",
    "ImageReadError",
    "ImageTooLargeError",
    "ImageWriteError",
    "InputContractError",
    "ManifestError",
    "MedimgError",
    "NonFiniteError",
    "OutputExistsError",
    "OutputLockedError",
    "PackageError",
    "PackagePassphraseError",
    "PackageSignatureError",
    "UnsupportedFormatError",
]


class MedimgError(Exception):
    """Base class of every error medimg raises on purpose (a user or data error, not a bug)."""


class ImageReadError(MedimgError, ValueError):
    """An image file exists but cannot be read as a volume."""


class ImageNotFoundError(MedimgError, FileNotFoundError):
    """An image path does not exist."""


class UnsupportedFormatError(ImageReadError):
    """The file's extension names no format medimg reads or writes."""


class ImageTooLargeError(ImageReadError):
    """Reading the file would need more memory than the configured limit."""


class NonFiniteError(ImageReadError):
    """The file holds NaN or infinite voxels and the policy is to refuse them."""


class OutputExistsError(MedimgError, FileExistsError):
    """An output file exists and overwriting was not asked for."""


class OutputLockedError(MedimgError, RuntimeError):
    """An output folder is in use by another run (see :class:`medimg.io.locks.OutputLock`)."""


class PackageError(MedimgError, ValueError):
    """A model package (``.medimg``) is damaged, altered, of another format or cannot be used."""


class PackageSignatureError(PackageError):
    """A package's signature is missing where a trust store requires one, or does not verify."""


class PackagePassphraseError(PackageError):
    """An encrypted package's passphrase is missing or wrong."""


class InputContractError(MedimgError, ValueError):
    """An image does not fit a model's input contract (modality, channels, dimensions)."""


class ImageWriteError(MedimgError, ValueError):
    """An array cannot be written as an image file as it is (e.g. a voxel type no format holds)."""


class GeometryError(MedimgError, ValueError):
    """An affine, grid or orientation is invalid or does not match what was expected."""


class DicomSeriesError(MedimgError, ValueError):
    """A DICOM folder or series cannot be assembled into a correct volume."""


class FingerprintError(MedimgError, ValueError):
    """A saved dataset fingerprint document is damaged or of another version.

    ``reason`` is what is wrong without the fix, for callers whose fix differs (a model
    folder's fingerprint is restored, not recomputed).
    """

    def __init__(self, reason: str, fix: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}; {fix}")


class CheckpointError(MedimgError, ValueError):
    """A checkpoint is missing, unreadable or not the one recorded."""


class ConfigError(MedimgError, ValueError):
    """A configuration value is invalid."""


class CaseError(MedimgError, RuntimeError):
    """One case of a batch failed; the cause is chained as ``__cause__``."""


class ManifestError(MedimgError, ValueError):
    """A dataset manifest has one or more problems.

    Parameters
    ----------
    path : path-like
        The manifest file.
    problems : sequence of str
        One line per problem, each starting with the field path (``training[3].label: ...``).
    """

    def __init__(self, path: str | Path, problems: Sequence[str]) -> None:
        self.path = Path(path)
        self.problems = tuple(problems)
        n = len(self.problems)
        head = f"{self.path} has {n} problem{'s' if n != 1 else ''}:"
        super().__init__("\n  ".join([head, *self.problems]))
