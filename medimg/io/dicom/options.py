"""How strictly a DICOM series is read: :class:`DicomReadOptions`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from medimg.errors import ConfigError
from medimg.io.volume import default_max_bytes

__all__ = ["CorrectionPolicy", "DicomReadOptions"]

CorrectionPolicy = Literal["error", "resample"]


@dataclass(frozen=True, kw_only=True)
class DicomReadOptions:
    """Checks and corrections applied when a DICOM series becomes a volume.

    Attributes
    ----------
    min_slices : int
        Fewest slices accepted as a volume (default 3: with two slices the spacing cannot be
        checked, and one or two slices are usually a localizer). Use 1 to read a single slice
        (its thickness is then SliceThickness).
    spacing_tolerance_mm : float
        Largest deviation of a slice step from the median step still called even.
    tilt_tolerance_deg : float
        Largest angle between the slice-stacking direction and the slice normal still called
        orthogonal; above it the series is gantry-tilted. A smaller tilt is kept exactly: the
        affine's slice axis is the measured step between slice positions.
    gantry_tilt : {"error", "resample"}
        Refuse a tilted series (default), or resample it onto an orthogonal grid (trilinear).
    uneven_spacing : {"error", "resample"}
        Refuse uneven or missing slices (default), or resample onto an even grid at the median
        step (slices in gaps are interpolated linearly).
    max_bytes : int or None
        Largest decoded volume in bytes, checked from the headers before any pixel is read.
        None (the default): :func:`medimg.io.default_max_bytes` at the time of reading (80%
        of the memory then available, at most 16 GiB), as for every other format.
    """

    min_slices: int = 3
    spacing_tolerance_mm: float = 0.01
    tilt_tolerance_deg: float = 0.1
    gantry_tilt: CorrectionPolicy = "error"
    uneven_spacing: CorrectionPolicy = "error"
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.min_slices < 1:
            raise ConfigError(f"min_slices must be >= 1, got {self.min_slices}")
        if self.spacing_tolerance_mm < 0 or self.tilt_tolerance_deg < 0:
            raise ConfigError(
                "spacing_tolerance_mm and tilt_tolerance_deg must be >= 0, got "
                f"{self.spacing_tolerance_mm} and {self.tilt_tolerance_deg}"
            )
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise ConfigError(f"max_bytes must be > 0 or None, got {self.max_bytes}")
        for name in ("gantry_tilt", "uneven_spacing"):
            value = getattr(self, name)
            if value not in ("error", "resample"):
                raise ConfigError(f"{name} must be 'error' or 'resample', got {value!r}")

    def decode_limit_bytes(self) -> int:
        """``max_bytes``, or when it is None the default limit now (:func:`default_max_bytes`)."""
        return default_max_bytes() if self.max_bytes is None else self.max_bytes
