"""A trained model: what predicting needs, written by training, read back checked.

``model.json`` holds the network configuration, the preprocessing options, the modality, the
output names (segmentation labels or classes) and the SHA-256 of the checkpoint and of the
dataset fingerprint, which sits beside it in ``fingerprint.json``, and the task's typed head
(``head``: classification's ``multi_label`` and ``input_size_vox``; older classification
folders keep it in ``classifier.json``, read through the same checks). :func:`load_model_bundle`
checks every key and type of ``model.json`` (a hand-edited or damaged record is refused naming
the key, never half-used), rebuilds the network, verifies both digests and loads the weights
with ``weights_only=True`` (detection passes its :class:`~medimg.networks.DetectorConfig`
and builder); :func:`read_model_record` is the checked record alone, to tell a folder's task.

A model package (``.medimg``, :mod:`medimg.packages`) goes through the same checks:
:func:`open_model` reads a folder's ``model.json`` or a package (member hashes, signature,
decryption: :func:`medimg.packages.read_package`) into one :class:`ModelSource`, and
:func:`load_model_bundle` builds the bundle from either in one way -- record checks, settings,
head, network, ``load_state_dict`` -- only the place the weights and the fingerprint are read
from differs (``best.pt`` with ``weights_only=True``, or the package's safetensors).
``ModelBundle.weights_sha256`` is a digest of the weights themselves (:func:`weights_sha256`:
names, dtypes, shapes and bytes of every tensor), so a run folder and a package made from it
have the same one whatever file holds them; prediction's resume key uses it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medimg.errors import CheckpointError, ConfigError, FingerprintError
from medimg.evaluation.report import write_json
from medimg.networks import DetectorConfig, NetworkConfig, build_network
from medimg.training._record_checks import (
    check_record,
    describe_value,
    inside,
    read_record_file,
    settings_from_json,
)
from medimg.training.checkpoint import load_checkpoint, sha256_file
from medimg.training.record import to_jsonable
from medimg.typing import PathLike

if TYPE_CHECKING:
    import torch

    from medimg.fingerprint import Fingerprint
    from medimg.transforms import PreprocessConfig

__all__ = [
    "MODEL_RECORD",
    "ModelBundle",
    "ModelSource",
    "load_model_bundle",
    "open_model",
    "read_model_record",
    "save_model_bundle",
    "weights_sha256",
]

logger = logging.getLogger(__name__)

MODEL_RECORD = "model.json"


@dataclass(frozen=True)
class ModelBundle:
    """A trained network, in evaluation mode on the CPU, with what its inputs need.

    ``checkpoint_sha256`` is the record's digest of its weights file (``best.pt``, or a
    package's ``weights.safetensors``); ``weights_sha256`` the digest of the weights
    themselves (:func:`weights_sha256`), equal for a run folder and its package; ``source``
    where the model was read from.
    """

    model: torch.nn.Module
    network: NetworkConfig | DetectorConfig
    preprocess: PreprocessConfig
    modality: str
    outputs: dict[int, str]
    fingerprint: Fingerprint | None
    checkpoint_sha256: str
    head: Any = None
    weights_sha256: str = ""
    source: ModelSource | None = None


@dataclass(frozen=True)
class ModelSource:
    """A model's checked record and where it came from: a model folder or a package.

    ``path`` is the folder (holding ``model.json``) or the package file; ``record`` its
    ``model.json`` with every key checked; ``record_name`` names the record in messages;
    ``package`` is the verified :class:`medimg.packages.ModelPackage` (``None`` for a folder).
    """

    path: Path
    record: dict[str, Any]
    record_name: str
    package: Any = None


_OLD_HEAD = "classifier.json"
"""Where classification models written before the head moved into model.json keep it."""


def save_model_bundle(
    model_dir: PathLike,
    *,
    network: NetworkConfig | DetectorConfig,
    preprocess: PreprocessConfig,
    modality: str,
    outputs: Mapping[int, str],
    fingerprint: Fingerprint | None,
    checkpoint: str,
    head: object | None = None,
) -> Path:
    """Write ``model.json`` (and ``fingerprint.json``) into ``model_dir``; return model.json.

    ``checkpoint`` names the weights file in ``model_dir`` (``best.pt``); its digest is
    recorded now and checked at every load. ``outputs`` maps output index to label or class.
    ``head`` is the task's settings dataclass of the model (written under ``head``).
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
        record["fingerprint_sha256"] = sha256_file(folder / "fingerprint.json")
    if head is not None:
        record["head"] = to_jsonable(head)
    return write_json(record, folder / MODEL_RECORD, overwrite=True)


