"""Schema-layer problems: every message pinned, every problem reported at once."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from medimg.errors import ManifestError
from medimg.manifests import Manifest, load_manifest, manifest_json_schema, resolve_cases
from medimg.modality import Modality, lookup_modality

BASE: dict[str, Any] = {
    "schema_version": 1,
    "name": "tiny",
    "channels": [{"name": "CT", "modality": "CT"}],
    "labels": [{"value": 0, "name": "background"}, {"value": 1, "name": "box"}],
    "training": [
        {"id": "a", "image": "images/a.nii.gz", "label": "labels/a.nii.gz"},
        {"id": "b", "image": "images/b.nii.gz", "label": "labels/b.nii.gz"},
    ],
}


def problems_of(tmp_path: Path, record: dict[str, Any]) -> tuple[str, ...]:
    path = tmp_path / "m.json"
    path.write_text(json.dumps(record), encoding="utf-8")
    with pytest.raises(ManifestError) as info:
        load_manifest(path, check_files=False)
    assert info.value.path == path
    assert str(info.value).startswith(f"{path} has {len(info.value.problems)} problem")
    return info.value.problems


def edited(**changes: Any) -> dict[str, Any]:
    record = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            record.pop(key)
        else:
            record[key] = value
    return record


def test_valid_manifest_parses_into_frozen_models(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps(BASE), encoding="utf-8")
    manifest = load_manifest(path, check_files=False)
    assert manifest.task == "segmentation"
    assert manifest.modalities == (Modality.CT,)
    assert [c.case_id for _, _, c in manifest.cases()] == ["a", "b"]
    assert manifest.split("test") == ()
    with pytest.raises(ValueError, match="frozen"):
        manifest.training[0].case_id = "z"  # type: ignore[misc]
    resolved = resolve_cases(manifest, path)
    assert resolved[1].images == (tmp_path.resolve() / "images" / "b.nii.gz",)
    assert resolved[1].label == tmp_path.resolve() / "labels" / "b.nii.gz"


def test_split_name_must_be_known() -> None:
    manifest = Manifest.model_validate(BASE)
    with pytest.raises(
        ValueError, match=r"split must be one of training, validation, test, got 'train'"
    ):
        manifest.split("train")


def test_unknown_keys_get_a_did_you_mean(tmp_path: Path) -> None:
    record = edited(colour="red")
    record["training"][1]["lable"] = "x.nii.gz"
    problems = problems_of(tmp_path, record)
    # pydantic reports nested fields before extra top-level keys
    assert problems[1].startswith(
        "colour: unknown key 'colour' (value 'red'); remove it (allowed: "
    )
    assert problems[0].startswith(
        "training[1].lable: unknown key 'lable' (value 'x.nii.gz'); did you mean 'label'?"
    )


def test_wrong_types_name_field_and_value(tmp_path: Path) -> None:
    record = edited()
    record["training"][0]["label"] = 5
    record["training"][1]["image"] = 7
    assert problems_of(tmp_path, record) == (
        "training[0].label: Input should be a valid string, got 5",
        "training[1].image: must be a path string or a list of path strings (one per channel)"
        ", got 7",
    )


def test_unknown_modality_suggests_the_closest(tmp_path: Path) -> None:
    record = edited(channels=[{"name": "CT", "modality": "CT "}])
    assert problems_of(tmp_path, record) == (
        "channels[0].modality: 'CT ' is not a modality; did you mean 'CT'? (valid: CT, MR, XR)",
    )


def test_lookup_modality_refuses_non_strings() -> None:
    with pytest.raises(ValueError, match=r"^3 is not a modality \(valid: CT, MR, XR\)$"):
        lookup_modality(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'MRI' is not a modality; did you mean 'MR'\?"):
        lookup_modality("MRI")


def test_duplicate_ids_across_splits(tmp_path: Path) -> None:
    record = edited(test=[{"id": "a", "image": "images/c.nii.gz"}])
    assert problems_of(tmp_path, record) == (
        "test[0].id: duplicate of training[0].id ('a'); give every case a unique id",
    )


def test_empty_splits(tmp_path: Path) -> None:
    record = edited(training=[], validation=[])
    assert problems_of(tmp_path, record) == (
        "training: must list at least one case, got []; add cases or fix the key",
        "validation: must list at least one case, got []; add cases or drop it",
    )


def test_missing_key_schema_version_and_id_pattern(tmp_path: Path) -> None:
    record = edited(name=None, schema_version=3)
    record["training"][0]["id"] = "a/b"
    assert problems_of(tmp_path, record) == (
        "schema_version: must be 1 or 2, got 3; this medimg reads schema versions 1 and 2 (2 "
        "adds 'task' and lesion 'boxes')",
        "name: required key is missing; add it",
        "training[0].id: 'a/b' may hold only letters, digits, '_', '.' and '-'; rename it "
        "(ids are used in file names)",
    )


def test_labels_and_classes_declared_consistently(tmp_path: Path) -> None:
    record = edited(labels=None, classes=["normal", "nodule"])
    record["training"][0]["class"] = "nodul"
    record["training"][1]["class"] = "normal"
    assert problems_of(tmp_path, record) == (
        "training[0].label: a label map is given ('labels/a.nii.gz') but the manifest declares "
        "no 'labels'; add 'labels' with every value the label maps hold",
        "training[0].class: 'nodul' is not a declared class; did you mean 'nodule'? "
        "(declared: normal, nodule)",
        "training[1].label: a label map is given ('labels/b.nii.gz') but the manifest declares "
        "no 'labels'; add 'labels' with every value the label maps hold",
    )


def test_class_without_classes_and_both_declarations(tmp_path: Path) -> None:
    record = edited(classes=["only"])
    record["training"][0]["class"] = "x"
    record2 = edited()
    record2["training"][0]["class"] = "x"
    assert problems_of(tmp_path, record) == (
        "labels: a manifest declares either 'labels' (segmentation) or 'classes' "
        "(classification), got both; keep one",
        "classes: must list at least two classes, got ['only']",
        "training[0].class: 'x' is not a declared class (declared: only)",
    )
    assert problems_of(tmp_path, record2) == (
        "training[0].class: a class is given ('x') but the manifest declares no 'classes'; "
        "add 'classes'",
    )


def test_duplicate_label_values_names_and_classes(tmp_path: Path) -> None:
    record = edited(labels=[{"value": 0, "name": "bg"}, {"value": 0, "name": "bg"}])
    assert problems_of(tmp_path, record) == (
        "labels[1].value: duplicate of labels[0].value (0); each label needs its own value and "
        "name",
        "labels[1].name: duplicate of labels[0].name ('bg'); each label needs its own value and "
        "name",
    )
    record = edited(labels=None, classes=["x", "y", "x"], training=[{"id": "a", "image": "i"}])
    assert problems_of(tmp_path, record) == ("classes[2]: duplicate of classes[0] ('x')",)


def test_image_path_count_must_fit_channels(tmp_path: Path) -> None:
    record = edited()
    record["training"][0]["image"] = ["a1.nii.gz", "a2.nii.gz"]
    record["training"][1]["image"] = []
    assert problems_of(tmp_path, record) == (
        "training[0].image: 2 paths for 1 declared channel(s); give one path per channel, or one "
        "multi-channel file",
        "training[1].image: must name at least one path, got []",
    )


def test_paths_outside_root_refused_unless_allowed(tmp_path: Path) -> None:
    record = edited()
    record["training"][0]["image"] = "../elsewhere/a.nii.gz"
    (problem,) = problems_of(tmp_path, record)
    assert problem == (
        f"training[0].image: '../elsewhere/a.nii.gz' is outside the manifest's folder "
        f"({tmp_path.parent / 'elsewhere' / 'a.nii.gz'}); move the data under {tmp_path}, or "
        'set "allow_paths_outside_root": true'
    )
    record["allow_paths_outside_root"] = True
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(record), encoding="utf-8")
    assert load_manifest(path, check_files=False).allow_paths_outside_root


def test_every_problem_reported_at_once(tmp_path: Path) -> None:
    record = edited(channels=[{"name": "CT", "modality": "ct"}], extra=1)
    record["training"][1]["id"] = "a"
    record["training"][0]["label"] = "../x.nii.gz"
    problems = problems_of(tmp_path, record)
    assert [p.split(":")[0] for p in problems] == [
        "channels[0].modality",
        "extra",
        "training[1].id",
        "training[0].label",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "{",
            "(file): not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2",
        ),
        ("[1]", "(file): must hold a JSON object {...}, got list"),
        (b"\xff\xfe", "(file): cannot be read as UTF-8 text"),
    ],
)
def test_unparseable_files(tmp_path: Path, text: str | bytes, message: str) -> None:
    path = tmp_path / "m.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ManifestError, match=re.escape(message)):
        load_manifest(path)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"has 1 problem:\n  \(file\): no such file"):
        load_manifest(tmp_path / "nope.json")


def test_exported_schema_is_in_sync() -> None:
    committed = Path(__file__).resolve().parents[2] / "data_manifests" / "schema.json"
    expected = json.dumps(manifest_json_schema(), indent=2) + "\n"
    assert committed.read_text(encoding="utf-8") == expected, (
        "data_manifests/schema.json is stale: run `medimg manifest schema --force`"
    )
