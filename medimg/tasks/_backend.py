"""Prediction backends of the task predictors: the bundle's torch network, or onnxruntime.

``backend="onnxruntime"`` (segmentation's and classification's predict options, ``medimg
predict --backend onnxruntime``) replaces the bundle's network by an
:class:`~medimg.inference.onnx.OnnxNetwork`; everything around it -- preprocessing, the
sliding window, Gaussian stitching, mirroring, the way back to the stored grid, the
classification head -- is the code the torch backend runs. The ONNX network comes from:

* the package member ``network.onnx`` (``medimg model pack --onnx``), verified with every other
  member by :func:`medimg.packages.read_package`, when the model is a package holding one;
* otherwise a cache file exported from the model's verified weights
  (:func:`~medimg.inference.onnx.export_onnx`, atomic): ``network-<checkpoint sha256>.onnx`` in
  a model folder, ``<package>.<checkpoint sha256>.onnx`` beside a package. A retrained model
  has another digest and so another file; a cache file that no longer passes
  ``onnx.checker`` is exported again. An encrypted package's network is exported in memory
  only (a file beside it would hold its weights in the clear), as is any model whose folder
  cannot be written.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import Any, Final

from medimg.errors import ConfigError

__all__ = ["BACKENDS", "backend_settings", "check_backend", "onnx_cache_path", "with_backend"]

logger = logging.getLogger(__name__)

BACKENDS: Final = ("torch", "onnxruntime")
"""What runs the network at prediction."""


def check_backend(backend: str) -> str:
    """``backend`` when it is one of :data:`BACKENDS`; :class:`ConfigError` otherwise."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def backend_settings(backend: str) -> dict[str, str]:
    """The resume-key entry of ``backend``: none for torch (earlier outputs stay valid)."""
    return {} if backend == "torch" else {"backend": backend}


def with_backend(bundle: Any, backend: str, *, device: str, precision: str) -> Any:
    """``bundle`` with its network run by ``backend`` (torch: ``bundle`` itself).

    Raises
    ------
    ConfigError
        For a precision onnxruntime cannot honour (anything but float32: the exported
        network computes in float32), a CUDA device without onnxruntime's CUDA provider, or a
        network the exporter cannot express.
    """
    if check_backend(backend) == "torch":
        return bundle
    from medimg.inference.onnx import OnnxNetwork, onnx_session
    from medimg.networks import NetworkConfig

    if precision != "float32":
        raise ConfigError(
            f"precision {precision!r} cannot be honoured by backend 'onnxruntime' (the ONNX "
            "network computes in float32); use --precision float32 or --backend torch"
        )
    network = bundle.network
    if not isinstance(network, NetworkConfig):
        raise ConfigError(
            f"backend 'onnxruntime' runs segmentation and classification networks, got a "
            f"{type(network).__name__}; use --backend torch"
        )
    session = onnx_session(_onnx_model(bundle), device=device)
    model = OnnxNetwork(
        session, out_channels=network.out_channels, dense=network.task.value == "segmentation"
    )
    logger.info("onnxruntime runs the network (%s)", ", ".join(session.get_providers()))
    return dataclasses.replace(bundle, model=model)


def onnx_cache_path(bundle: Any) -> Path | None:
    """Where the exported network of ``bundle`` is cached; ``None``: kept in memory only."""
    source = bundle.source
    if source is None:
        return None
    key = bundle.checkpoint_sha256
    if source.package is None:
        return Path(source.path) / f"network-{key}.onnx"
    if source.package.manifest.get("encryption"):
        return None
    path = Path(source.path)
    return path.with_name(f"{path.name}.{key}.onnx")


def _onnx_model(bundle: Any) -> Path | bytes:
    package = None if bundle.source is None else bundle.source.package
    if package is not None and (data := package.onnx_bytes()) is not None:
        logger.info("%s: running its network.onnx", package.path)
        return bytes(data)
    cache = onnx_cache_path(bundle)
    if cache is not None and _usable(cache):
        return cache
    if cache is not None:
        try:
            return _export(bundle, cache)
        except PermissionError as exc:
            logger.warning(
                "%s: cannot cache the ONNX network (%s); exporting in memory", cache, exc
            )
    with tempfile.TemporaryDirectory(prefix="medimg-onnx-") as folder:
        return _export(bundle, Path(folder) / "network.onnx").read_bytes()


def _usable(path: Path) -> bool:
    import onnx

    if not path.is_file():
        return False
    try:
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, OSError) as exc:
        logger.warning("%s: exporting the ONNX network again: %s", path, exc)
        return False
    return True


def _export(bundle: Any, path: Path) -> Path:
    from medimg.inference.onnx import export_onnx

    network = bundle.network
    logger.info("exporting the network to ONNX: %s", path)
    return export_onnx(
        bundle.model, in_channels=network.in_channels, spatial_dims=network.spatial_dims,
        path=path, sample_size_vox=network.roi_size_vox, overwrite=True,
    )  # fmt: skip
