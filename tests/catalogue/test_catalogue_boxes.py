"""Bad-input catalogue: detection manifests (lesion boxes) through ``medimg validate``, and
``medimg synth ct-det --background``.

Every manifest entry writes one CT image (12 x 10 x 8 voxels at 1 x 1 x 2.5 mm, stored LPS,
rotated 15 degrees about z, centred on the world origin) and a schema-2 detection manifest with
one fault, and pins the exit code (2: user error) and the message: manifest, field path, what is
wrong (with the values) and the fix.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from catalogue_helpers import BadInput, check_bad_input

from medimg.io import save_volume
from medimg.synthetic import grid_affine

SHAPE = (12, 10, 8)
AFFINE = grid_affine(SHAPE, (1.0, 1.0, 2.5), axcodes="LPS", rotation_deg=(0.0, 0.0, 15.0))
M = r"{tmp}/dataset\.json has \d+ problems?:\n  "


def _dataset(tmp: Path) -> dict[str, Any]:
    save_volume(np.zeros((1, *SHAPE), np.int16), tmp / "images" / "a.nii.gz", like=AFFINE)
    box = {"center_mm": [0.0, 0.0, 0.0], "size_mm": [2.0, 2.0, 2.0], "class": "nodule"}
    return {
        "schema_version": 2,
        "task": "detection",
        "name": "tiny_det",
        "channels": [{"name": "CT", "modality": "CT"}],
        "classes": ["nodule"],
        "training": [{"id": "a", "image": "images/a.nii.gz", "boxes": [box]}],
    }


def _edited(edit: Callable[[dict[str, Any]], None]) -> Callable[[Path], Sequence[str]]:
    def make(tmp: Path) -> Sequence[str]:
        record = _dataset(tmp)
        edit(record)
        path = tmp / "dataset.json"
        path.write_text(json.dumps(record), encoding="utf-8")
        return ["validate", str(path)]

    return make


def _box(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def edit(record: dict[str, Any]) -> None:
        record["training"][0]["boxes"][0].update(changes)

    return edit


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(record: dict[str, Any]) -> None:
        record[key] = value

    return edit


def _no_boxes(record: dict[str, Any]) -> None:
    record["training"][0].pop("boxes")


def _two_faults(record: dict[str, Any]) -> None:
    record["training"][0]["boxes"].append(
        {"center_mm": [0.0, 0.0], "size_mm": [1.0, -1.0, 1.0], "class": "nodule"}
    )
    record["training"][0]["boxes"][0]["class"] = "nodul"


def _lps_box(tmp: Path) -> Sequence[str]:
    off = grid_affine(SHAPE, (1.0, 1.0, 2.5), axcodes="LPS", center_mm=(30.0, 20.0, 0.0))
    save_volume(np.zeros((1, *SHAPE), np.int16), tmp / "images" / "off.nii.gz", like=off)

    def edit(record: dict[str, Any]) -> None:
        record["training"][0]["image"] = "images/off.nii.gz"
        record["training"][0]["boxes"][0]["center_mm"] = [-30.0, -20.0, 0.0]

    return _edited(edit)(tmp)


def _background(tmp: Path, hu: float | None) -> Sequence[str]:
    ct = tmp / "ct.nii.gz"
    if hu is not None:  # a body of soft tissue: no lung where a nodule could go
        save_volume(np.full((1, 20, 20, 10), hu, np.int16), ct, like=np.diag([3.0, 3, 3, 1]))
    return ["synth", "ct-det", str(tmp / "out"), "--cases", "1", "--background", str(ct)]


CATALOGUE = [
    BadInput(
        "box-outside-image",
        # z spans 8 x 2.5 = 20 mm; a 30 mm tall box reaches 2 voxels past both z edges
        _edited(_box(size_mm=[2.0, 2.0, 30.0])),
        2,
        M + r"training\[0\]\.boxes\[0\]: box \(center_mm \[0, 0, 0\], size_mm \[2, 2, 30\]\) "
        r"reaches outside the grid of images/a\.nii\.gz \(shape 12 x 10 x 8\): its corner "
        r"\[-1, -1, -15\] mm falls at voxel \[.*\], 2 voxel\(s\) past the grid's edge",
    ),
    BadInput(
        "box-lps-coordinates",
        # the image's grid is centred on (30, 20, 0) RAS; the box was written in LPS (-30, -20)
        _lps_box,
        2,
        M + r"training\[0\]\.boxes\[0\]: .* reaches outside the grid .*; it fits with x and y "
        r"negated: were these LPS coordinates \(DICOM, ITK, LUNA16\)\? medimg boxes are RAS\+ mm",
    ),
    BadInput(
        "box-degenerate-size",
        _edited(_box(size_mm=[2.0, 0.0, 2.0])),
        2,
        M + r"training\[0\]\.boxes\[0\]\.size_mm: must be 3 sizes > 0 mm along x, y and z, got "
        r"\[2\.0, 0\.0, 2\.0\]; a box needs a positive extent along every axis",
    ),
    BadInput(
        "box-center-not-three-numbers",
        _edited(_box(center_mm=[1.0, "2", 3.0])),
        2,
        M + r"training\[0\]\.boxes\[0\]\.center_mm: must be a list of 3 coordinates in mm "
        r"\(x, y, z\), got \[1\.0, '2', 3\.0\]",
    ),
    BadInput(
        "box-class-undeclared",
        _edited(_box(**{"class": "nodul"})),
        2,
        M + r"training\[0\]\.boxes\[0\]\.class: 'nodul' is not a declared class; did you mean "
        r"'nodule'\? \(declared: nodule\)",
    ),
    BadInput(
        "box-unknown-key",
        _edited(_box(diameter_mm=4.0)),
        2,
        M + r"training\[0\]\.boxes\[0\]\.diameter_mm: unknown key 'diameter_mm' \(value 4\.0\); "
        r"a lesion of diameter d has \"size_mm\": \[d, d, d\] \(allowed: center_mm, class, "
        r"size_mm\)",
    ),
    BadInput(
        "box-problems-listed-at-once",
        _edited(_two_faults),
        2,
        r"{tmp}/dataset\.json has 3 problems:\n  training\[0\]\.boxes\[1\]\.center_mm: .*\n  "
        r"training\[0\]\.boxes\[1\]\.size_mm: .*\n  training\[0\]\.boxes\[0\]\.class: 'nodul'",
    ),
    BadInput(
        "boxes-in-schema-version-1",
        _edited(_set("schema_version", 1)),
        2,
        M + r"task: needs \"schema_version\": 2, got 1; set it to 2.*\n  training\[0\]\.boxes: "
        r"lesion boxes need \"schema_version\": 2, got 1 \(1 case\(s\) list boxes\); set it to 2",
    ),
    BadInput(
        "detection-case-without-boxes",
        _edited(_no_boxes),
        2,
        M + r"training\[0\]: a detection case needs 'boxes' \(training and validation cases are "
        r"annotated\); give \[\] for a scan without lesions",
    ),
    BadInput(
        "detection-task-misspelt",
        _edited(_set("task", "detecton")),
        2,
        M + r"task: must be one of segmentation, classification, detection, got 'detecton'; "
        r"did you mean 'detection'\?",
    ),
    BadInput(
        "detection-on-2d-images",
        _edited(_set("channels", [{"name": "XR", "modality": "XR"}])),
        2,
        M + r"channels\[0\]\.modality: detection boxes are 3D, but 'XR' images are 2D",
    ),
    BadInput(
        "synth-det-background-missing",
        lambda tmp: _background(tmp, None),
        2,
        r"error: .*{tmp}/ct\.nii\.gz",
    ),
    BadInput(
        "synth-det-background-without-lung",
        lambda tmp: _background(tmp, 40.0),
        2,
        r"error: {tmp}/ct\.nii\.gz: no lung region \(darker than -400 HU, inside the body\) "
        r"where a nodule of 3 mm or more fits; give a chest CT",
    ),
]


@pytest.mark.parametrize("entry", CATALOGUE, ids=[e.kind for e in CATALOGUE])
def test_bad_detection_input(
    entry: BadInput, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_bad_input(entry, tmp_path, capsys)
