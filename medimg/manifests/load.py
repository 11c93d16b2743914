"""Load a manifest file: parse, validate every layer, report every problem at once."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from medimg._suggest import did_you_mean
from medimg.errors import ConfigError, ManifestError
from medimg.manifests._json import MAX_JSON_DEPTH, field_path, read_manifest_json
from medimg.manifests.boxes import Box
from medimg.manifests.importers import convert_dataset_json, detect_format
from medimg.manifests.schema import (
    SPLITS,
    TASKS,
    Case,
    Channel,
    LabelDef,
    Manifest,
    MetadataValue,
    consistency_problems,
)
from medimg.typing import PathLike

__all__ = [
    "MAX_JSON_DEPTH",
    "ResolvedCase",
    "Tolerances",
    "case_path_problems",
    "load_manifest",
    "manifest_sha256",
    "read_manifest_json",
    "resolve_cases",
    "save_manifest",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Tolerances:
    """How strict the content checks are.

    Attributes
    ----------
    grid_mm : float
        Largest distance in mm between corresponding corner voxels of an image and its label
        (or of two channels) before they count as different grids.
    check_label_values : bool
        Read label maps' voxels to check every value is declared, is an integer and is finite.
    max_bytes : int or None
        Decode limit of one volume, as :func:`medimg.io.load_volume`'s ``max_bytes``: a file
        whose decoded array would be larger is reported. None: the limit training uses,
        :func:`medimg.io.default_max_bytes` at the time of the check.
    """

    grid_mm: float = 1e-3
    check_label_values: bool = True
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.grid_mm < math.inf:
            raise ConfigError(f"grid_mm must be a finite distance >= 0 mm, got {self.grid_mm}")
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise ConfigError(f"max_bytes must be > 0 or None, got {self.max_bytes}")


@dataclass(frozen=True, kw_only=True)
class ResolvedCase:
    """One case with absolute paths, ready for a pipeline.

    Attributes
    ----------
    split : str
        ``"training"``, ``"validation"`` or ``"test"``.
    case_id : str
    images : tuple of Path
        One path per channel, or one multi-channel file.
    label : Path or None
        Label map (segmentation).
    class_index : int or None
        Index of the case's class in ``manifest.classes`` (classification).
    metadata : dict
    boxes : tuple of Box or None
        Lesion boxes in world RAS+ mm (detection); None when the case lists none, ``()`` for
        an annotated scan without lesions.
    """

    split: str
    case_id: str
    images: tuple[Path, ...]
    label: Path | None = None
    class_index: int | None = None
    metadata: dict[str, MetadataValue] = field(default_factory=dict)
    boxes: tuple[Box, ...] | None = None


def manifest_sha256(path: PathLike) -> str:
    """SHA-256 hex digest of a manifest file's bytes (recorded in fingerprints and runs)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_manifest(
    path: PathLike, *, check_files: bool = True, tolerances: Tolerances | None = None
) -> Manifest:
    """Parse and validate a dataset manifest; raise one error listing every problem.

    Parameters
    ----------
    path : path-like
        The manifest JSON file. Case paths are relative to its folder. An MSD or nnU-Net v2
        ``dataset.json`` is accepted too (converted by
        :func:`medimg.manifests.importers.convert_dataset_json`).
    check_files : bool
        Also check the files as training will read them (:mod:`medimg.manifests.checks`):
        they exist, are image files (not folders) and stay inside the manifest's folder once
        links are resolved; headers parse; the load policies of
        :func:`medimg.io.load_volume` hold (no shear, 2D/3D as the modality, a supported
        dtype, the decode limit, finite voxels); grids of images and labels agree; label
        values are declared; channel counts fit. Voxels are read only where needed: float
        (or float-scaled) images for the finite check, and label maps. Without it only the
        schema and the paths' form are checked (no disk access beyond the manifest).
    tolerances : Tolerances, optional
        Strictness of the file checks.

    Returns
    -------
    Manifest

    Raises
    ------
    ManifestError
        Listing every problem, each as ``field.path: what, found value; fix``. Problems of
        the JSON itself (:func:`read_manifest_json`) are reported first, then every schema
        and path problem, then (once those are fixed) every file problem.
    """
    path = Path(path)
    raw = read_manifest_json(path)
    if detect_format(raw) is not None:  # an MSD or nnU-Net v2 dataset.json: convert in memory
        raw = convert_dataset_json(raw, path)
    manifest, problems = _parse(raw)
    problems += case_path_problems(raw, path.parent.resolve())
    if manifest is not None and check_files and not problems:
        from medimg.manifests.checks import content_problems

        problems += content_problems(manifest, path.parent, tolerances or Tolerances())
    elif check_files and problems:
        logger.info("%s: file checks skipped until its schema problems are fixed", path)
    if problems or manifest is None:  # _parse returns no manifest only with problems
        raise ManifestError(path, problems)
    return manifest


