"""A trained model's folder: what predicting needs, written by training, read back checked.

``model.json`` holds the network configuration, the preprocessing options, the modality, the
output names (segmentation labels or classes) and the SHA-256 of the checkpoint and of the
dataset fingerprint, which sits beside it in ``fingerprint.json``, and the task's typed head
(``head``: classification's ``multi_label`` and ``input_size_vox``; older classification
folders keep it in ``classifier.json``, read through the same checks). :func:`load_model_bundle`
checks every key and type of ``model.json`` (a hand-edited or damaged record is refused naming
the key, never half-used), rebuilds the network, verifies both digests and loads the weights
with ``weights_only=True`` (detection passes its :class:`~medimg.networks.DetectorConfig`
and builder); :func:`read_model_record` is the checked record alone, to tell a folder's task.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medimg.errors import CheckpointError, ConfigError, FingerprintError
from medimg.evaluation.report import write_json
from medimg.networks import DetectorConfig, NetworkConfig, build_network
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
    "load_model_bundle",
    "read_model_record",
    "save_model_bundle",
]

logger = logging.getLogger(__name__)

MODEL_RECORD = "model.json"

_KEYS: Mapping[str, tuple[type, ...]] = types.MappingProxyType(
    {
        "network": (dict,),
        "preprocess": (dict,),
        "modality": (str,),
        "outputs": (dict,),
        "checkpoint": (str,),
        "checkpoint_sha256": (str,),
        "fingerprint": (str, type(None)),
    }
)
"""The keys of ``model.json`` and their JSON types (``fingerprint_sha256`` is optional)."""

_SHA256 = re.compile(r"[0-9a-f]{64}")
_FILE_NAME = re.compile(r"[\w.-]+(/[\w.-]+)*")


@dataclass(frozen=True)
class ModelBundle:
    """A trained network, in evaluation mode on the CPU, with what its inputs need."""

    model: torch.nn.Module
    network: NetworkConfig | DetectorConfig
    preprocess: PreprocessConfig
    modality: str
    outputs: dict[int, str]
    fingerprint: Fingerprint | None
    checkpoint_sha256: str
    head: Any = None


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


def read_model_record(model_dir: PathLike) -> dict[str, Any]:
    """``model_dir``'s ``model.json``, every key present and of its type (nothing loaded).

    Raises :class:`ConfigError` without ``model.json``, else as :func:`load_model_bundle`.
    """
    folder = Path(model_dir)
    path = folder / MODEL_RECORD
    if not path.is_file():
        raise ConfigError(
            f"model folder must hold {MODEL_RECORD}, got none in {folder}; train first"
        )
    return _read_record(path)


def load_model_bundle(
    model_dir: PathLike,
    *,
    head_type: type[Any] | None = None,
    network_type: type[Any] = NetworkConfig,
    build: Callable[[Any], torch.nn.Module] = build_network,
) -> ModelBundle:
    """Rebuild the network of ``model_dir`` with its verified weights.

    With ``head_type`` (a task's settings dataclass) the record's ``head`` is checked field by
    field and built into it (``ModelBundle.head``). The record's ``network`` is checked as a
    ``network_type`` and the module built by ``build`` from it (default: a
    :class:`~medimg.networks.NetworkConfig` and :func:`~medimg.networks.build_network`).

    Raises
    ------
    ConfigError
        When ``model_dir`` has no ``model.json`` (not a trained model folder).
    CheckpointError
        When ``model.json`` is not valid JSON, lacks a key or has a wrong type or value (the
        message names the file and the key), or the weights or the fingerprint are missing,
        replaced, damaged, not loadable with ``weights_only=True`` or do not fit the network;
        or ``head_type`` is given and the head is missing or not of it.
    """
    from medimg.transforms import PreprocessConfig

    folder = Path(model_dir)
    path = folder / MODEL_RECORD
    record = read_model_record(folder)
    network = _settings(network_type, record["network"], path, "network")
    preprocess = _settings(PreprocessConfig, record["preprocess"], path, "preprocess")
    head = None if head_type is None else _head(folder, record, path, head_type)
    model = build(network)
    checkpoint = _inside(folder, record["checkpoint"], path, "checkpoint")
    # a truncated file is a CheckpointError from load_checkpoint; other OSErrors (EACCES, EIO)
    # reach the caller as they are, so the CLI names the real cause
    state = load_checkpoint(checkpoint, sha256=record["checkpoint_sha256"])
    weights = state.get("model") if isinstance(state, dict) else None
    if not isinstance(weights, Mapping):
        raise CheckpointError(
            f"checkpoint {checkpoint} must hold the network's weights under 'model', got "
            f"{type(state).__name__} with keys {sorted(state) if isinstance(state, dict) else []}"
        )
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:  # torch: missing, unexpected or differently shaped tensors
        first = str(exc).strip().splitlines()[:2]
        raise CheckpointError(
            f"checkpoint {checkpoint} does not fit the network of {path} "
            f"({' '.join(line.strip() for line in first)[:300]}); model.json and the weights "
            "come from different runs: train again or restore the folder"
        ) from None
    return ModelBundle(
        model=model.eval(),
        network=network,
        preprocess=preprocess,
        modality=record["modality"],
        outputs={int(k): v for k, v in record["outputs"].items()},
        fingerprint=_fingerprint(folder, record, path),
        checkpoint_sha256=record["checkpoint_sha256"],
        head=head,
    )


def _head(folder: Path, record: Mapping[str, Any], path: Path, head_type: type[Any]) -> Any:
    """The record's ``head`` (or an older folder's ``classifier.json``) as ``head_type``."""
    fix = "the model folder is damaged, was edited or is of another task: train again"
    where, values = path, record.get("head")
    old = folder / _OLD_HEAD
    if values is None and old.is_file():
        where = old
        try:
            values = json.loads(old.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{old}: must be UTF-8 JSON, got {exc}; {fix}") from None
    if not isinstance(values, dict):
        raise CheckpointError(
            f"{where}: key 'head' must be an object of {head_type.__name__} settings, got "
            f"{_kind(values)}; {fix}"
        )
    return _settings(head_type, values, where, "head")


def _read_record(path: Path) -> dict[str, Any]:
    """``model.json`` parsed, with every key present and of its type."""
    from medimg.modality import lookup_modality

    fix = "the model folder is damaged or was edited: train again or restore it"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path}: must be UTF-8 JSON, got {exc.reason}; {fix}") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); {fix}"
        ) from None
    if not isinstance(record, dict):
        raise CheckpointError(f"{path}: must hold a JSON object, got {_kind(record)}; {fix}")
    missing = [key for key in _KEYS if key not in record]
    if missing:
        raise CheckpointError(f"{path}: missing key{'s' * (len(missing) > 1)} "
                              f"{', '.join(map(repr, missing))}; {fix}")  # fmt: skip
    for key, kinds in _KEYS.items():
        if not isinstance(record[key], kinds):
            raise CheckpointError(
                f"{path}: key {key!r} must be {' or '.join(_JSON_NAMES[k] for k in kinds)}, "
                f"got {_kind(record[key])}; {fix}"
            )
    for key in ("checkpoint_sha256", "fingerprint_sha256"):
        if key in record and not (isinstance(record[key], str) and _SHA256.fullmatch(record[key])):
            raise CheckpointError(
                f"{path}: key {key!r} must be 64 lowercase hex digits, got {record[key]!r}; {fix}"
            )
    for k, v in record["outputs"].items():
        if not (k.isdigit() and isinstance(v, str)):
            raise CheckpointError(
                f"{path}: key 'outputs' must map output indices to names, got {k!r}: {v!r}; {fix}"
            )
    try:
        lookup_modality(record["modality"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: key 'modality': {exc}; {fix}") from None
    return record


_JSON_NAMES = {dict: "an object", str: "a string", type(None): "null"}


def _kind(value: object) -> str:
    text = json.dumps(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _inside(folder: Path, name: str, path: Path, key: str) -> Path:
    """``folder / name``, refused unless ``name`` is a plain relative path inside the folder.

    A record must stay portable (no absolute path, no ``..``), and a name the file system
    cannot hold (over 255 bytes a part, odd characters) is refused here rather than by ``stat``.
    """
    relative = Path(name)
    if (
        not _FILE_NAME.fullmatch(name)
        or ".." in relative.parts
        or any(len(part.encode()) > 255 for part in relative.parts)
    ):
        raise CheckpointError(
            f"{path}: key {key!r} must name a file inside {folder} (letters, digits, '_', "
            f"'-', '.', '/' between folders), got {_kind(name)}"
        )
    return folder / relative


def _fingerprint(folder: Path, record: Mapping[str, Any], path: Path) -> Fingerprint | None:
    from medimg.fingerprint import Fingerprint

    if record["fingerprint"] is None:
        return None
    fp_path = _inside(folder, record["fingerprint"], path, "fingerprint")
    if not fp_path.is_file():
        raise CheckpointError(
            f"fingerprint {fp_path} named by {path} not found; restore it or train again"
        )
    expected = record.get("fingerprint_sha256")
    if expected is None:
        logger.warning("%s records no fingerprint_sha256 (older medimg); %s is not verified",
                       path, fp_path)  # fmt: skip
    elif (found := sha256_file(fp_path)) != expected:
        raise CheckpointError(
            f"fingerprint {fp_path} has SHA-256 {found}, expected {expected} (recorded in {path}); "
            "it was replaced or damaged: restore it or train again"
        )
    try:
        return Fingerprint.from_json(fp_path.read_text(encoding="utf-8"))
    except FingerprintError as exc:
        raise CheckpointError(
            f"fingerprint {fp_path} cannot be read: {exc.reason}; restore it or train again"
        ) from None
    except UnicodeDecodeError as exc:
        raise CheckpointError(
            f"fingerprint {fp_path} cannot be read: not UTF-8 text ({exc}); "
            "restore it or train again"
        ) from None


def _settings(cls: type[Any], values: Mapping[str, Any], path: Path, key: str) -> Any:
    """``cls(**values)`` for a settings dataclass, each field's JSON value checked first."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise CheckpointError(
            f"{path}: {key}.{unknown[0]} is not a setting of {cls.__name__} "
            f"(valid: {', '.join(fields)})"
        )
    required = [n for n, f in fields.items() if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING]  # fmt: skip
    missing = [name for name in required if name not in values]
    if missing:
        raise CheckpointError(f"{path}: {key}.{missing[0]} is missing")
    converted = {}
    for name, value in values.items():
        try:
            converted[name] = _as_type(value, hints[name])
        except TypeError as exc:
            raise CheckpointError(
                f"{path}: {key}.{name} must be {exc}, got {_kind(value)}"
            ) from None
    try:
        return cls(**converted)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {key}: {exc}") from None


def _as_type(value: Any, hint: Any) -> Any:
    """``value`` as the type ``hint`` (JSON lists become tuples); TypeError names the type."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _as_type(value, option)
            except TypeError:
                continue
        raise TypeError(" or ".join(_type_name(a) for a in args))
    if origin is typing.Literal:
        if value in args:
            return value
        raise TypeError(f"one of {', '.join(map(repr, args))}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise TypeError(_type_name(hint))
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) != len(value):
            raise TypeError(_type_name(hint))
        try:
            return tuple(_as_type(v, t) for v, t in zip(value, items, strict=True))
        except TypeError:
            raise TypeError(_type_name(hint)) from None
    if hint is type(None):
        if value is None:
            return None
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif isinstance(hint, type) and isinstance(value, hint):
        if not (hint is int and isinstance(value, bool)):
            return value
    raise TypeError(_type_name(hint))


def _type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0])}"
        return f"a list of {len(args)} ({', '.join(_type_name(a) for a in args)})"
    if origin is typing.Literal:
        return f"one of {', '.join(map(repr, args))}"
    names = {int: "int", float: "number", str: "string", bool: "bool", type(None): "null"}
    return names.get(hint, str(hint))
