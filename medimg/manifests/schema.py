"""The dataset manifest schema: typed, immutable pydantic models.

A manifest is a JSON file in the spirit of the Medical Segmentation Decathlon ``dataset.json``:

.. code-block:: json

    {
      "$schema": "schema.json",
      "schema_version": 1,
      "name": "synthetic_ct",
      "channels": [{"name": "CT", "modality": "CT"}],
      "labels": [{"value": 0, "name": "background"}, {"value": 1, "name": "liver"}],
      "training": [{"id": "case_000", "image": "imagesTr/case_000.nii.gz",
                    "label": "labelsTr/case_000.nii.gz"}]
    }

Paths are relative to the manifest file; an image is a file, one per channel (or one
multi-channel file). A DICOM series folder passes the schema but not the file checks, because
training reads image files only: convert it first (``medimg convert``). Cross-field rules
(unique ids, declared classes, channel counts) live in :func:`consistency_problems`, which works
on raw JSON too, so a manifest with a type error still gets every other problem reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medimg._suggest import did_you_mean
from medimg.modality import Modality, lookup_modality

__all__ = [
    "CASE_ID_PATTERN",
    "SCHEMA_VERSION",
    "SPLITS",
    "Case",
    "Channel",
    "LabelDef",
    "Manifest",
    "consistency_problems",
    "manifest_json_schema",
]

SCHEMA_VERSION = 1
"""The manifest schema version this code reads and writes."""

SPLITS: tuple[str, ...] = ("training", "validation", "test")
"""Names of the case lists in a manifest, in file order."""

CASE_ID_PATTERN = r"^[A-Za-z0-9_.-]+$"
"""Case ids are used in file names: letters, digits, ``_``, ``.`` and ``-`` only."""

MetadataValue = str | int | float | bool | None

_STRICT = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Channel(BaseModel):
    """One input channel: a display name and its modality."""

    model_config = _STRICT

    name: str = Field(min_length=1, description="Channel name, e.g. 'CT', 'T1', 'FLAIR'.")
    modality: Modality = Field(description="Modality of this channel: CT, MR or XR.")

    @field_validator("modality", mode="before")
    @classmethod
    def _modality(cls, value: object) -> Modality:
        if isinstance(value, Modality):
            return value
        return lookup_modality(value)  # type: ignore[arg-type]  # non-str raises ValueError too


class LabelDef(BaseModel):
    """One value of a segmentation label map and its name."""

    model_config = _STRICT

    value: int = Field(
        ge=0,
        strict=True,
        description='Voxel value in the label maps: a JSON integer (1, not "1" or 1.0).',
    )
    name: str = Field(min_length=1, description="Structure name, e.g. 'liver'.")


class Case(BaseModel):
    """One case: an id, its image channel(s), and an optional label map or class."""

    model_config = _STRICT

    case_id: str = Field(
        alias="id", pattern=CASE_ID_PATTERN, description="Unique id, used in output file names."
    )
    image: str | tuple[str, ...] = Field(
        description="Image file relative to the manifest (NIfTI, NRRD, MetaImage; convert "
        "DICOM series first); a list gives one path per channel."
    )
    label: str | None = Field(
        default=None, description="Label map file relative to the manifest (segmentation)."
    )
    class_name: str | None = Field(
        default=None, alias="class", description="Class of the case (classification)."
    )
    metadata: dict[str, MetadataValue] = Field(
        default_factory=dict, description="Free-form scalar metadata (age, scanner, ...)."
    )

    @property
    def images(self) -> tuple[str, ...]:
        """The image path(s), one per entry, as written in the manifest."""
        return (self.image,) if isinstance(self.image, str) else self.image


class Manifest(BaseModel):
    """A dataset manifest (see the module docstring for the JSON form)."""

    model_config = _STRICT

    json_schema_ref: str | None = Field(
        default=None, alias="$schema", description="Editor hint: path or URL of schema.json."
    )
    schema_version: Literal[1] = Field(description="Manifest schema version; currently 1.")
    name: str = Field(min_length=1, description="Dataset name.")
    description: str = Field(default="", description="Free text.")
    channels: tuple[Channel, ...] = Field(min_length=1, description="Input channels in order.")
    labels: tuple[LabelDef, ...] | None = Field(
        default=None, description="Segmentation label values (0 = background)."
    )
    classes: tuple[str, ...] | None = Field(
        default=None, description="Classification classes; each case names one."
    )
    allow_paths_outside_root: bool = Field(
        default=False,
        strict=True,
        description="Allow case paths outside the manifest's folder (e.g. '../data/...'), "
        "directly or through a link.",
    )
    training: tuple[Case, ...] = Field(description="Training cases (at least one).")
    validation: tuple[Case, ...] | None = Field(default=None, description="Validation cases.")
    test: tuple[Case, ...] | None = Field(default=None, description="Test cases.")

    @field_validator("schema_version", mode="before")
    @classmethod
    def _exact_version(cls, value: object) -> object:
        if isinstance(value, bool | float):  # Literal[1] would take true and 1.0
            raise ValueError(f"must be 1 (a JSON integer), got {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        problems = consistency_problems(self.model_dump(by_alias=True, mode="json"))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def task(self) -> Literal["segmentation", "classification", "unlabelled"]:
        """What the manifest's targets are."""
        if self.labels is not None:
            return "segmentation"
        return "classification" if self.classes is not None else "unlabelled"

    @property
    def modalities(self) -> tuple[Modality, ...]:
        """Modality of each channel, in channel order."""
        return tuple(c.modality for c in self.channels)

    def split(self, name: str) -> tuple[Case, ...]:
        """The cases of split `name` (``"training"``, ``"validation"`` or ``"test"``)."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {name!r}")
        cases: tuple[Case, ...] | None = getattr(self, name)
        return cases or ()

    def cases(self) -> tuple[tuple[str, int, Case], ...]:
        """Every case as ``(split, index, case)``, in file order."""
        return tuple((s, i, c) for s in SPLITS for i, c in enumerate(self.split(s)))


def consistency_problems(raw: Mapping[str, Any]) -> list[str]:
    """Cross-field problems of a manifest given as parsed JSON, tolerant of malformed parts.

    Checks that ids are unique across splits, that splits given are not empty, that each case's
    number of image paths fits the channels, and that labels and classes are declared and used
    consistently. Type errors are left to the pydantic models.

    Parameters
    ----------
    raw : mapping
        The manifest's JSON object.

    Returns
    -------
    list of str
        One ``field.path: message`` line per problem.

    Examples
    --------
    >>> consistency_problems({"channels": [{}], "training": []})
    ['training: must list at least one case, got []; add cases or fix the key']
    """
    problems: list[str] = []
    channels = raw.get("channels")
    n_channels = len(channels) if isinstance(channels, list | tuple) else None
    problems += _declaration_problems(raw)
    classes = raw.get("classes")
    has_labels = raw.get("labels") is not None
    valid_classes = [c for c in classes if isinstance(c, str)] if isinstance(classes, list) else []
    seen: dict[str, str] = {}
    for split in SPLITS:
        cases = raw.get(split)
        if cases is None and split != "training":
            continue
        if not isinstance(cases, list | tuple) or not cases:
            if isinstance(cases, list | tuple) or split == "training":
                hint = "add cases or fix the key" if split == "training" else "add cases or drop it"
                problems.append(f"{split}: must list at least one case, got {cases!r}; {hint}")
            continue
        for i, case in enumerate(cases):
            if not isinstance(case, Mapping):
                continue
            where = f"{split}[{i}]"
            case_id = case.get("id")
            if isinstance(case_id, str):
                if case_id in seen:
                    problems.append(
                        f"{where}.id: duplicate of {seen[case_id]}.id ({case_id!r}); "
                        "give every case a unique id"
                    )
                else:
                    seen[case_id] = where
            problems += _image_count_problem(where, case.get("image"), n_channels)
            if case.get("label") is not None and not has_labels:
                problems.append(
                    f"{where}.label: a label map is given ({case['label']!r}) but the manifest "
                    "declares no 'labels'; add 'labels' with every value the label maps hold"
                )
            cls = case.get("class")
            if cls is not None and classes is None:
                problems.append(
                    f"{where}.class: a class is given ({cls!r}) but the manifest declares no "
                    "'classes'; add 'classes'"
                )
            elif isinstance(cls, str) and valid_classes and cls not in valid_classes:
                hint = did_you_mean(cls, valid_classes, cutoff=0.6)
                problems.append(
                    f"{where}.class: {cls!r} is not a declared class{hint}"
                    f" (declared: {', '.join(valid_classes)})"
                )
    return problems


def _declaration_problems(raw: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    labels, classes = raw.get("labels"), raw.get("classes")
    if labels is not None and classes is not None:
        problems.append(
            "labels: a manifest declares either 'labels' (segmentation) or 'classes' "
            "(classification), got both; keep one"
        )
    if isinstance(labels, list):
        for key in ("value", "name"):
            values = [d.get(key) for d in labels if isinstance(d, Mapping)]
            for j, v in enumerate(values):
                if v is not None and values.index(v) < j:
                    problems.append(
                        f"labels[{j}].{key}: duplicate of labels[{values.index(v)}].{key} ({v!r})"
                        "; each label needs its own value and name"
                    )
    if isinstance(classes, list):
        if len(classes) < 2:
            problems.append(f"classes: must list at least two classes, got {classes!r}")
        for j, c in enumerate(classes):
            if classes.index(c) < j:
                problems.append(f"classes[{j}]: duplicate of classes[{classes.index(c)}] ({c!r})")
    return problems


def _image_count_problem(where: str, image: object, n_channels: int | None) -> list[str]:
    if not isinstance(image, list | tuple) or n_channels is None:
        return []
    if len(image) == 0:
        return [f"{where}.image: must name at least one path, got []"]
    if len(image) != n_channels:
        return [
            f"{where}.image: {len(image)} paths for {n_channels} declared channel(s); give one "
            "path per channel, or one multi-channel file"
        ]
    return []


def manifest_json_schema() -> dict[str, Any]:
    """The JSON Schema of manifests (written to ``data_manifests/schema.json`` for editors).

    Examples
    --------
    >>> manifest_json_schema()["properties"]["schema_version"]["const"]
    1
    """
    schema = Manifest.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "medimg dataset manifest",
        **{k: v for k, v in schema.items() if k != "title"},
    }
