"""Choose one volume among the candidates of a DICOM folder: :class:`SelectionRules`.

Manifests and batch jobs name a folder; the rules say which series in it is the image. Every
candidate that a rule rejects is logged with the reason, and so is the final choice. When the
rules leave more than one candidate and no preference breaks the tie, the choice is refused
with the list of candidates rather than guessed. A refused series (one whose headers cannot be
trusted, see :attr:`~medimg.io.dicom.DicomSeries.refused`) is never chosen; when the rules
(modality, description, series number, part) match it, it counts: alone it raises its
refusal, beside readable candidates it makes the choice ambiguous, since it might have been
the intended volume.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from medimg.errors import ConfigError, DicomSeriesError
from medimg.io.dicom.discovery import DicomSeries

__all__ = ["SelectionRules", "select_series", "series_orientation", "series_step_mm"]

logger = logging.getLogger(__name__)

Orientation = Literal["axial", "coronal", "sagittal"]
Preference = Literal["thinnest", "most_slices", "latest"]


@dataclass(frozen=True, kw_only=True)
class SelectionRules:
    """Which volume of a DICOM folder to read.

    Attributes
    ----------
    modality : str or tuple of str, optional
        Accepted Modality values (``"CT"``, ``("MR",)``).
    description : str, optional
        Regular expression searched (case-insensitive) in SeriesDescription.
    series_number : int, optional
        SeriesNumber to take.
    min_slices : int
        Fewest images a candidate must have.
    orientation : {"axial", "coronal", "sagittal"}, optional
        Plane closest to the slices.
    part : int, optional
        1-based volume of a series split into several (a 4D series); default all parts.
    prefer : sequence of {"thinnest", "most_slices", "latest"}
        Tie-breakers applied in order among candidates left: the smallest slice step, the
        most slices, the highest series number.

    Examples
    --------
    >>> SelectionRules(modality="CT", prefer=("thinnest",)).modalities
    ('CT',)
    """

    modality: str | tuple[str, ...] | None = None
    description: str | None = None
    series_number: int | None = None
    min_slices: int = 1
    orientation: Orientation | None = None
    part: int | None = None
    prefer: tuple[Preference, ...] = ()

    def __post_init__(self) -> None:
        if self.orientation not in (None, "axial", "coronal", "sagittal"):
            raise ConfigError(
                f"orientation must be axial, coronal or sagittal, got {self.orientation!r}"
            )
        bad = [p for p in self.prefer if p not in ("thinnest", "most_slices", "latest")]
        if bad:
            raise ConfigError(
                f"prefer must list thinnest, most_slices or latest, got {', '.join(map(str, bad))}"
            )
        if self.description is not None:
            try:
                re.compile(self.description)
            except re.error as exc:
                raise ConfigError(
                    f"description must be a regular expression, got {self.description!r} ({exc})"
                ) from None

    @property
    def modalities(self) -> tuple[str, ...]:
        """Accepted modalities, upper case (empty: any)."""
        if self.modality is None:
            return ()
        values = (self.modality,) if isinstance(self.modality, str) else self.modality
        return tuple(v.upper() for v in values)


def series_orientation(series: DicomSeries) -> str:
    """The plane of a series: axial, coronal, sagittal (closest), projection or refused."""
    if series.refused:
        return "refused"
    if series.is_projection:
        return "projection"
    cosines = np.asarray(series.frames[0].orientation, dtype=np.float64)
    normal = np.abs(np.cross(cosines[:3], cosines[3:]))
    return ("sagittal", "coronal", "axial")[int(np.argmax(normal))]


def series_step_mm(series: DicomSeries) -> float:
    """Median distance between slice positions along the normal (SliceThickness if 1 slice)."""
    if series.refused:
        return 0.0
    if series.is_projection or len(series.frames) < 2:
        return float(series.frames[0].slice_thickness_mm or 0.0)
    cosines = np.asarray(series.frames[0].orientation, dtype=np.float64)
    normal = np.cross(cosines[:3], cosines[3:])
    proj = np.sort([float(normal @ np.asarray(f.position_lps)) for f in series.frames])
    steps = np.diff(proj)
    steps = steps[steps > 1e-3]
    return float(np.median(steps)) if steps.size else 0.0


def _rejection(series: DicomSeries, rules: SelectionRules) -> str:
    if series.refused:
        # only the rules that need no geometry apply to a series that has none to trust
        return _header_rejection(series, rules)
    reason = _header_rejection(series, rules)
    if reason:
        return reason
    if len(series.frames) < rules.min_slices:
        return f"{len(series.frames)} images, fewer than min_slices={rules.min_slices}"
    if rules.orientation is not None and series_orientation(series) != rules.orientation:
        return f"orientation {series_orientation(series)}, not {rules.orientation}"
    return ""


def _header_rejection(series: DicomSeries, rules: SelectionRules) -> str:
    if rules.modalities and series.modality.upper() not in rules.modalities:
        return f"modality {series.modality!r} not in {list(rules.modalities)}"
    if rules.description is not None and not re.search(
        rules.description, series.description, flags=re.IGNORECASE
    ):
        return f"description {series.description!r} does not match {rules.description!r}"
    if rules.series_number is not None and series.series_number != rules.series_number:
        return f"series number {series.series_number} is not {rules.series_number}"
    if rules.part is not None and series.part != rules.part:
        return f"volume {series.part} of its series, not {rules.part}"
    return ""


def _prefer(candidates: list[DicomSeries], rules: SelectionRules) -> list[DicomSeries]:
    keys: dict[str, Callable[[DicomSeries], float]] = {
        "thinnest": lambda s: round(series_step_mm(s), 3),
        "most_slices": lambda s: -len(s.frames),
        "latest": lambda s: -s.series_number,
    }
    for name in rules.prefer:
        best = min(keys[name](s) for s in candidates)
        kept = [s for s in candidates if keys[name](s) == best]
        for s in candidates:
            if s not in kept:
                logger.info("not chosen: %s (prefer %s)", s.label, name)
        candidates = kept
    return candidates


def select_series(
    candidates: Sequence[DicomSeries], rules: SelectionRules | None, *, where: str
) -> DicomSeries:
    """Apply ``rules`` to the candidates of a folder and return the one volume they pick.

    Parameters
    ----------
    candidates : sequence of DicomSeries
        From :func:`~medimg.io.dicom.scan_dicom_folder`.
    rules : SelectionRules or None
        ``None`` accepts a folder with exactly one candidate.
    where : str
        The folder, for messages.

    Raises
    ------
    DicomSeriesError
        When no candidate passes the rules, several do and no preference decides, or the
        rules match a refused series (its refusal, or the ambiguity, is raised).
    """
    rules = rules or SelectionRules()
    kept: list[DicomSeries] = []
    refused: list[DicomSeries] = []
    for series in candidates:
        reason = _rejection(series, rules)
        if reason:
            logger.info("%s: not chosen: %s: %s", where, series.label, reason)
        else:
            (refused if series.refused else kept).append(series)
    if refused and not kept:
        if len(refused) == 1:
            raise DicomSeriesError(
                f"{where}: the volume the rules select is refused: {refused[0].folder}: "
                f"{refused[0].label}: {refused[0].refused}"
            )
        listing = "; ".join(f"{s.label}: {s.refused}" for s in refused[:4])
        raise DicomSeriesError(
            f"{where}: every series the rules match is refused ({len(refused)}: {listing}); "
            "fix or remove those files, or select another series (see medimg dicom ls)"
        )
    if not kept:
        listing = "; ".join(f"{s.label}: {_rejection(s, rules)}" for s in candidates[:8])
        raise DicomSeriesError(
            f"{where}: a volume must match the selection rules, none of {len(candidates)} "
            f"candidates does ({listing}); relax the rules (see medimg dicom ls)"
        )
    kept = _prefer(kept, rules)
    if len(kept) + len(refused) > 1:
        listing = "; ".join(
            [
                f"{s.label}: {s.modality}, {len(s.frames)} images, {series_orientation(s)}"
                for s in kept[:8]
            ]
            + [f"{s.label}: refused ({s.refused})" for s in refused[:4]]
        )
        raise DicomSeriesError(
            f"{where}: the selection must leave one volume, {len(kept) + len(refused)} remain "
            f"({listing}); "
            "add selection rules (modality, description, series_number, part, orientation, "
            "prefer) to choose one (see medimg dicom ls)"
        )
    chosen = kept[0]
    logger.info(
        "%s: chose %s (%s, %d images, %s)",
        where,
        chosen.label,
        chosen.modality,
        len(chosen.frames),
        series_orientation(chosen),
    )
    return chosen
