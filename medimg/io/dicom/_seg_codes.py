"""Segment names and codes: medimg's SNOMED CT table of common labels and user mapping files.

A mapping file is a JSON object whose keys are label values (``"3"``) or label names
(``"lesion_core"``); each value is an object with an optional ``"name"`` (the segment label,
for a value key) and, optionally together, ``"category"`` and ``"type"`` codes (and a
``"modifier"``), each ``{"value": "...", "scheme": "SCT", "meaning": "..."}``::

    {"1": {"name": "liver"},
     "2": {"name": "blob", "category": {"value": "91723000", "scheme": "SCT",
                                        "meaning": "Anatomical Structure"},
           "type": {"value": "85756007", "scheme": "SCT", "meaning": "Tissue"}}}

A label's codes come from the mapping (by value, then by name), else from
:data:`~medimg.io.dicom._snomed.ORGANS` (``left_``/``right_`` prefixes become a laterality
modifier); a label with neither is refused, never given a made-up code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medimg.errors import ConfigError
from medimg.io.dicom._snomed import CATEGORIES, MODIFIERS, ORGANS, normalize_name

__all__ = ["SegmentCodes", "label_codes", "load_mapping"]

Coded = tuple[str, str, str]
"""``(value, scheme designator, meaning)``."""

_FIELDS = ("name", "category", "type", "modifier")


@dataclass(frozen=True)
class SegmentCodes:
    """What one segment is: its label and its coded category, type and type modifier."""

    label: str
    category: Coded
    type: Coded
    modifier: Coded | None = None


def _coded(where: str, value: Any) -> Coded:
    if not isinstance(value, dict) or set(value) != {"value", "scheme", "meaning"}:
        raise ConfigError(
            f"{where} must be an object with exactly value, scheme and meaning, got "
            f"{json.dumps(value)[:80]}"
        )
    if not all(isinstance(v, str) and v.strip() for v in value.values()):
        raise ConfigError(f"{where}: value, scheme and meaning must be non-empty strings")
    return (value["value"], value["scheme"], value["meaning"])


def load_mapping(source: Path | Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Read and check a mapping file (or an in-memory mapping of the same form).

    Returns
    -------
    dict
        Key (label value as text, or normalized name) -> ``{"name": str, "codes":
        (category, type, modifier) or None}``.

    Raises
    ------
    ConfigError
        When the file cannot be read or parsed, or an entry is malformed (the file and the
        key are named).
    """
    if source is None:
        return {}
    where = "mapping"
    if isinstance(source, Path):
        where = str(source)
        try:
            raw = json.loads(source.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read the label mapping: {exc.strerror}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source}: the label mapping must be JSON: {exc}") from None
    else:
        raw = dict(source)
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{where}: the label mapping must be a JSON object, got {type(raw).__name__}"
        )
    out: dict[str, dict[str, Any]] = {}
    for key, entry in raw.items():
        at = f"{where}: [{key!r}]"
        if not isinstance(entry, dict) or not set(entry) <= set(_FIELDS):
            raise ConfigError(
                f"{at} must be an object with some of {', '.join(_FIELDS)}, got "
                f"{json.dumps(entry)[:80]}"
            )
        if ("category" in entry) != ("type" in entry):
            raise ConfigError(f"{at}: category and type must be given together")
        name = entry.get("name")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ConfigError(f"{at}.name must be a non-empty string, got {name!r}")
        codes = None
        if "category" in entry:
            modifier = entry.get("modifier")
            codes = (
                _coded(f"{at}.category", entry["category"]),
                _coded(f"{at}.type", entry["type"]),
                None if modifier is None else _coded(f"{at}.modifier", modifier),
            )
        norm = key if key.strip().isdigit() else normalize_name(key)
        out[norm.strip()] = {"name": name, "codes": codes}
    return out


def _table_codes(name: str) -> tuple[Coded, Coded, Coded | None] | None:
    key = normalize_name(name)
    modifier = None
    for side in MODIFIERS:
        if key.startswith(f"{side}_") and key[len(side) + 1 :] in ORGANS:
            code = MODIFIERS[side][0]
            modifier = (code[0], "SCT", code[1])
            key = key[len(side) + 1 :]
    if key not in ORGANS:
        return None
    category_key, ((type_value, type_meaning), _keyword) = ORGANS[key]
    (cat_value, cat_meaning), _ = CATEGORIES[category_key]
    return (cat_value, "SCT", cat_meaning), (type_value, "SCT", type_meaning), modifier


def label_codes(
    values: list[int], names: Mapping[int, str], mapping: Mapping[str, dict[str, Any]],
    *, where: str,
) -> dict[int, SegmentCodes]:  # fmt: skip
    """Name and codes of each label value, from the mapping, the names and medimg's table.

    Raises
    ------
    ConfigError
        For a value without a name, or a name without codes (``where`` names the input).
    """
    out: dict[int, SegmentCodes] = {}
    for value in values:
        by_value = mapping.get(str(value), {})
        name = by_value.get("name") or names.get(value)
        if not name:
            raise ConfigError(
                f"{where}: label {value} has no name; name it (medimg dicom seg --label "
                f'{value}=NAME, or a mapping file entry "{value}": {{"name": ...}})'
            )
        codes = by_value.get("codes") or mapping.get(normalize_name(name), {}).get("codes")
        codes = codes or _table_codes(name)
        if codes is None:
            raise ConfigError(
                f"{where}: label {value} {name!r} is outside the mapping: medimg's SNOMED CT "
                "table of common organs does not know it and no mapping file gives its codes; "
                f'add "{value}" (or "{name}") with category and type codes to a mapping '
                "file (--mapping FILE.json, see medimg dicom seg --help)"
            )
        out[value] = SegmentCodes(name, codes[0], codes[1], codes[2])
    return out