def resolve_cases(manifest: Manifest, manifest_path: PathLike) -> tuple[ResolvedCase, ...]:
    """Every case of `manifest` with paths made absolute against its file's folder."""
    root = Path(manifest_path).resolve().parent
    classes = list(manifest.classes or ())
    return tuple(
        ResolvedCase(
            split=split,
            case_id=case.case_id,
            images=tuple(_absolute(root, p) for p in case.images),
            label=None if case.label is None else _absolute(root, case.label),
            class_index=None if case.class_name is None else classes.index(case.class_name),
            metadata=dict(case.metadata),
            boxes=case.boxes,
        )
        for split, _, case in manifest.cases()
    )


def _absolute(root: Path, relative: str) -> Path:
    return Path(os.path.normpath(root / relative))


def save_manifest(record: Mapping[str, Any], path: PathLike, *, overwrite: bool = False) -> Path:
    """Write a manifest's JSON atomically, after checking it passes the schema layer.

    Nothing is written when the record has problems, so medimg never writes a manifest its own
    loader would refuse.

    Raises
    ------
    ManifestError
        Listing every schema problem of `record`.
    OutputExistsError
        If `path` exists and `overwrite` is false.
    """
    from medimg.io.writing import atomic_path

    path = Path(path)
    problems = _parse(record)[1]
    if problems:
        raise ManifestError(path, problems)
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# schema layer


def _parse(raw: Mapping[str, Any]) -> tuple[Manifest | None, list[str]]:
    try:
        return Manifest.model_validate(raw), []
    except ValidationError as exc:
        problems = _translate(exc)
    return None, problems + consistency_problems(raw)


_UNION_EXPECTED = {
    "image": "a path string or a list of path strings (one per channel)",
    "metadata": "a string, number, true/false or null",
}


def _translate(exc: ValidationError) -> list[str]:
    """Pydantic errors as ``field.path: message, got value`` lines, union branches merged."""
    lines: list[str] = []
    seen: set[str] = set()
    errors = exc.errors()
    locs = [tuple(e["loc"]) for e in errors]
    for err in errors:
        loc = tuple(err["loc"])
        if not loc:
            continue  # the model-level consistency check; reported from the raw JSON instead
        if err["type"] == "too_short" and any(o[: len(loc)] == loc and o != loc for o in locs):
            continue  # pydantic's echo of an invalid item: "at least 1 item after validation"
        base = tuple(p for p in loc if not _is_union_tag(p))
        where = field_path(base)
        if where in seen:
            continue
        seen.add(where)
        lines.append(f"{where}: {_message(err, base, merged=len(base) < len(loc))}")
    return lines


def _is_union_tag(part: object) -> bool:
    return isinstance(part, str) and (
        part in ("str", "int", "float", "bool", "none") or "[" in part
    )


