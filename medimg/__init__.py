"""medimg: medical-imaging pipelines on MONAI.

Subpackages
-----------
io
    Geometry-true reading and atomic writing of NIfTI, NRRD, MHA/MHD and Analyze files.
synthetic
    Seeded phantoms (CT, MRI, X-ray) with answers known in advance.
cli
    The ``medimg`` command (a thin layer over the library).

Importing :mod:`medimg` only defines things: no logging setup, no hardware probing, and no
heavy imports (torch and MONAI load when a function that needs them runs).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
