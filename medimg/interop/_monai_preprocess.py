"""medimg's preprocessing chain written as MONAI bundle transforms, with what cannot be.

Each step of :func:`medimg.transforms.preprocessing_for` becomes the MONAI dictionary transform
nearest to it. Exact (to float rounding): loading, channel-first, reorientation to RAS, the
crop to the foreground, the CT window (``ScaleIntensityRanged`` to [0, 1]), the CT
fingerprint normalisation (clip to the foreground 0.5/99.5 percentiles and z-score with its
mean and std is one linear map on the clipped range: ``ScaleIntensityRanged`` with
``a_min, a_max`` the percentiles and ``b_min, b_max`` their z-scores, the values written out),
the MRI z-score (``NormalizeIntensityd``), the X-ray percentile window
(``ScaleIntensityRangePercentilesd``) and the classification pad/crop. Approximate, and said
so in the notes: resampling (MONAI's ``Spacingd`` interpolates every axis one way; medimg
resamples the coarse axis of anisotropic cases with its own order, nnU-Net's rule; cubic is
MONAI's spline of order 3), X-ray's in-plane reorientation, histogram equalisation and
resize-with-pad (rounding of the scaled size). Not expressible in MONAI (listed in the notes,
left out): SimpleITK's denoising, adaptive equalisation and N4, and an MRI mask image.
"""

from __future__ import annotations

from typing import Any

from medimg.errors import ConfigError

__all__ = ["monai_preprocessing"]

IMAGE = "image"
_RAS_LABELS = [["L", "R"], ["P", "A"], ["I", "S"]]
"""Axis labels of RAS+ world coordinates (MONAI's, written out: its default is changing)."""


def monai_preprocessing(bundle: Any, input_size_vox: Any = None) -> tuple[list[Any], list[str]]:
    """MONAI transforms (bundle-config dicts) for ``bundle``'s chain, and notes on the gaps.

    Parameters
    ----------
    bundle : ModelBundle
        Its ``modality``, ``preprocess`` and ``fingerprint`` define the chain.
    input_size_vox : sequence of int, optional
        Classification's pad/crop size (``ClassificationHead.input_size_vox``).
    """
    cfg = bundle.preprocess
    notes: list[str] = []
    steps: list[Any] = [
        {"_target_": "LoadImaged", "keys": IMAGE, "image_only": True},
        {"_target_": "EnsureChannelFirstd", "keys": IMAGE},
    ]
    if bundle.modality == "XR":
        steps += _xray(cfg, notes)
    else:
        steps += _spatial(bundle, notes)
        steps += _ct(bundle, notes) if bundle.modality == "CT" else _mr(cfg, notes)
    notes += _unexpressible(cfg)
    if input_size_vox is not None:
        steps.append({"_target_": "ResizeWithPadOrCropd", "keys": IMAGE,
                      "spatial_size": list(input_size_vox), "mode": "minimum"})  # fmt: skip
    steps.append({"_target_": "EnsureTyped", "keys": IMAGE, "dtype": "$torch.float32"})
    return steps, notes


def _spatial(bundle: Any, notes: list[str]) -> list[Any]:
    from medimg.transforms.modality import target_spacing_for

    cfg = bundle.preprocess
    steps: list[Any] = [{"_target_": "Orientationd", "keys": IMAGE, "axcodes": "RAS",
                         "labels": _RAS_LABELS}]  # fmt: skip
    if cfg.crop_foreground_above is not None:
        steps.append({
            "_target_": "CropForegroundd", "keys": IMAGE, "source_key": IMAGE,
            "select_fn": f"$lambda x: x > {float(cfg.crop_foreground_above)!r}",
            "margin": cfg.crop_margin_vox, "allow_smaller": True,
        })  # fmt: skip
    spacing = [float(s) for s in target_spacing_for(cfg, bundle.fingerprint)]
    mode: Any = 3 if cfg.image_interp == "cubic" else "bilinear"
    steps.append({"_target_": "Spacingd", "keys": IMAGE, "pixdim": spacing, "mode": mode})
    notes.append(
        f"resampling to {spacing} mm: Spacingd interpolates every axis with "
        f"{'spline order 3' if mode == 3 else 'bilinear'}; medimg resamples separably and, "
        f"for a case whose coarsest spacing exceeds {cfg.anisotropy_threshold} x its finest, "
        f"the coarse axis with {cfg.lowres_axis_interp!r} (nnU-Net's rule): values near edges "
        "differ slightly"
    )
    return steps


