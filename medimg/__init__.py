"""medimg: medical-imaging pipelines on MONAI.

Subpackages
-----------
io
    Geometry-true reading and atomic writing of NIfTI, NRRD, MHA/MHD and Analyze files.
synthetic
    Seeded phantoms (CT, MRI, X-ray) with answers known in advance.
tasks
    Training, batch prediction and evaluation engines; :func:`load_model` (also here, as
    ``from medimg import load_model``) loads a run folder or package for one-image prediction.
cli
    The ``medimg`` command (a thin layer over the library).

Importing :mod:`medimg` only defines things: no logging setup, no hardware probing, and no
heavy imports (torch and MONAI load when a function that needs them runs).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_model"]


def __getattr__(name: str) -> Any:
    """``medimg.load_model`` is :func:`medimg.tasks.load_model`, imported on first use."""
    if name == "load_model":
        from medimg.tasks.model import load_model

        return load_model
    raise AttributeError(f"module 'medimg' has no attribute {name!r}")
