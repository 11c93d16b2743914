"""The imaging modalities medimg knows, and the one lookup that turns user text into one.

:class:`Modality` is the key of the preprocessing registry (``medimg.transforms.modality``) and
the type of every manifest channel's modality. Strings become a :class:`Modality` only through
:func:`lookup_modality`, which never guesses: a near miss fails with a did-you-mean.
"""

from __future__ import annotations

import difflib
from enum import Enum

__all__ = ["Modality", "lookup_modality"]


class Modality(str, Enum):
    """Imaging modality of one input channel.

    The values are the DICOM ``Modality`` (0008,0060) codes, which MSD and nnU-Net
    ``dataset.json`` files mostly use already.
    """

    CT = "CT"
    """Computed tomography; intensities in Hounsfield units."""
    MR = "MR"
    """Magnetic resonance, any sequence (T1, T2, FLAIR, ADC, ...); intensities arbitrary."""
    XR = "XR"
    """Projection radiography (2D); intensities arbitrary."""

    def __str__(self) -> str:
        return self.value

    @property
    def spatial_dims(self) -> int:
        """Number of spatial dimensions images of this modality have (2 for XR, else 3)."""
        return 2 if self is Modality.XR else 3


def lookup_modality(text: str) -> Modality:
    """Return the :class:`Modality` named exactly by `text`, or fail with a suggestion.

    Parameters
    ----------
    text : str
        A modality value such as ``"CT"``. Matching is exact: ``"ct"`` and ``"CT "`` are
        refused (with a suggestion) so a typo in a manifest never passes silently.

    Returns
    -------
    Modality

    Raises
    ------
    ValueError
        If `text` names no modality; the message suggests the closest one.

    Examples
    --------
    >>> lookup_modality("MR")
    <Modality.MR: 'MR'>
    >>> lookup_modality("CT ")
    Traceback (most recent call last):
    ...
    ValueError: 'CT ' is not a modality; did you mean 'CT'? (valid: CT, MR, XR)
    """
    valid = [m.value for m in Modality]
    if isinstance(text, str) and text in valid:
        return Modality(text)
    raise ValueError(
        f"{text!r} is not a modality{_suggest(text, valid)} (valid: {', '.join(valid)})"
    )


def _suggest(text: object, valid: list[str]) -> str:
    """``; did you mean 'X'?`` for the closest of `valid`, or an empty string."""
    if not isinstance(text, str):
        return ""
    folded = {v.upper(): v for v in valid}
    key = text.strip().upper()
    if key in folded:
        return f"; did you mean {folded[key]!r}?"
    close = difflib.get_close_matches(key, list(folded), n=1, cutoff=0.5)
    return f"; did you mean {folded[close[0]]!r}?" if close else ""
