"""Lesion boxes of detection manifests: the :class:`Box` model, its rules, and its grid check.

A box is written per case in the manifest (schema version 2):

.. code-block:: json

    {"id": "case_000", "image": "images/case_000.nii.gz",
     "boxes": [{"center_mm": [-61.2, 14.0, 33.5], "size_mm": [12.0, 12.0, 12.0],
                "class": "nodule"}]}

Conventions
-----------
* **Frame: world RAS+ millimetres**, the frame of every medimg affine (NIfTI's and MONAI's):
  ``+x`` points to the patient's right, ``+y`` anterior, ``+z`` superior. DICOM, ITK and LUNA16
  coordinates are LPS+ (``+x`` left, ``+y`` posterior): negate x and y to convert.
* **Form: centre and full size**, ``center_mm`` plus ``size_mm`` (the box's full extent along
  the world x, y, z axes), axis-aligned in the world frame, not in the voxel grid. LUNA16-style
  annotations (centre and diameter ``d``) become ``size_mm = [d, d, d]``; the LUNA16 hit rule
  (a predicted centre within the lesion's radius) reads the centre directly; and the box stays
  the same whatever grid, oblique or permuted, the image is stored on.
* ``class`` names one of the manifest's declared ``classes``.

Two layers of checks, as for the rest of a manifest. Schema (no disk): three finite JSON numbers
per vector, every size > 0, a declared class (:func:`box_schema_problems`). Content (the image
header): every corner of the box, mapped through the inverse of the image's affine, lies inside
the stored voxel grid (:func:`box_content_problems`, called by
:mod:`medimg.manifests.checks`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator

from medimg._suggest import did_you_mean

if TYPE_CHECKING:
    from medimg.io.geometry import SourceGeometry
    from medimg.manifests.schema import Case

__all__ = [
    "FRAME",
    "GRID_TOLERANCE_VOX",
    "Box",
    "box_content_problems",
    "box_grid_problems",
    "box_schema_problems",
    "world_to_voxel",
]

FRAME: Final = "RAS+"
"""World frame of box coordinates: ``+x`` right, ``+y`` anterior, ``+z`` superior, in mm."""

GRID_TOLERANCE_VOX = 1e-3
"""How far (in voxels) a box corner may pass the grid's outer voxel edges (float rounding)."""

_STRICT = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _vector(value: object, *, positive: bool) -> tuple[float, float, float]:
    """Three finite JSON numbers (not strings or booleans); with `positive`, each > 0."""
    what = "3 sizes > 0 mm" if positive else "3 coordinates in mm"
    if isinstance(value, tuple):
        value = list(value)
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(f"must be a list of {what} (x, y, z), got {value!r}")
    if not all(math.isfinite(v) for v in value):
        raise ValueError(f"must be {what} (finite numbers), got {value!r}")
    if positive and not all(v > 0 for v in value):
        raise ValueError(
            f"must be {what} along x, y and z, got {value!r}; a box needs a positive "
            "extent along every axis (a lesion of diameter d has size [d, d, d])"
        )
    return (float(value[0]), float(value[1]), float(value[2]))


class Box(BaseModel):
    """One lesion box: centre and full size in world RAS+ mm, and a declared class.

    World RAS+ (:data:`FRAME`): +x to the patient's right, +y anterior, +z superior (DICOM,
    ITK and LUNA16 give LPS: negate x and y). The box is axis-aligned in the world frame,
    whatever grid stores the image.
    """

    model_config = _STRICT

    center_mm: tuple[float, float, float] = Field(
        description="Box centre in world RAS+ millimetres (the frame of NIfTI affines; DICOM "
        "and LUNA16 LPS coordinates have x and y negated)."
    )
    size_mm: tuple[float, float, float] = Field(
        description="Full extent along world x, y, z in mm, each > 0 (a lesion of diameter d: "
        "[d, d, d])."
    )
    class_name: str = Field(
        alias="class", min_length=1, description="One of the manifest's declared 'classes'."
    )

    @field_validator("center_mm", mode="before")
    @classmethod
    def _center(cls, value: object) -> tuple[float, float, float]:
        return _vector(value, positive=False)

    @field_validator("size_mm", mode="before")
    @classmethod
    def _size(cls, value: object) -> tuple[float, float, float]:
        return _vector(value, positive=True)

    @property
    def min_mm(self) -> tuple[float, float, float]:
        """The corner with the smallest x, y and z."""
        c, s = self.center_mm, self.size_mm
        return (c[0] - s[0] / 2, c[1] - s[1] / 2, c[2] - s[2] / 2)

    @property
    def max_mm(self) -> tuple[float, float, float]:
        """The corner with the largest x, y and z."""
        c, s = self.center_mm, self.size_mm
        return (c[0] + s[0] / 2, c[1] + s[1] / 2, c[2] + s[2] / 2)

    def corners_mm(self) -> NDArray[np.float64]:
        """The 8 corners as an ``(8, 3)`` array of world RAS+ mm.

        Examples
        --------
        >>> box = Box(center_mm=(0, 0, 0), size_mm=(2, 4, 6), class_name="nodule")
        >>> box.corners_mm().min(axis=0).tolist(), box.corners_mm().max(axis=0).tolist()
        ([-1.0, -2.0, -3.0], [1.0, 2.0, 3.0])
        """
        lo, hi = self.min_mm, self.max_mm
        return np.array(
            [
                [(lo, hi)[i][0], (lo, hi)[j][1], (lo, hi)[k][2]]
                for i in (0, 1)
                for j in (0, 1)
                for k in (0, 1)
            ],
            dtype=np.float64,
        )


