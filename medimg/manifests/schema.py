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

Schema version 2 adds lesion **boxes** per case (world RAS+ millimetres, centre and size, each
with a declared class; see :mod:`medimg.manifests.boxes`) and an optional ``task``; version-1
manifests read unchanged.

**The task** (:attr:`Manifest.task`, :func:`task_of`) is ``"task"`` when given (schema 2), else
derived: ``labels`` declared means segmentation; any case listing ``boxes`` means detection;
``classes`` declared means classification; neither means unlabelled. A detection manifest
declares ``classes`` (one or more; the background is implicit) and no ``labels``, lists
``boxes`` on every training and validation case (``[]`` for a scan without lesions), names no
case-level ``class``, and has 3D channels (CT, MR).

Paths are relative to the manifest file; an image is a file, one per channel (or one
multi-channel file). A DICOM series folder may stand for an image: every reader
(:func:`medimg.io.read_image`) reads files and series folders alike. Cross-field rules
(unique ids, declared classes, channel counts) live in :func:`consistency_problems`, which works
on raw JSON too, so a manifest with a type error still gets every other problem reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medimg._suggest import did_you_mean
from medimg.manifests.boxes import Box, box_schema_problems
from medimg.modality import Modality, lookup_modality

__all__ = [
    "CASE_ID_PATTERN",
    "SCHEMA_VERSION",
    "SPLITS",
    "TASKS",
    "Case",
    "Channel",
    "LabelDef",
    "Manifest",
    "consistency_problems",
    "manifest_json_schema",
    "task_of",
]

SCHEMA_VERSION = 2
"""The newest manifest schema version this code reads (2 adds ``task`` and ``boxes``; 1 reads)."""

Task = Literal["segmentation", "classification", "detection"]
TASKS: tuple[str, ...] = ("segmentation", "classification", "detection")
"""Values of a manifest's ``task``."""

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
        description="Image file (NIfTI, NRRD, MetaImage) or DICOM series folder, relative to "
        "the manifest; a list gives one path per channel."
    )
    label: str | None = Field(
        default=None, description="Label map file relative to the manifest (segmentation)."
    )
    class_name: str | None = Field(
        default=None, alias="class", description="Class of the case (classification)."
    )
    boxes: tuple[Box, ...] | None = Field(
        default=None,
        description="Lesion boxes in world RAS+ mm (detection, schema version 2); [] for a "
        "scan without lesions.",
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
    schema_version: Literal[1, 2] = Field(
        description="Manifest schema version: 1, or 2 for 'task' and lesion 'boxes'."
    )
    declared_task: Task | None = Field(
        default=None,
        alias="task",
        description="segmentation, classification or detection (schema version 2); derived "
        "from labels/boxes/classes when absent.",
    )
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
        if isinstance(value, bool | float):  # Literal[1, 2] would take true and 1.0
            raise ValueError(f"must be 1 or 2 (a JSON integer), got {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        problems = consistency_problems(self.model_dump(by_alias=True, mode="json"))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def task(self) -> Literal["segmentation", "classification", "detection", "unlabelled"]:
        """What the manifest's targets are: ``task`` when given, else derived (module docs)."""
        if self.declared_task is not None:
            return self.declared_task
        if self.labels is not None:
            return "segmentation"
        if any(case.boxes is not None for _, _, case in self.cases()):
            return "detection"
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
    number of image paths fits the channels, that labels, classes and boxes are declared and used
    consistently, and that the task fits the declarations (:func:`task_of`). Type errors are
    left to the pydantic models.

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
    task = task_of(raw)
    problems += _declaration_problems(raw, task)
    problems += _task_problems(raw, task)
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
    return problems + box_schema_problems(raw, task)


def task_of(raw: Mapping[str, Any]) -> str:
    """The task of a manifest given as parsed JSON, by the rule in the module docstring.

    Tolerant of malformed parts, so a command can route a manifest to its task before the
    manifest is validated (the task's own loader then reports every problem).

    Returns
    -------
    str
        ``"segmentation"``, ``"classification"``, ``"detection"`` or ``"unlabelled"``.

    Examples
    --------
    >>> task_of({"classes": ["nodule"], "training": [{"boxes": []}]})
    'detection'
    >>> task_of({"classes": ["normal", "nodule"], "training": [{"class": "normal"}]})
    'classification'
    """
    declared = raw.get("task")
    if isinstance(declared, str) and declared in TASKS:
        return declared
    if raw.get("labels") is not None:
        return "segmentation"
    for split in SPLITS:
        cases = raw.get(split)
        for case in cases if isinstance(cases, list | tuple) else ():
            if isinstance(case, Mapping) and case.get("boxes") is not None:
                return "detection"
    return "classification" if raw.get("classes") is not None else "unlabelled"


def _task_problems(raw: Mapping[str, Any], task: str) -> list[str]:
    """A declared task with schema version 1, or without what it needs; detection's 3D rule."""
    problems: list[str] = []
    declared = raw.get("task")
    if declared is not None and raw.get("schema_version") != 2:
        problems.append(
            f'task: needs "schema_version": 2, got {raw.get("schema_version")!r}; set it to 2 '
            "(or drop 'task': version 1 derives it)"
        )
    if declared == "segmentation" and raw.get("labels") is None:
        problems.append("task: 'segmentation' needs 'labels' (the label maps' values); add them")
    if declared in ("classification", "detection") and raw.get("classes") is None:
        problems.append(f"task: {declared!r} needs 'classes'; add them")
    channels = raw.get("channels")
    if task == "detection" and isinstance(channels, list):
        for j, channel in enumerate(channels):
            modality = channel.get("modality") if isinstance(channel, Mapping) else None
            if isinstance(modality, str) and modality in {m.value for m in Modality}:
                if Modality(modality).spatial_dims != 3:
                    problems.append(
                        f"channels[{j}].modality: detection boxes are 3D, but {modality!r} "
                        "images are 2D; give 3D images (CT, MR)"
                    )
    return problems


def _declaration_problems(raw: Mapping[str, Any], task: str) -> list[str]:
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
        if task == "detection" and not classes:
            problems.append(
                "classes: must list at least one lesion class (the background is implicit), got []"
            )
        elif task != "detection" and len(classes) < 2:
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
    >>> manifest_json_schema()["properties"]["schema_version"]["enum"]
    [1, 2]
    """
    schema = Manifest.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "medimg dataset manifest",
        **{k: v for k, v in schema.items() if k != "title"},
    }