def open_model(
    source: PathLike | ModelSource,
    *,
    trust: Sequence[PathLike] | None = None,
    passphrase: str | None = None,
) -> ModelSource:
    """The checked record of a model folder or a package (nothing built, no weight read).

    A package (:func:`medimg.packages.is_package`) is read and verified by
    :func:`medimg.packages.read_package` with ``trust`` and ``passphrase``; a folder must hold
    ``model.json``. A :class:`ModelSource` is returned as it is.

    Raises
    ------
    ConfigError
        When a folder holds no ``model.json``.
    CheckpointError
        When the record is damaged (as :func:`load_model_bundle`).
    PackageError
        When a package fails its checks (:func:`medimg.packages.read_package`).
    """
    if isinstance(source, ModelSource):
        return source
    path = Path(source)
    if path.is_file() and _is_package(path):
        from medimg.packages import read_package

        package = read_package(path, trust=trust, passphrase=passphrase)
        name = f"{path}: member {MODEL_RECORD!r}"
        fix = "the package is damaged or was made by another medimg: pack it again"
        return ModelSource(path, check_record(package.record, name, fix), name, package)
    record = path / MODEL_RECORD
    if not record.is_file():
        raise ConfigError(f"model folder must hold {MODEL_RECORD}, got none in {path}; train first")
    return ModelSource(path, read_record_file(record), str(record))


def _is_package(path: Path) -> bool:
    from medimg.packages import is_package

    return bool(is_package(path))


def read_model_record(
    model_dir: PathLike | ModelSource,
    *,
    trust: Sequence[PathLike] | None = None,
    passphrase: str | None = None,
) -> dict[str, Any]:
    """The ``model.json`` of a model folder or package, every key present and of its type.

    Raises as :func:`open_model` (:class:`ConfigError` for a folder without ``model.json``).
    """
    return open_model(model_dir, trust=trust, passphrase=passphrase).record


def load_model_bundle(
    model_dir: PathLike | ModelSource,
    *,
    head_type: type[Any] | None = None,
    network_type: type[Any] = NetworkConfig,
    build: Callable[[Any], torch.nn.Module] = build_network,
    trust: Sequence[PathLike] | None = None,
    passphrase: str | None = None,
) -> ModelBundle:
    """Rebuild the network of a model folder or package with its verified weights.

    ``model_dir`` is a model folder, a package (read with ``trust`` and ``passphrase``, see
    :func:`open_model`) or an opened :class:`ModelSource`. With ``head_type`` (a task's
    settings dataclass) the record's ``head`` is checked field by field and built into it
    (``ModelBundle.head``). The record's ``network`` is checked as a ``network_type`` and the
    module built by ``build`` from it (default: a :class:`~medimg.networks.NetworkConfig` and
    :func:`~medimg.networks.build_network`).

    Raises
    ------
    ConfigError
        When ``model_dir`` has no ``model.json`` (not a trained model folder).
    CheckpointError
        When ``model.json`` is not valid JSON, lacks a key or has a wrong type or value (the
        message names the file and the key), or the weights or the fingerprint are missing,
        replaced, damaged, not loadable with ``weights_only=True`` or do not fit the network;
        or ``head_type`` is given and the head is missing or not of it.
    PackageError
        When a package fails its checks.
    """
    from medimg.transforms import PreprocessConfig

    source = open_model(model_dir, trust=trust, passphrase=passphrase)
    record, name = source.record, source.record_name
    network = settings_from_json(network_type, record["network"], name, "network")
    preprocess = settings_from_json(PreprocessConfig, record["preprocess"], name, "preprocess")
    head = None if head_type is None else _head(source, head_type)
    model = build(network)
    weights, where = _weights(source)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:  # torch: missing, unexpected or differently shaped tensors
        first = str(exc).strip().splitlines()[:2]
        raise CheckpointError(
            f"{where} does not fit the network of {name} "
            f"({' '.join(line.strip() for line in first)[:300]}); {MODEL_RECORD} and the weights "
            "come from different runs: train again or restore the folder"
        ) from None
    return ModelBundle(
        model=model.eval(),
        network=network,
        preprocess=preprocess,
        modality=record["modality"],
        outputs={int(k): v for k, v in record["outputs"].items()},
        fingerprint=_fingerprint(source),
        checkpoint_sha256=record["checkpoint_sha256"],
        head=head,
        weights_sha256=weights_sha256(model.state_dict()),
        source=source,
    )


