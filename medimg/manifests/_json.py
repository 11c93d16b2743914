"""A manifest file's JSON, read strictly: UTF-8, one object, no repeated keys, finite numbers.

:func:`medimg.manifests.load.read_manifest_json` is the public entry point (re-exported there);
this module holds the reading and the JSON-level checks that run before the schema layer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from medimg.errors import ManifestError
from medimg.typing import PathLike

__all__ = ["MAX_JSON_DEPTH", "field_path", "read_manifest_json"]


def read_manifest_json(path: PathLike) -> dict[str, Any]:
    """Read a manifest file's JSON object, or raise :class:`ManifestError` saying why not.

    The file must be UTF-8 (a leading byte-order mark is accepted) and hold one JSON object.
    Beyond what :func:`json.loads` checks, the JSON must not repeat a key in one object (JSON
    readers disagree on which copy wins), hold ``NaN``/``Infinity`` or a number too large for
    a float (not JSON, though Python reads them), or nest deeper than :data:`MAX_JSON_DEPTH`.
    These problems are listed together, each with its field path.

    Raises
    ------
    ManifestError
        If the file is missing, a folder, unreadable, not UTF-8, empty, not valid JSON, not a
        JSON object, or has the problems above.
    """
    path = Path(path)
    text = _read_text(path)
    duplicates: _Duplicates = {}
    try:
        raw = json.loads(text, object_pairs_hook=partial(_object, duplicates=duplicates))
    except json.JSONDecodeError as exc:
        raise ManifestError(
            path,
            [f"(file): not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"],
        ) from None
    except RecursionError:
        raise ManifestError(
            path,
            [
                "(file): JSON nested too deeply to read (hundreds of levels); a manifest "
                "nests 3 (see: medimg manifest schema)"
            ],
        ) from None
    except ValueError as exc:  # an integer of more than 4300 digits
        reason = str(exc).split(";")[0].split(":")[0]
        raise ManifestError(
            path, [f"(file): not valid JSON for medimg: {reason}; write a smaller number"]
        ) from None
    if not isinstance(raw, dict):
        raise ManifestError(
            path, [f"(file): must hold a JSON object {{...}}, got {type(raw).__name__}"]
        )
    problems = _json_problems(raw, duplicates)
    if problems:
        raise ManifestError(path, problems)
    return raw


MAX_JSON_DEPTH = 32
"""Deepest nesting of JSON arrays and objects read in a manifest (a valid one needs 4)."""


def _read_text(path: Path) -> str:
    if "\0" in str(path):
        raise ManifestError(
            path, ["(file): the path holds a NUL character; give the manifest's real path"]
        )
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(path, ["(file): no such file; check the path"]) from None
    except IsADirectoryError:
        raise ManifestError(
            path, ["(file): is a folder, not a manifest file; give the JSON file inside it"]
        ) from None
    except PermissionError:
        raise ManifestError(
            path, ["(file): cannot be read: permission denied; check the file's permissions"]
        ) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ManifestError(path, [f"(file): cannot be read: {reason}"]) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        hint = " (it looks UTF-16 encoded)" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise ManifestError(
            path,
            [
                f"(file): cannot be read as UTF-8 text{hint}: byte {data[exc.start]:#04x} at "
                f"offset {exc.start} cannot be decoded; save the file as UTF-8"
            ],
        ) from None
    if not text.strip():
        raise ManifestError(
            path, ["(file): is empty; a manifest is a JSON object (see: medimg manifest schema)"]
        )
    return text


_Duplicates = dict[int, tuple[dict[str, Any], list[str]]]


def _object(pairs: list[tuple[str, Any]], *, duplicates: _Duplicates) -> dict[str, Any]:
    """``json.loads`` object hook: a dict, with the keys given more than once noted.

    The dict itself is kept with its keys, so its ``id`` cannot be reused by another object.
    """
    out = dict(pairs)
    if len(out) < len(pairs):
        keys = [k for k, _ in pairs]
        duplicates[id(out)] = (out, sorted({k for k in keys if keys.count(k) > 1}))
    return out


def _json_problems(raw: dict[str, Any], duplicates: _Duplicates) -> list[str]:
    """Repeated keys, non-finite numbers and excess nesting, walked without recursion."""
    problems: list[str] = []
    stack: list[tuple[tuple[object, ...], Any]] = [((), raw)]
    while stack:
        loc, value = stack.pop()
        where = field_path(loc) or "(top level)"
        if isinstance(value, float) and not math.isfinite(value):
            what = "NaN" if math.isnan(value) else ("-" if value < 0 else "") + "Infinity"
            problems.append(
                f"{where}: {what} is not a JSON number (NaN and Infinity are not JSON; a "
                "number past 1.8e308 reads as Infinity); write a finite number or null"
            )
        if not isinstance(value, dict | list):
            continue
        if len(loc) >= MAX_JSON_DEPTH:
            problems.append(
                f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels; a manifest nests "
                "3 (see: medimg manifest schema)"
            )
            continue
        noted = duplicates.get(id(value))
        for key in noted[1] if noted is not None and noted[0] is value else ():
            problems.append(
                f"{field_path((*loc, key))}: key {key!r} is given more than once in one "
                "object; keep one (JSON readers disagree on which copy wins)"
            )
        items = value.items() if isinstance(value, dict) else enumerate(value)
        stack += [((*loc, k), v) for k, v in reversed(list(items))]
    return problems


def field_path(loc: Sequence[object]) -> str:
    """A pydantic-style location as text such as ``training[3].image``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