def box_schema_problems(raw: Mapping[str, Any], task: str) -> list[str]:
    """Problems of the cases' ``boxes`` in a manifest given as parsed JSON (no disk access).

    Boxes need ``schema_version`` 2 and a detection manifest; each box's class must be declared.
    In a detection manifest every training and validation case lists ``boxes`` (``[]`` for a
    scan without lesions; test cases may omit them), and no case names a case-level ``class``.
    Type problems of the boxes themselves are the :class:`Box` model's.

    Parameters
    ----------
    raw : mapping
        The manifest's JSON object.
    task : str
        The manifest's task (:func:`medimg.manifests.schema.task_of`).

    Returns
    -------
    list of str
        One ``field.path: message`` line per problem.

    Examples
    --------
    >>> raw = {"schema_version": 2, "classes": ["nodule"],
    ...        "training": [{"boxes": [{"class": "mass"}]}]}
    >>> print(*box_schema_problems(raw, "detection"))
    training[0].boxes[0].class: 'mass' is not a declared class (declared: nodule)
    """
    from medimg.manifests.schema import SPLITS

    problems: list[str] = []
    with_boxes = [
        (f"{split}[{i}]", case)
        for split in SPLITS
        for i, case in enumerate(_list(raw.get(split)))
        if isinstance(case, Mapping)
    ]
    boxed = [(where, case) for where, case in with_boxes if case.get("boxes") is not None]
    if boxed and raw.get("schema_version") != 2:
        problems.append(
            f'{boxed[0][0]}.boxes: lesion boxes need "schema_version": 2, got '
            f"{raw.get('schema_version')!r} ({len(boxed)} case(s) list boxes); set it to 2"
        )
    if boxed and task != "detection":
        problems.append(
            f"{boxed[0][0]}.boxes: boxes are given but the manifest's task is {task!r} "
            f"({len(boxed)} case(s) list boxes); a detection manifest declares 'classes' (no "
            '\'labels\') and "task": "detection", or drop the boxes'
        )
    for where, case in with_boxes:
        problems += _case_box_problems(raw, where, case, task)
    return problems


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _case_box_problems(
    raw: Mapping[str, Any], where: str, case: Mapping[str, Any], task: str
) -> list[str]:
    problems: list[str] = []
    classes = raw.get("classes")
    declared = [c for c in classes if isinstance(c, str)] if isinstance(classes, list) else []
    if task == "detection":
        if case.get("boxes") is None and not where.startswith("test"):
            problems.append(
                f"{where}: a detection case needs 'boxes' (training and validation cases are "
                "annotated); give [] for a scan without lesions"
            )
        if case.get("class") is not None:
            problems.append(
                f"{where}.class: detection cases give a class per box, not per case, got "
                f"{case['class']!r}; remove 'class'"
            )
    for j, box in enumerate(_list(case.get("boxes"))):
        cls = box.get("class") if isinstance(box, Mapping) else None
        if not isinstance(cls, str) or not cls:
            continue  # a type problem: the Box model reports it
        if classes is None:
            problems.append(
                f"{where}.boxes[{j}].class: box class {cls!r} is given but the manifest "
                f"declares no 'classes'; add \"classes\": [{cls!r}, ...]"
            )
        elif declared and cls not in declared:
            hint = did_you_mean(cls, declared, cutoff=0.6)
            problems.append(
                f"{where}.boxes[{j}].class: {cls!r} is not a declared class{hint} "
                f"(declared: {', '.join(declared)})"
            )
    return problems


