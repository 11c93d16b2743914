"""The one "did you mean" helper behind every option and key lookup error."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

__all__ = ["did_you_mean"]


def did_you_mean(text: str, valid: Sequence[str], *, n: int = 1, cutoff: float = 0.5) -> str:
    """``"; did you mean 'x'?"`` naming the closest of `valid` to `text`, or ``""``.

    Examples
    --------
    >>> did_you_mean("dynunett", ["unet", "dynunet"])
    "; did you mean 'dynunet'?"
    >>> did_you_mean("zzz", ["unet"])
    ''
    """
    close = difflib.get_close_matches(text, list(valid), n=n, cutoff=cutoff)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
