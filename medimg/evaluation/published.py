"""Detection figures published by others, printed and drawn beside medimg's, never as measured.

:data:`PUBLISHED_LUNA16` holds issue 13's anchors on real LUNA16 data: MONAI's RetinaNet
(10-fold FROC) and nnDetection (CPM). medimg's synthetic sets are far easier than LUNA16, so
these are a scale for the reader, not a result to compare with.
"""

from __future__ import annotations

from dataclasses import dataclass

from medimg.evaluation.detection import LUNA16_FP_RATES

__all__ = ["PUBLISHED_LUNA16", "PublishedFroc"]


@dataclass(frozen=True, kw_only=True)
class PublishedFroc:
    """A FROC published by others, to print or draw beside ours, never as measured here."""

    name: str
    source: str
    cpm: float
    sensitivities: tuple[float, ...] | None = None
    fp_rates: tuple[float, ...] = LUNA16_FP_RATES


PUBLISHED_LUNA16: tuple[PublishedFroc, ...] = (
    PublishedFroc(
        name="MONAI RetinaNet, LUNA16 10-fold",
        source="MONAI tutorials, detection/README (published, real data)",
        sensitivities=(0.835, 0.885, 0.931, 0.957, 0.974, 0.983, 0.988),
        cpm=(0.835 + 0.885 + 0.931 + 0.957 + 0.974 + 0.983 + 0.988) / 7,
    ),
    PublishedFroc(
        name="nnDetection, LUNA16",
        source="Baumgartner et al., MICCAI 2021 (published, real data)",
        cpm=0.93,
    ),
)
"""Published LUNA16 figures on real data (issue 13's anchors); not measured by medimg."""