def weights_sha256(weights: Mapping[str, Any]) -> str:
    """SHA-256 of a state dict's tensors: each name, dtype, shape and bytes, names sorted.

    The digest of the weights, not of a file, so ``best.pt`` and a package's safetensors
    holding the same tensors have the same one.

    Examples
    --------
    >>> import torch
    >>> a = weights_sha256({"w": torch.ones(2, 3), "b": torch.zeros(3)})
    >>> a == weights_sha256({"b": torch.zeros(3), "w": torch.ones(2, 3).t().contiguous().t()})
    True
    >>> a == weights_sha256({"w": torch.ones(3, 2), "b": torch.zeros(3)})
    False
    """
    import torch

    digest = hashlib.sha256()
    for name in sorted(weights):
        tensor = torch.as_tensor(weights[name]).detach().cpu().contiguous()
        header = f"{name}\0{str(tensor.dtype).removeprefix('torch.')}\0{list(tensor.shape)}\0"
        digest.update(header.encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _weights(source: ModelSource) -> tuple[Mapping[str, Any], str]:
    """The state dict of the model and where it was read (for messages)."""
    if source.package is not None:
        where = f"package {source.path} member {source.record['checkpoint']!r}"
        state = source.package.state_dict()
        if not isinstance(state, Mapping):
            raise CheckpointError(f"weights {where} must be a state dict; pack the model again")
        return state, where
    checkpoint = inside(source.path, source.record["checkpoint"], source.record_name,
                         "checkpoint")  # fmt: skip
    # a truncated file is a CheckpointError from load_checkpoint; other OSErrors (EACCES, EIO)
    # reach the caller as they are, so the CLI names the real cause
    state = load_checkpoint(checkpoint, sha256=source.record["checkpoint_sha256"])
    weights = state.get("model") if isinstance(state, dict) else None
    if not isinstance(weights, Mapping):
        raise CheckpointError(
            f"checkpoint {checkpoint} must hold the network's weights under 'model', got "
            f"{type(state).__name__} with keys {sorted(state) if isinstance(state, dict) else []}"
        )
    return weights, f"checkpoint {checkpoint}"


def _head(source: ModelSource, head_type: type[Any]) -> Any:
    """The record's ``head`` (or an older folder's ``classifier.json``) as ``head_type``."""
    fix = "the model is damaged, was edited or is of another task: train again"
    where: object = source.record_name
    values = source.record.get("head")
    old = source.path / _OLD_HEAD
    if values is None and source.package is None and old.is_file():
        where = old
        try:
            values = json.loads(old.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{old}: must be UTF-8 JSON, got {exc}; {fix}") from None
    if not isinstance(values, dict):
        raise CheckpointError(
            f"{where}: key 'head' must be an object of {head_type.__name__} settings, got "
            f"{describe_value(values)}; {fix}"
        )
    return settings_from_json(head_type, values, where, "head")


def _fingerprint(source: ModelSource) -> Fingerprint | None:
    from medimg.fingerprint import Fingerprint

    record, path = source.record, source.record_name
    if record["fingerprint"] is None:
        return None
    if source.package is not None:
        where = f"{source.path}: member {record['fingerprint']!r}"
        text = source.package.fingerprint_json
        if text is None:
            raise CheckpointError(f"{where} named by {path} is missing; pack the model again")
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    else:
        fp_path = inside(source.path, record["fingerprint"], path, "fingerprint")
        where = str(fp_path)
        if not fp_path.is_file():
            raise CheckpointError(
                f"fingerprint {fp_path} named by {path} not found; restore it or train again"
            )
        data = fp_path.read_bytes()
    expected = record.get("fingerprint_sha256")
    if expected is None:
        logger.warning("%s records no fingerprint_sha256 (older medimg); %s is not verified",
                       path, where)  # fmt: skip
    elif (found := hashlib.sha256(data).hexdigest()) != expected:
        raise CheckpointError(
            f"fingerprint {where} has SHA-256 {found}, expected {expected} (recorded in {path}); "
            "it was replaced or damaged: restore it or train again"
        )
    try:
        return Fingerprint.from_json(data.decode("utf-8"))
    except FingerprintError as exc:
        raise CheckpointError(
            f"fingerprint {where} cannot be read: {exc.reason}; restore it or train again"
        ) from None
    except UnicodeDecodeError as exc:
        raise CheckpointError(
            f"fingerprint {where} cannot be read: not UTF-8 text ({exc}); restore it or train again"
        ) from None