def _ct(bundle: Any, notes: list[str]) -> list[Any]:
    bounds = bundle.preprocess.hu_window_bounds
    if bounds is not None:
        low, high = (float(b) for b in bounds)
        return [{"_target_": "ScaleIntensityRanged", "keys": IMAGE, "a_min": low,
                 "a_max": high, "b_min": 0.0, "b_max": 1.0, "clip": True}]  # fmt: skip
    if bundle.fingerprint is None:
        raise ConfigError(
            "a CT model's normalisation needs its fingerprint or a hu_window, got neither in "
            "its record; the model folder is incomplete"
        )
    stats = bundle.fingerprint.intensity[0]
    low, high = float(stats.percentile_00_5), float(stats.percentile_99_5)
    mean, std = float(stats.mean), float(stats.std)
    notes.append(
        f"CT normalisation from the dataset fingerprint written with its values: clip to "
        f"[{low}, {high}] HU (foreground 0.5/99.5 percentiles), z-score with mean {mean} and "
        f"std {std}, as one ScaleIntensityRanged"
    )
    return [{"_target_": "ScaleIntensityRanged", "keys": IMAGE, "a_min": low, "a_max": high,
             "b_min": (low - mean) / std, "b_max": (high - mean) / std, "clip": True}]  # fmt: skip


def _mr(cfg: Any, notes: list[str]) -> list[Any]:
    return [{"_target_": "NormalizeIntensityd", "keys": IMAGE,
             "nonzero": cfg.mr_mask == "nonzero", "channel_wise": True}]  # fmt: skip


def _xray(cfg: Any, notes: list[str]) -> list[Any]:
    low, high = cfg.xray_percentiles
    size = [int(n) for n in cfg.xray_size_px]
    steps: list[Any] = [
        {"_target_": "Orientationd", "keys": IMAGE, "axcodes": "RA", "labels": _RAS_LABELS},
        {"_target_": "ScaleIntensityRangePercentilesd", "keys": IMAGE, "lower": float(low),
         "upper": float(high), "b_min": 0.0, "b_max": 1.0, "clip": True, "channel_wise": True},
    ]  # fmt: skip
    if cfg.xray_equalize:
        steps.append({"_target_": "HistogramNormalized", "keys": IMAGE, "num_bins": 256,
                      "min": 0, "max": 1})  # fmt: skip
        notes.append("X-ray histogram equalisation: HistogramNormalized, close to medimg's")
    steps += [
        {"_target_": "Resized", "keys": IMAGE, "spatial_size": max(size),
         "size_mode": "longest", "mode": "bilinear"},
        {"_target_": "ResizeWithPadOrCropd", "keys": IMAGE, "spatial_size": size},
    ]  # fmt: skip
    notes.append(
        "X-ray: in-plane axes reoriented with Orientationd('RA') and resized keeping the "
        f"aspect ratio then padded to {size} (Resized 'longest' + ResizeWithPadOrCropd): the "
        "scaled size can round one pixel apart from medimg's resize-with-pad"
    )
    return steps


def _unexpressible(cfg: Any) -> list[str]:
    left_out = {
        "denoise": "edge-preserving denoising (SimpleITK curvature anisotropic diffusion)",
        "adaptive_equalize": "adaptive histogram equalisation (SimpleITK)",
        "n4_bias_correction": "N4 bias-field correction (SimpleITK)",
    }
    notes = [
        f"{text} has no MONAI transform and is left out: this model was trained with it "
        f"({name}=True), so MONAI's inputs differ from medimg's"
        for name, text in left_out.items()
        if getattr(cfg, name)
    ]
    if cfg.mr_mask_key:
        notes.append(f"the MRI z-score over the mask image {cfg.mr_mask_key!r} is left out")
    return notes
