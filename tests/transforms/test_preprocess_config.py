"""PreprocessConfig validation: every refusal names the field, the value and the fix."""

from __future__ import annotations

from typing import Any

import pytest

from medimg.errors import ConfigError
from medimg.transforms import HU_WINDOWS, PreprocessConfig


def test_defaults_are_valid_and_frozen() -> None:
    cfg = PreprocessConfig()
    assert cfg.hu_window_bounds is None
    with pytest.raises(AttributeError):
        cfg.image_interp = "linear"  # type: ignore[misc]


def test_named_and_explicit_windows() -> None:
    assert PreprocessConfig(hu_window="lung").hu_window_bounds == HU_WINDOWS["lung"]
    assert PreprocessConfig(hu_window=(-100, 300)).hu_window_bounds == (-100.0, 300.0)
    # soft tissue is level 40, width 400
    low, high = HU_WINDOWS["soft_tissue"]
    assert ((low + high) / 2, high - low) == (40.0, 400.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_spacing_mm": (1.0, 0.0, 1.0)}, r"target_spacing_mm must be 3 values > 0 mm"),
        ({"target_spacing_mm": (1.0, 1.0)}, r"target_spacing_mm must be 3 values"),
        (
            {"image_interp": "cubc"},
            r"image_interp must be one of cubic, linear, got 'cubc'; did you mean 'cubic'\?",
        ),
        ({"label_interp": "linear"}, r"label_interp must be one of nearest, linear_onehot"),
        ({"lowres_axis_interp": "cubic"}, r"lowres_axis_interp must be one of"),
        ({"mr_mask": "brain"}, r"mr_mask must be one of nonzero, all"),
        ({"anisotropy_threshold": 0.5}, r"anisotropy_threshold must be >= 1"),
        ({"crop_margin_vox": -1}, r"crop_margin_vox must be >= 0"),
        ({"hu_window": "softtissue"}, r"hu_window must be one of .*did you mean 'soft_tissue'\?"),
        ({"hu_window": (300.0, -100.0)}, r"hu_window must be \(low, high\)"),
        (
            {"xray_percentiles": (5.0, 101.0)},
            r"xray_percentiles must be \(low, high\) with 0.0 <= low",
        ),
        ({"xray_size_px": (0, 10)}, r"xray_size_px must be 2 values >= 1"),
    ],
)
def test_invalid_values_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        PreprocessConfig(**kwargs)
