"""Fixtures for the transforms tests: a hand-made fingerprint factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from medimg.fingerprint import ChannelStats, Fingerprint
from medimg.modality import Modality


@pytest.fixture
def make_fingerprint() -> Callable[..., Fingerprint]:
    """Factory of a :class:`Fingerprint` with given spacings and one channel's statistics."""

    def _make(
        median_spacing_mm: tuple[float, float, float] = (1.0, 1.0, 2.5),
        p10_spacing_mm: tuple[float, float, float] | None = None,
        *,
        modality: Modality = Modality.CT,
        mean: float = 100.0,
        std: float = 50.0,
        p005: float = -100.0,
        p995: float = 300.0,
        **overrides: Any,
    ) -> Fingerprint:
        ratio = max(median_spacing_mm) / min(median_spacing_mm)
        anisotropic = ratio >= 3.0
        fields: dict[str, Any] = {
            "manifest_sha256": "0" * 64,
            "modalities": (modality,),
            "n_cases": 1,
            "spacings_mm": (median_spacing_mm,),
            "shapes_vox": ((10, 10, 10),),
            "median_spacing_mm": median_spacing_mm,
            "p10_spacing_mm": p10_spacing_mm or median_spacing_mm,
            "median_shape_vox": (10, 10, 10),
            "anisotropy_ratio": ratio,
            "anisotropic": anisotropic,
            "lowres_axis": median_spacing_mm.index(max(median_spacing_mm)) if anisotropic else None,
            "intensity": (
                ChannelStats(
                    mean=mean,
                    std=std,
                    percentile_00_5=p005,
                    percentile_99_5=p995,
                    median=mean,
                    min=p005,
                    max=p995,
                    n_voxels=1000,
                ),
            ),
            "intensity_source": "foreground",
            "samples_per_case": 1000,
            "seed": 0,
        }
        fields.update(overrides)
        return Fingerprint(**fields)

    return _make
