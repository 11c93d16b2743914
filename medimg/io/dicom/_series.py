"""The records a DICOM folder scan produces: :class:`DicomSeries` and :class:`DicomScan`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medimg.errors import DicomSeriesError
from medimg.io.dicom._frames import DicomFrame

__all__ = ["DicomScan", "DicomSeries"]


@dataclass(frozen=True)
class DicomSeries:
    """The images of one volume (or one 2D image): a series, or one part of a split series.

    Attributes
    ----------
    folder : Path
        Deepest folder holding all of its files.
    series_uid : str
        SeriesInstanceUID.
    frames : tuple of DicomFrame
        Its images, in the order found (assembly sorts them by position).
    part : int
        1-based index of this volume within its series (1 when not split).
    n_parts : int
        How many volumes the series was split into.
    split_reason : str
        Why the series was split (empty when it was not).
    notes : tuple of str
        Images of the series left out, and why.
    refused : str
        Why the series cannot be read (file, tag, reason, fix); empty when it can. A refused
        series is listed by ``medimg dicom ls``, reported by ``medimg convert`` and never
        read, converted or chosen.
    stack : int
        1-based index of the slice stack (orientation, echo, series number, image type) this
        volume belongs to; the time points of one stack share it.
    time_point : int
        1-based time point within its stack (0 when the stack was not split in time).
    time_points : int
        How many time points its stack holds (1 when not split in time); volumes of one
        stack with ``time_points > 1`` form one 4D series (:func:`~medimg.io.dicom.read_4d`).
    """

    folder: Path
    series_uid: str
    frames: tuple[DicomFrame, ...]
    part: int = 1
    n_parts: int = 1
    split_reason: str = ""
    notes: tuple[str, ...] = field(default=())
    refused: str = ""
    stack: int = 1
    time_point: int = 0
    time_points: int = 1

    @property
    def dataset(self) -> Any:
        """Header of the first image (pydicom Dataset)."""
        return self.frames[0].dataset

    @property
    def modality(self) -> str:
        """Modality (CT, MR, CR, DX...)."""
        return str(self.dataset.get("Modality", "") or "")

    @property
    def description(self) -> str:
        """SeriesDescription (empty when absent)."""
        return str(self.dataset.get("SeriesDescription", "") or "")

    @property
    def series_number(self) -> int:
        """SeriesNumber (0 when absent)."""
        try:
            return int(self.dataset.get("SeriesNumber", 0) or 0)
        except (TypeError, ValueError):
            return 0

    @property
    def label(self) -> str:
        """Short name for messages: ``series 3 'T1 SAG' (volume 2 of 2, split by echo)``."""
        text = f"series {self.series_number} {self.description!r} ({self.series_uid})"
        if self.n_parts > 1:
            text += f" volume {self.part} of {self.n_parts} ({self.split_reason})"
        return text

    @property
    def is_projection(self) -> bool:
        """A 2D projection image without patient position (CR, DX, MG... X-ray)."""
        first = self.frames[0]
        return not self.refused and (first.position_lps is None or first.orientation is None)

    def check_readable(self) -> None:
        """Raise the refusal of a refused series.

        Raises
        ------
        DicomSeriesError
            When :attr:`refused` is set; the message names the folder, the series, the file,
            the tag and the fix.
        """
        if self.refused:
            raise DicomSeriesError(f"{self.folder}: {self.label}: refused: {self.refused}")

    @property
    def is_mosaic(self) -> bool:
        """Whether its images are tiles of Siemens MOSAIC files (several slices per file)."""
        return any(f.tile is not None for f in self.frames)

    @property
    def stem(self) -> str:
        """File-name stem for outputs: ``s003_t1_sag`` or ``s003_t1_sag_v2``."""
        words = "".join(c if c.isalnum() else "_" for c in self.description.lower()).strip("_")
        stem = f"s{self.series_number:03d}" + (f"_{words}" if words else "")
        stem = "_".join(part for part in stem.split("_") if part)
        return f"{stem}_v{self.part}" if self.n_parts > 1 else stem


@dataclass(frozen=True)
class DicomScan:
    """Everything found under a folder.

    Attributes
    ----------
    root : Path
        The folder scanned.
    series : tuple of DicomSeries
        Volume candidates, ordered by series number, then part.
    left_out : tuple of str
        ``"<file or series>: <reason>"`` for each file or series that is not a candidate.
    """

    root: Path
    series: tuple[DicomSeries, ...]
    left_out: tuple[str, ...]
