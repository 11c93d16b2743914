"""Detection manifests (schema version 2): lesion boxes, the task rule, and the grid check."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from manifest_helpers import AFFINE, SHAPE, write_pair
from pydantic import ValidationError

from medimg.errors import ManifestError
from medimg.io import read_header
from medimg.manifests import Box, load_manifest, resolve_cases, task_of
from medimg.manifests.boxes import box_grid_problems, world_to_voxel
from medimg.synthetic import grid_affine

BOX = {"center_mm": [1.0, -2.0, 3.0], "size_mm": [4.0, 4.0, 5.0], "class": "nodule"}
DET: dict[str, Any] = {
    "schema_version": 2,
    "task": "detection",
    "name": "tiny_det",
    "channels": [{"name": "CT", "modality": "CT"}],
    "classes": ["nodule", "mass"],
    "training": [
        {"id": "a", "image": "images/a.nii.gz", "boxes": [BOX]},
        {"id": "b", "image": "images/b.nii.gz", "boxes": []},
    ],
    "test": [{"id": "c", "image": "images/c.nii.gz"}],
}


def det(**changes: Any) -> dict[str, Any]:
    record = copy.deepcopy(DET)
    for key, value in changes.items():
        if value is None:
            record.pop(key)
        else:
            record[key] = value
    return record


def problems_of(tmp_path: Path, record: dict[str, Any], *, check_files: bool = False) -> Any:
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(record), encoding="utf-8")
    with pytest.raises(ManifestError) as info:
        load_manifest(path, check_files=check_files)
    return info.value.problems


def test_a_detection_manifest_parses_with_its_boxes(tmp_path: Path) -> None:
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(DET), encoding="utf-8")
    manifest = load_manifest(path, check_files=False)
    assert manifest.task == "detection"
    box = manifest.training[0].boxes[0]  # type: ignore[index]
    # centre (1, -2, 3), size (4, 4, 5): corners at centre -/+ half the size
    assert box.min_mm == (-1.0, -4.0, 0.5)
    assert box.max_mm == (3.0, 0.0, 5.5)
    assert box.class_name == "nodule"
    resolved = resolve_cases(manifest, path)
    assert [c.boxes for c in resolved] == [(box,), (), None]


def test_the_task_is_derived_when_not_given() -> None:
    assert task_of(det(task=None)) == "detection"
    no_boxes = det(task=None)
    for case in no_boxes["training"]:
        case.pop("boxes")
    assert task_of(no_boxes) == "classification"  # classes, no boxes: the version-1 rule
    assert task_of({"labels": [], "classes": ["a"]}) == "segmentation"
    assert task_of({}) == "unlabelled"
    assert task_of({"task": "detection", "labels": []}) == "detection"  # given wins


def test_version_1_knows_no_boxes_or_task(tmp_path: Path) -> None:
    assert problems_of(tmp_path, det(schema_version=1)) == (
        "task: needs \"schema_version\": 2, got 1; set it to 2 (or drop 'task': version 1 "
        "derives it)",
        'training[0].boxes: lesion boxes need "schema_version": 2, got 1 (2 case(s) list '
        "boxes); set it to 2",
    )
    assert problems_of(tmp_path, det(schema_version=3))[0].startswith(
        "schema_version: must be 1 or 2, got 3; this medimg reads schema versions 1 and 2"
    )


def test_box_schema_problems_are_listed_at_once_with_field_paths(tmp_path: Path) -> None:
    record = det()
    record["training"][0]["boxes"] = [
        {"center_mm": [1.0, 2.0], "size_mm": [4.0, 0.0, 4.0], "class": "nodul"},
        {"center_mm": [1.0, "2", 3.0], "size_mm": [4.0, -1.0, True], "class": "mass"},
        {"center_mm": [0, 0, 0], "size_mm": [1, 1, 1], "class": "nodule", "score": 0.5},
    ]
    assert problems_of(tmp_path, record) == (
        "training[0].boxes[0].center_mm: must be a list of 3 coordinates in mm (x, y, z), got "
        "[1.0, 2.0]",
        "training[0].boxes[0].size_mm: must be 3 sizes > 0 mm along x, y and z, got "
        "[4.0, 0.0, 4.0]; a box needs a positive extent along every axis (a lesion of diameter "
        "d has size [d, d, d])",
        "training[0].boxes[1].center_mm: must be a list of 3 coordinates in mm (x, y, z), got "
        "[1.0, '2', 3.0]",
        "training[0].boxes[1].size_mm: must be a list of 3 sizes > 0 mm (x, y, z), got "
        "[4.0, -1.0, True]",
        "training[0].boxes[2].score: unknown key 'score' (value 0.5); remove it (allowed: "
        "center_mm, class, size_mm)",
        "training[0].boxes[0].class: 'nodul' is not a declared class; did you mean 'nodule'? "
        "(declared: nodule, mass)",
    )


def test_a_non_finite_box_is_refused_by_the_model() -> None:
    # JSON cannot hold NaN (the reader refuses it); the model refuses it from Python too
    with pytest.raises(ValidationError, match=r"must be 3 sizes > 0 mm \(finite numbers\)"):
        Box.model_validate({"center_mm": [0, 0, 0], "size_mm": [1, math.inf, 1], "class": "n"})
    with pytest.raises(ValidationError, match=r"must be 3 coordinates in mm \(finite"):
        Box.model_validate({"center_mm": [math.nan, 0, 0], "size_mm": [1, 1, 1], "class": "n"})


def test_detection_declarations(tmp_path: Path) -> None:
    record = det(classes=[], channels=[{"name": "XR", "modality": "XR"}])
    record["training"][1].pop("boxes")
    record["training"][1]["class"] = "nodule"
    assert problems_of(tmp_path, record) == (
        "classes: must list at least one lesion class (the background is implicit), got []",
        "channels[0].modality: detection boxes are 3D, but 'XR' images are 2D; give 3D images "
        "(CT, MR)",
        "training[1]: a detection case needs 'boxes' (training and validation cases are "
        "annotated); give [] for a scan without lesions",
        "training[1].class: detection cases give a class per box, not per case, got 'nodule'; "
        "remove 'class'",
    )


def test_one_class_is_enough_for_detection_and_test_cases_may_omit_boxes(tmp_path: Path) -> None:
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(det(classes=["nodule"], task=None)), encoding="utf-8")
    manifest = load_manifest(path, check_files=False)
    assert manifest.task == "detection"
    assert manifest.test[0].boxes is None  # type: ignore[index]


def test_boxes_outside_detection_and_tasks_without_their_declarations(tmp_path: Path) -> None:
    record = det(task="segmentation")
    assert problems_of(tmp_path, record) == (
        "task: 'segmentation' needs 'labels' (the label maps' values); add them",
        "training[0].boxes: boxes are given but the manifest's task is 'segmentation' (2 "
        "case(s) list boxes); a detection manifest declares 'classes' (no 'labels') and "
        '"task": "detection", or drop the boxes',
    )
    assert problems_of(tmp_path, det(classes=None)) == (
        "task: 'detection' needs 'classes'; add them",
        "training[0].boxes[0].class: box class 'nodule' is given but the manifest declares no "
        "'classes'; add \"classes\": ['nodule', ...]",
    )
    assert problems_of(tmp_path, det(task="detecton")) == (
        "task: must be one of segmentation, classification, detection, got 'detecton'; did "
        "you mean 'detection'?",
    )


# --------------------------------------------------------------------------------------------
# content: boxes against the image grid


def test_world_to_voxel_on_an_lps_grid_by_hand() -> None:
    # LPS grid 20 x 20 x 10 at 2 x 2 x 3 mm centred on the origin: columns (-2,0,0), (0,-2,0),
    # (0,0,3); origin = -(cols @ (9.5, 9.5, 4.5)) = (19, 19, -13.5).
    affine = grid_affine((20, 20, 10), (2.0, 2.0, 3.0), axcodes="LPS")
    assert affine[:3, 3].tolist() == [19.0, 19.0, -13.5]
    # RAS point (9, -5, 1.5): i = (9 - 19) / -2 = 5, j = (-5 - 19) / -2 = 12, k = 15 / 3 = 5
    assert world_to_voxel(np.array([[9.0, -5.0, 1.5]]), affine).tolist() == [[5.0, 12.0, 5.0]]


def _geometry(tmp_path: Path) -> Any:
    write_pair(tmp_path, "a")  # 12 x 10 x 8 at 1 x 1 x 2.5 mm, LPS, rotated 15 deg about z
    return read_header(tmp_path / "images" / "a.nii.gz")


def test_a_box_inside_the_oblique_lps_grid_passes(tmp_path: Path) -> None:
    geometry = _geometry(tmp_path)
    assert np.allclose(geometry.affine, AFFINE)
    # the grid is centred on the world origin; a 2 mm cube there is 1 voxel from the centre
    inside = Box(center_mm=(0.0, 0.0, 0.0), size_mm=(2.0, 2.0, 2.0), class_name="nodule")
    assert box_grid_problems("training[0]", [inside], geometry, "images/a.nii.gz") == []


def test_a_box_reaching_past_the_grid_is_named_with_its_corner(tmp_path: Path) -> None:
    geometry = _geometry(tmp_path)
    # z is world-aligned (rotation about z only): the grid spans 8 x 2.5 = 20 mm, centre at
    # voxel 3.5; a 30 mm tall box reaches z = +-15 mm, voxel 3.5 +- 6 = -2.5 and 9.5, that is
    # 2 voxels past the edges at -0.5 and 7.5.
    tall = Box(center_mm=(0.0, 0.0, 0.0), size_mm=(2.0, 2.0, 30.0), class_name="nodule")
    (problem,) = box_grid_problems("training[0]", [tall], geometry, "images/a.nii.gz")
    assert problem.startswith(
        "training[0].boxes[0]: box (center_mm [0, 0, 0], size_mm [2, 2, 30]) reaches outside "
        "the grid of images/a.nii.gz (shape 12 x 10 x 8): its corner [-1, -1, -15] mm falls at "
        "voxel ["
    ), problem
    assert problem.endswith(
        "-2.5], 2 voxel(s) past the grid's edge (-0.5 to n - 0.5); fix the centre or the size "
        "(world RAS+ mm)"
    ), problem


def test_lps_coordinates_given_as_ras_get_a_hint(tmp_path: Path) -> None:
    affine = grid_affine(SHAPE, (1.0, 1.0, 2.5), axcodes="LPS", center_mm=(50.0, 40.0, 0.0))
    from medimg.io import save_volume

    save_volume(np.zeros((1, *SHAPE), np.float32), tmp_path / "off.nii.gz", like=affine)
    geometry = read_header(tmp_path / "off.nii.gz")
    # the grid is around (50, 40, 0) RAS; the box was written in LPS: (-50, -40, 0)
    lps = Box(center_mm=(-50.0, -40.0, 0.0), size_mm=(2.0, 2.0, 2.0), class_name="nodule")
    (problem,) = box_grid_problems("test[1]", [lps], geometry, "off.nii.gz")
    assert problem.endswith(
        "; it fits with x and y negated: were these LPS coordinates (DICOM, ITK, LUNA16)? "
        "medimg boxes are RAS+ mm"
    ), problem


def test_validate_checks_the_boxes_against_the_image_files(tmp_path: Path) -> None:
    for case_id in ("a", "b", "c"):
        write_pair(tmp_path, case_id)
    record = det()
    record["training"][0]["boxes"] = [
        {"center_mm": [0.0, 0.0, 0.0], "size_mm": [2.0, 2.0, 2.0], "class": "nodule"},
        {"center_mm": [0.0, 0.0, 0.0], "size_mm": [2.0, 2.0, 30.0], "class": "mass"},
    ]
    (problem,) = problems_of(tmp_path, record, check_files=True)
    assert problem.startswith("training[0].boxes[1]: box (center_mm [0, 0, 0], size_mm [2, 2, 30])")
    record["training"][0]["boxes"].pop()
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(record), encoding="utf-8")
    assert load_manifest(path).task == "detection"
