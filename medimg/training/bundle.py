"""A trained model's folder: what predicting needs, written by training, read back checked.

``model.json`` holds the network configuration, the preprocessing options, the modality, the
output names (segmentation labels or classes) and the checkpoint's SHA-256; the dataset
fingerprint sits beside it in ``fingerprint.json``. :func:`load_model_bundle` rebuilds the
network, verifies the checkpoint's digest and loads its weights with ``weights_only=True``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medimg.errors import ConfigError
from medimg.evaluation.report import write_json
from medimg.networks import NetworkConfig, build_network
from medimg.training.checkpoint import load_checkpoint, sha256_file
from medimg.training.record import to_jsonable
from medimg.typing import PathLike

if TYPE_CHECKING:
    import torch

    from medimg.fingerprint import Fingerprint
    from medimg.transforms import PreprocessConfig

__all__ = ["MODEL_RECORD", "ModelBundle", "load_model_bundle", "save_model_bundle"]

MODEL_RECORD = "model.json"


@dataclass(frozen=True)
class ModelBundle:
    """A trained network, in evaluation mode on the CPU, with what its inputs need."""

    model: torch.nn.Module
    network: NetworkConfig
    preprocess: PreprocessConfig
    modality: str
    outputs: dict[int, str]
    fingerprint: Fingerprint | None
    checkpoint_sha256: str


def save_model_bundle(
    model_dir: PathLike,
    *,
    network: NetworkConfig,
    preprocess: PreprocessConfig,
    modality: str,
    outputs: Mapping[int, str],
    fingerprint: Fingerprint | None,
    checkpoint: str,
) -> Path:
    """Write ``model.json`` (and ``fingerprint.json``) into ``model_dir``; return model.json.

    ``checkpoint`` names the weights file in ``model_dir`` (``best.pt``); its digest is
    recorded now and checked at every load. ``outputs`` maps output index to label or class.
    """
    folder = Path(model_dir)
    record = {
        "network": to_jsonable(network),
        "preprocess": to_jsonable(preprocess),
        "modality": modality,
        "outputs": {str(k): v for k, v in outputs.items()},
        "checkpoint": checkpoint,
        "checkpoint_sha256": sha256_file(folder / checkpoint),
        "fingerprint": None if fingerprint is None else "fingerprint.json",
    }
    if fingerprint is not None:
        (folder / "fingerprint.json").write_text(fingerprint.to_json() + "\n", encoding="utf-8")
    return write_json(record, folder / MODEL_RECORD, overwrite=True)


def _tuples(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def load_model_bundle(model_dir: PathLike) -> ModelBundle:
    """Rebuild the network of ``model_dir`` with its verified weights.

    Raises
    ------
    ConfigError
        When ``model_dir`` has no ``model.json`` (not a trained model folder).
    CheckpointError
        When the weights are missing, replaced or not loadable with ``weights_only=True``.
    """
    from medimg.fingerprint import Fingerprint
    from medimg.transforms import PreprocessConfig

    folder = Path(model_dir)
    path = folder / MODEL_RECORD
    if not path.is_file():
        raise ConfigError(
            f"model folder must hold {MODEL_RECORD}, got none in {folder}; train first"
        )
    record = json.loads(path.read_text(encoding="utf-8"))
    network = NetworkConfig(**_tuples(record["network"]))
    model = build_network(network)
    state = load_checkpoint(folder / record["checkpoint"], sha256=record["checkpoint_sha256"])
    model.load_state_dict(state["model"])
    fp_name = record["fingerprint"]
    fingerprint = None if fp_name is None else Fingerprint.from_json((folder / fp_name).read_text())
    return ModelBundle(
        model=model.eval(),
        network=network,
        preprocess=PreprocessConfig(**_tuples(record["preprocess"])),
        modality=record["modality"],
        outputs={int(k): v for k, v in record["outputs"].items()},
        fingerprint=fingerprint,
        checkpoint_sha256=record["checkpoint_sha256"],
    )