def _message(err: Mapping[str, Any], loc: tuple[object, ...], *, merged: bool) -> str:
    kind, value = err["type"], err.get("input")
    if merged:
        key = next((p for p in reversed(loc) if p in _UNION_EXPECTED), None)
        expected = _UNION_EXPECTED.get(str(key), "another type")
        return f"must be {expected}, got {_short(value)}"
    if kind == "extra_forbidden":
        return _unknown_key(loc, value)
    if kind == "missing":
        return "required key is missing; add it"
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    if kind == "int_type" and isinstance(value, str | float | bool):
        as_text = value.strip() if isinstance(value, str) else ""
        fix = f"write {as_text} without quotes" if as_text.isdecimal() else "give an integer"
        return f"must be a JSON integer, got {type(value).__name__} {value!r}; {fix}"
    if kind == "bool_type":
        return f"must be true or false (JSON booleans), got {_short(value)}"
    if kind == "literal_error" and loc == ("schema_version",):
        return (
            f"must be 1 or 2, got {value!r}; this medimg reads schema versions 1 and 2 (2 adds "
            "'task' and lesion 'boxes')"
        )
    if kind == "literal_error" and loc == ("task",):
        hint = did_you_mean(value, TASKS, cutoff=0.6) if isinstance(value, str) else ""
        return f"must be one of {', '.join(TASKS)}, got {_short(value)}{hint}"
    if kind == "string_pattern_mismatch":
        return (
            f"{value!r} may hold only letters, digits, '_', '.' and '-'; rename it "
            "(ids are used in file names)"
        )
    return f"{err['msg']}, got {_short(value)}"


def _unknown_key(loc: tuple[object, ...], value: object) -> str:
    key = str(loc[-1])
    model = _model_at(loc[:-1])
    allowed = sorted(
        (f.alias or name) for name, f in model.model_fields.items() if name != "json_schema_ref"
    )
    hint = did_you_mean(key, allowed, cutoff=0.6).removeprefix("; ") or "remove it"
    if model is Box and key.startswith("diam"):
        hint = 'a lesion of diameter d has "size_mm": [d, d, d]'
    return f"unknown key {key!r} (value {_short(value)}); {hint} (allowed: {', '.join(allowed)})"


def _short(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to `limit` characters so one problem stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _model_at(loc: tuple[object, ...]) -> type[BaseModel]:
    parents: dict[str, type[BaseModel]] = dict.fromkeys(SPLITS, Case)
    parents.update(channels=Channel, labels=LabelDef, boxes=Box)
    names = [p for p in loc if isinstance(p, str)]
    return parents.get(names[-1], Manifest) if names else Manifest


# --------------------------------------------------------------------------------------------
# path form (no disk access)


def case_path_problems(raw: Mapping[str, Any], root: Path) -> list[str]:
    """Problems of the form of case paths: empty, unprintable, or outside `root`.

    A path must be non-empty text without control characters (NUL, newline, ...), and must
    stay inside `root` unless the manifest sets ``allow_paths_outside_root``. The test is
    lexical (``..`` and absolute paths), so it needs no disk access; links that lead outside
    `root` are found by the file checks (:mod:`medimg.manifests.checks`).
    """
    allow_outside = raw.get("allow_paths_outside_root") is True
    problems = []
    for split in SPLITS:
        cases = raw.get(split)
        if not isinstance(cases, list):
            continue
        for i, case in enumerate(cases):
            if not isinstance(case, Mapping):
                continue
            for key, rel in _paths_of(case):
                where = f"{split}[{i}].{key}"
                form = _path_form_problem(rel)
                if form is not None:
                    problems.append(f"{where}: {form}")
                    continue
                target = Path(os.path.normpath(root / rel))
                if not allow_outside and not target.is_relative_to(root):
                    problems.append(
                        f"{where}: {rel!r} is outside the manifest's folder "
                        f"({target}); move the data under {root}, or set "
                        '"allow_paths_outside_root": true'
                    )
    return problems


def _path_form_problem(rel: str) -> str | None:
    if not rel.strip():
        return f"must be a file path relative to the manifest, got {rel!r}; give the path"
    bad = next((c for c in rel if ord(c) < 0x20 or ord(c) == 0x7F), None)
    if bad is not None:
        return (
            f"{_short(rel)} holds the control character {bad!r}; file names in a manifest "
            "must be printable (rename the file)"
        )
    try:
        os.fsencode(rel)
    except UnicodeEncodeError:
        return f"{_short(rel)} is not valid Unicode text (a lone surrogate); fix the path"
    return None


def _paths_of(case: Mapping[str, Any]) -> list[tuple[str, str]]:
    image, label = case.get("image"), case.get("label")
    out: list[tuple[str, str]] = []
    if isinstance(image, str):
        out.append(("image", image))
    elif isinstance(image, list):
        out += [(f"image[{j}]", p) for j, p in enumerate(image) if isinstance(p, str)]
    if isinstance(label, str):
        out.append(("label", label))
    return out
