"""Typed, validated preprocessing settings: :class:`PreprocessConfig` and the named HU windows."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from medimg._suggest import did_you_mean
from medimg.errors import ConfigError

__all__ = ["HU_WINDOWS", "PreprocessConfig"]

HU_WINDOWS: Final = MappingProxyType(
    {
        "soft_tissue": (-160.0, 240.0),  # level 40, width 400
        "mediastinum": (-125.0, 225.0),  # level 50, width 350
        "liver": (-45.0, 165.0),  # level 60, width 210
        "lung": (-1350.0, 150.0),  # level -600, width 1500
        "bone": (-500.0, 1300.0),  # level 400, width 1800
        "brain": (0.0, 80.0),  # level 40, width 80
        "stroke": (8.0, 48.0),  # level 28, width 40
    }
)
"""Named CT windows as ``(low_hu, high_hu)`` (radiology's level/width in the comments)."""


def _check_pair(name: str, pair: tuple[float, float], low: float, high: float) -> None:
    if len(pair) != 2 or not low <= pair[0] < pair[1] <= high:
        raise ConfigError(
            f"{name} must be (low, high) with {low} <= low < high <= {high}, got {pair}"
        )


@dataclass(frozen=True, kw_only=True)
class PreprocessConfig:
    """Settings of a modality's preprocessing chain (the dataset fingerprint supplies the rest).

    Attributes
    ----------
    target_spacing_mm : (x, y, z) float, optional
        Voxel size after resampling, RAS order. ``None``: from the fingerprint the way nnU-Net
        chooses it (median spacing; for anisotropic data the coarse axis at its 10th percentile).
    image_interp : {"cubic", "linear"}
        Image interpolation in-plane (and through-plane for isotropic data).
    label_interp : {"nearest", "linear_onehot"}
        Label interpolation: nearest neighbour, or each label's indicator linearly then argmax.
    anisotropy_threshold : float
        A case whose coarsest spacing (stored or target) is more than this times its finest is
        resampled with ``lowres_axis_interp`` along that axis (nnU-Net: 3, order 0).
    lowres_axis_interp : {"nearest", "linear", "same"}
        Interpolation of images along the coarse axis of anisotropic cases; ``"same"`` uses
        ``image_interp``.
    crop_foreground_above : float, optional
        Crop to the box of voxels above this value (native units, e.g. -500 HU) before
        resampling; the box is recorded. ``None``: no crop.
    crop_margin_vox : int
        Voxels kept around the foreground box.
    hu_window : str or (low_hu, high_hu), optional
        CT only. ``None``: nnU-Net's scheme (clip to the fingerprint's foreground 0.5/99.5
        percentiles, z-score with its mean and std). A name of :data:`HU_WINDOWS` or a pair:
        clip to that window and rescale to [0, 1].
    mr_mask : {"nonzero", "all"}
        MRI z-score over each channel's non-zero voxels or over all voxels.
    mr_mask_key : str, optional
        Sample key of a mask image to z-score over instead (loaded and reoriented with the image).
    n4_bias_correction : bool
        MRI: run SimpleITK's N4 on the resampled image, before normalisation.
    xray_percentiles : (low, high)
        X-ray intensity window, in percent.
    xray_equalize : bool
        X-ray: histogram equalisation after windowing.
    xray_size_px : (int, int)
        X-ray output size; the image is resized keeping its aspect ratio and padded.
    denoise : bool
        Edge-preserving denoising (ITK's curvature anisotropic diffusion, in mm) in native
        units before normalisation: after resampling for CT and MRI (before N4), on the stored
        grid for X-ray. See :func:`~medimg.transforms.filters.denoise_anisotropic`.
    denoise_iterations : int
        Diffusion steps (>= 1).
    denoise_conductance : float
        Edge sensitivity (> 0, unitless); lower keeps weaker edges.
    adaptive_equalize : bool
        Adaptive histogram equalisation (ITK's, a CLAHE-like local contrast enhancement) as
        the last intensity step: after normalisation for CT and MRI, after resize-with-pad for
        X-ray. See :func:`~medimg.transforms.filters.adaptive_equalize`.
    adaptive_radius_mm : float
        Half-size of its neighbourhood in mm (> 0).
    adaptive_alpha, adaptive_beta : float
        ITK's contrast limits, in ``[0, 1]`` (0, 0: plain adaptive equalisation).
    """

    target_spacing_mm: tuple[float, float, float] | None = None
    image_interp: Literal["cubic", "linear"] = "cubic"
    label_interp: Literal["nearest", "linear_onehot"] = "nearest"
    anisotropy_threshold: float = 3.0
    lowres_axis_interp: Literal["nearest", "linear", "same"] = "nearest"
    crop_foreground_above: float | None = None
    crop_margin_vox: int = 0
    hu_window: str | tuple[float, float] | None = None
    mr_mask: Literal["nonzero", "all"] = "nonzero"
    mr_mask_key: str | None = None
    n4_bias_correction: bool = False
    xray_percentiles: tuple[float, float] = (0.5, 99.5)
    xray_equalize: bool = False
    xray_size_px: tuple[int, int] = (512, 512)
    denoise: bool = False
    denoise_iterations: int = 5
    denoise_conductance: float = 1.5
    adaptive_equalize: bool = False
    adaptive_radius_mm: float = 25.0
    adaptive_alpha: float = 0.3
    adaptive_beta: float = 0.3

    def __post_init__(self) -> None:
        spacing = self.target_spacing_mm
        if spacing is not None and (len(spacing) != 3 or any(not s > 0 for s in spacing)):
            raise ConfigError(f"target_spacing_mm must be 3 values > 0 mm, got {spacing}")
        self._check_choice("image_interp", self.image_interp, ("cubic", "linear"))
        self._check_choice("label_interp", self.label_interp, ("nearest", "linear_onehot"))
        self._check_choice(
            "lowres_axis_interp", self.lowres_axis_interp, ("nearest", "linear", "same")
        )
        self._check_choice("mr_mask", self.mr_mask, ("nonzero", "all"))
        if not self.anisotropy_threshold >= 1:
            raise ConfigError(f"anisotropy_threshold must be >= 1, got {self.anisotropy_threshold}")
        if self.crop_margin_vox < 0:
            raise ConfigError(f"crop_margin_vox must be >= 0, got {self.crop_margin_vox}")
        if isinstance(self.hu_window, str):
            self._check_choice("hu_window", self.hu_window, tuple(HU_WINDOWS))
        elif self.hu_window is not None:
            _check_pair("hu_window", self.hu_window, -float("inf"), float("inf"))
        _check_pair("xray_percentiles", self.xray_percentiles, 0.0, 100.0)
        if len(self.xray_size_px) != 2 or any(n < 1 for n in self.xray_size_px):
            raise ConfigError(f"xray_size_px must be 2 values >= 1, got {self.xray_size_px}")
        self._check_enhancement()

    def _check_enhancement(self) -> None:
        """The denoising and adaptive-equalisation settings (checked even when switched off)."""
        if isinstance(self.denoise_iterations, bool) or not (
            isinstance(self.denoise_iterations, int) and self.denoise_iterations >= 1
        ):
            raise ConfigError(
                f"denoise_iterations must be an integer >= 1, got {self.denoise_iterations!r}"
            )
        if not self.denoise_conductance > 0:
            raise ConfigError(f"denoise_conductance must be > 0, got {self.denoise_conductance}")
        if not self.adaptive_radius_mm > 0:
            raise ConfigError(f"adaptive_radius_mm must be > 0 mm, got {self.adaptive_radius_mm}")
        for name in ("adaptive_alpha", "adaptive_beta"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {value}")

    @staticmethod
    def _check_choice(name: str, value: object, valid: tuple[str, ...]) -> None:
        if value in valid:
            return
        hint = did_you_mean(str(value), valid)
        raise ConfigError(f"{name} must be one of {', '.join(valid)}, got {value!r}{hint}")

    @property
    def hu_window_bounds(self) -> tuple[float, float] | None:
        """The CT window as ``(low_hu, high_hu)``, or ``None`` for fingerprint normalisation."""
        if isinstance(self.hu_window, str):
            return HU_WINDOWS[self.hu_window]
        return (
            None if self.hu_window is None else (float(self.hu_window[0]), float(self.hu_window[1]))
        )
