"""Models in other ecosystems' formats: MONAI bundles.

* :func:`export_monai_bundle` -- a run folder, model folder or package as a MONAI bundle
  (``configs/metadata.json``, ``configs/inference.json``, ``models/model.pt``);
* :func:`import_monai_bundle` -- a MONAI bundle whose network is one of medimg's as a medimg
  model folder that ``medimg predict`` takes.

ONNX export lives with the inference backends (:mod:`medimg.inference.onnx`).
"""

from __future__ import annotations

from medimg.interop._monai_import import import_monai_bundle
from medimg.interop.monai_bundle import BUNDLE_FILES, export_monai_bundle, network_def

__all__ = ["BUNDLE_FILES", "export_monai_bundle", "import_monai_bundle", "network_def"]