def world_to_voxel(
    points_mm: NDArray[np.float64], affine: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Map world RAS+ points to (fractional) voxel indices of the grid of `affine`.

    Parameters
    ----------
    points_mm : (N, 3) ndarray
        World RAS+ coordinates in mm.
    affine : (4, 4) ndarray
        Voxel-to-world RAS+ matrix of the stored grid.

    Returns
    -------
    (N, 3) ndarray of float64
        Voxel indices along the stored axes (voxel centres are at integers).

    Examples
    --------
    >>> lps = np.diag([-2.0, -2.0, 3.0, 1.0]); lps[:3, 3] = (19.0, 19.0, -13.5)
    >>> world_to_voxel(np.array([[9.0, -5.0, 1.5]]), lps).tolist()
    [[5.0, 12.0, 5.0]]
    """
    points = np.atleast_2d(np.asarray(points_mm, dtype=np.float64))
    homogeneous = np.c_[points, np.ones(len(points))]
    return np.asarray(np.linalg.solve(affine, homogeneous.T).T[:, :3], dtype=np.float64)


def box_grid_problems(
    where: str, boxes: Sequence[Box], geometry: SourceGeometry, image: str
) -> list[str]:
    """Boxes of one case that reach outside the stored grid of its image.

    Every corner of a box, mapped to voxel indices through the inverse of the image's affine
    (so oblique and LPS-stored grids are handled), must lie within the grid's outer voxel
    edges, ``-0.5`` to ``n - 0.5`` along each stored axis (plus :data:`GRID_TOLERANCE_VOX`).

    Parameters
    ----------
    where : str
        The case's field path, e.g. ``"training[3]"``.
    boxes : sequence of Box
    geometry : SourceGeometry
        The image's header.
    image : str
        The image path as written in the manifest (for the message).

    Returns
    -------
    list of str
        One line per box outside, naming the box, its worst corner in mm and in voxels.
    """
    shape = np.asarray(geometry.shape[:3], dtype=np.float64)
    if len(shape) < 3:
        return []  # 2D images carry no 3D boxes; the schema refuses detection on them
    problems = []
    for j, box in enumerate(boxes):
        excess, corner, voxel = _worst_corner(box.corners_mm(), geometry.affine, shape)
        if excess <= GRID_TOLERANCE_VOX:
            continue
        lps = np.array(box.center_mm) * (-1.0, -1.0, 1.0)
        flipped = box.model_copy(update={"center_mm": tuple(float(v) for v in lps)})
        hint = (
            "; it fits with x and y negated: were these LPS coordinates (DICOM, ITK, "
            "LUNA16)? medimg boxes are RAS+ mm"
            if _worst_corner(flipped.corners_mm(), geometry.affine, shape)[0] <= GRID_TOLERANCE_VOX
            else "; fix the centre or the size (world RAS+ mm)"
        )
        problems.append(
            f"{where}.boxes[{j}]: box (center_mm {_mm(box.center_mm)}, size_mm "
            f"{_mm(box.size_mm)}) reaches outside the grid of {image} (shape "
            f"{' x '.join(str(int(n)) for n in shape)}): its corner {_mm(corner)} mm falls at "
            f"voxel {_mm(voxel)}, {excess:.3g} voxel(s) past the grid's edge (-0.5 to n - 0.5)"
            f"{hint}"
        )
    return problems


def _worst_corner(
    corners_mm: NDArray[np.float64], affine: NDArray[np.float64], shape: NDArray[np.float64]
) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
    """Largest distance (voxels) a corner lies past the grid's edges, that corner and its voxel."""
    voxels = world_to_voxel(corners_mm, affine)
    past = np.maximum(-0.5 - voxels, voxels - (shape - 0.5)).max(axis=1)
    k = int(np.argmax(past))
    return float(past[k]), corners_mm[k], voxels[k]


def _mm(values: Sequence[float] | NDArray[np.float64]) -> str:
    return "[" + ", ".join(f"{float(v):.4g}" for v in values) + "]"


def box_content_problems(
    where: str, case: Case, geometries: Sequence[tuple[str, SourceGeometry]]
) -> list[str]:
    """The content check of one case's boxes against its (first) image's header.

    Parameters
    ----------
    where : str
        The case's field path, e.g. ``"training[3]"``.
    case : Case
    geometries : sequence of (str, SourceGeometry)
        The headers of the case's images that could be read, with their field paths; the
        first is used (channels share one grid, which the channel checks enforce).

    Returns
    -------
    list of str
        :func:`box_grid_problems` of the case; none when it has no boxes or no readable image.
    """
    if not case.boxes or not geometries:
        return []
    return box_grid_problems(where, case.boxes, geometries[0][1], case.images[0])
