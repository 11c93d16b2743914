"""The catalogue covers at least 40 kinds of bad input (issue 12's acceptance)."""

from __future__ import annotations

import importlib
from pathlib import Path

from catalogue_helpers import BadInput


def test_catalogue_has_at_least_40_distinct_kinds() -> None:
    kinds: list[str] = []
    for path in sorted(Path(__file__).parent.glob("test_catalogue_*.py")):
        if path.stem == "test_catalogue_count":
            continue
        module = importlib.import_module(path.stem)
        kinds += [e.kind for e in getattr(module, "CATALOGUE", ()) if isinstance(e, BadInput)]
    assert len(kinds) == len(set(kinds)), "duplicate kind names"
    assert len(kinds) >= 40, kinds
