"""A model's stored inference defaults as prediction settings; a setting the user gives wins.

Every model carries its inference defaults: a package in ``contract.json`` (``inference``:
window, overlap, mirror axes, precision), a folder in its training ``run.json``, both made by
:func:`medimg.packages.inference_defaults`, so a run folder and its package predict the same.
:func:`load_model <medimg.tasks.load_model>` and ``medimg predict`` take the overlap and mirror
axes (for a task whose prediction options have them) and the precision from there when not
given. The window is always the network's own (``roi_size_vox`` of ``model.json``), which is
what the contract records.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medimg.typing import PathLike

__all__ = ["StoredModel", "predict_options_with", "run_record", "stored_model", "stored_precision"]

_OPTION_KEYS = ("sw_overlap", "mirror_axes")
"""Keys of ``inference`` that are prediction-option fields of the same name."""


@dataclass(frozen=True)
class StoredModel:
    """What ``medimg predict`` reads of a model before the engine loads it.

    Attributes
    ----------
    inference : dict
        The inference defaults (empty when ``model.json`` is missing: the engine then says so).
    encrypted : bool
        Whether it is an encrypted package (its weights need the passphrase).
    """

    inference: dict[str, Any]
    encrypted: bool = False


def stored_model(model_dir: Path, *, trust: Sequence[PathLike] | None = None) -> StoredModel:
    """The inference defaults of a model folder or package, without building the network.

    A package is read and verified (:func:`medimg.packages.read_package`, ``trust``); its
    weights are not decrypted unless ``MEDIMG_PASSPHRASE_FILE`` names a passphrase.

    Raises
    ------
    PackageError, PackageSignatureError, PackagePassphraseError
        For a package failing its checks (as loading it would).
    CheckpointError
        For a damaged ``model.json``.
    """
    from medimg.packages import inference_defaults, is_package, read_package
    from medimg.training.bundle import read_model_record

    if model_dir.is_file() and is_package(model_dir):
        package = read_package(model_dir, trust=trust)
        inference = package.contract.get("inference")
        return StoredModel(dict(inference) if isinstance(inference, dict) else {},
                           bool(package.encrypted))  # fmt: skip
    if not (model_dir / "model.json").is_file():
        return StoredModel({})
    network = read_model_record(model_dir)["network"]
    return StoredModel(inference_defaults(
        run_record(model_dir), roi_size_vox=network.get("roi_size_vox"),
        sw_overlap=network.get("sw_overlap"),
    ))  # fmt: skip


def run_record(model_dir: Path) -> dict[str, Any]:
    """The training ``run.json`` beside a folder's ``model.json`` (empty when absent)."""
    try:
        run = json.loads((model_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return run if isinstance(run, dict) else {}


def predict_options_with(
    task: Any, inference: Mapping[str, Any], given: Mapping[str, Any] | None = None
) -> Any:
    """``task``'s prediction options: the ``given`` fields, else the stored defaults.

    Only the stored keys the options class has are used (``sw_overlap``, ``mirror_axes``
    for segmentation; none for classification and detection); a stored None is no default.

    Raises
    ------
    ConfigError
        When a value is refused by the options class (naming the field).
    """
    fields = {f.name for f in dataclasses.fields(task.predict_options)}
    stored = {key: tuple(value) if isinstance(value, list) else value
              for key in _OPTION_KEYS if key in fields
              and (value := inference.get(key)) is not None}  # fmt: skip
    return task.predict_options(**{**stored, **(given or {})})


def stored_precision(inference: Mapping[str, Any], given: str | None) -> str:
    """``given``, else the stored precision, else ``"float32"``."""
    if given is not None:
        return given
    return str(inference.get("precision") or "float32")
