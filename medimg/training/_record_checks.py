"""Checks of a model record's settings: JSON values turned into typed settings dataclasses.

:func:`settings_from_json` builds a settings dataclass (a network, preprocessing or head
config) from the JSON object of a model record, each field's value checked against its type
hint first, so a hand-edited or damaged record is refused naming the key, never half-used.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medimg.errors import CheckpointError, ConfigError

__all__ = [
    "JSON_NAMES",
    "MODEL_KEYS",
    "check_record",
    "describe_value",
    "inside",
    "read_record_file",
    "settings_from_json",
]

MODEL_KEYS: Mapping[str, tuple[type, ...]] = types.MappingProxyType(
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


JSON_NAMES = {dict: "an object", str: "a string", type(None): "null"}


def describe_value(value: object) -> str:
    """A JSON value for a message: its type and (up to 40 characters of) its text."""
    text = json.dumps(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def settings_from_json(cls: type[Any], values: Mapping[str, Any], path: object, key: str) -> Any:
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
                f"{path}: {key}.{name} must be {exc}, got {describe_value(value)}"
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


def read_record_file(path: Path) -> dict[str, Any]:
    """``model.json`` parsed, with every key present and of its type."""
    fix = "the model folder is damaged or was edited: train again or restore it"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path}: must be UTF-8 JSON, got {exc.reason}; {fix}") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); {fix}"
        ) from None
    return check_record(record, str(path), fix)


def check_record(record: object, path: str, fix: str) -> dict[str, Any]:
    """``record`` when every key of a model record is present and of its type."""
    from medimg.modality import lookup_modality

    if not isinstance(record, dict):
        raise CheckpointError(
            f"{path}: must hold a JSON object, got {describe_value(record)}; {fix}"
        )
    missing = [key for key in MODEL_KEYS if key not in record]
    if missing:
        raise CheckpointError(f"{path}: missing key{'s' * (len(missing) > 1)} "
                              f"{', '.join(map(repr, missing))}; {fix}")  # fmt: skip
    for key, kinds in MODEL_KEYS.items():
        if not isinstance(record[key], kinds):
            raise CheckpointError(
                f"{path}: key {key!r} must be {' or '.join(JSON_NAMES[k] for k in kinds)}, "
                f"got {describe_value(record[key])}; {fix}"
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


def inside(folder: Path, name: str, path: str, key: str) -> Path:
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
            f"'-', '.', '/' between folders), got {describe_value(name)}"
        )
    return folder / relative
