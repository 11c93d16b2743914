"""Property tests of manifest loading (issue 12): only medimg errors escape, every problem listed.

Inputs are arbitrary JSON (with the manifest's own keys mixed in, so the schema, the MSD and
nnU-Net importers and the file checks are all reached), valid manifests with mutated values,
types and keys, and raw bytes. Example counts are bounded so the file runs in seconds.
"""

from __future__ import annotations

import copy
import json
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from manifest_helpers import write_pair

from medimg.cli import main
from medimg.errors import ManifestError, MedimgError
from medimg.manifests import load_manifest

KEYS = [
    "schema_version", "name", "description", "channels", "labels", "classes", "training",
    "validation", "test", "allow_paths_outside_root", "$schema", "id", "image", "label",
    "class", "metadata", "value", "modality", "channel_names", "file_ending", "dataset",
    "images",
]  # fmt: skip
PATHS = ["images/a.nii.gz", "labels/a.nii.gz", "images", "../a.nii.gz", "/etc/passwd", "", "."]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from([*PATHS, "CT", "MR", "XR", "ct", "1", "a\x00b", "\ud800", 1, 0, -1]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), inner, max_size=5),
    ),
    max_leaves=25,
)

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Files of cases a and b, and a valid manifest record over them (written per example)."""
    root = tmp_path_factory.mktemp("props")
    cases = []
    for case_id in ("a", "b"):
        image, label = write_pair(root, case_id)
        cases.append({"id": case_id, "image": image, "label": label})
    record = {
        "schema_version": 1,
        "name": "tiny",
        "channels": [{"name": "CT", "modality": "CT"}],
        "labels": [{"value": 0, "name": "background"}, {"value": 1, "name": "box"}],
        "training": cases,
    }
    return root, record


def _only_medimg_errors(path: Path, *, check_files: bool) -> None:
    try:
        load_manifest(path, check_files=check_files)
    except MedimgError:
        pass


def _validate_exits_cleanly(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(path)]) in (0, 2)
    assert "Traceback" not in capsys.readouterr().err


@SETTINGS
@given(raw=json_values)
def test_arbitrary_json_raises_only_medimg_errors(
    raw: Any, dataset: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = dataset
    path = root / "arbitrary.json"
    path.write_text(json.dumps(raw), encoding="utf-8")  # NaN/Infinity written as Python does
    _only_medimg_errors(path, check_files=False)
    _validate_exits_cleanly(path, capsys)


@SETTINGS
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_medimg_errors(
    data: bytes, dataset: tuple[Path, dict[str, Any]]
) -> None:
    root, _ = dataset
    path = root / "bytes.json"
    path.write_bytes(data)
    _only_medimg_errors(path, check_files=True)


def _locations(record: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) pair of the record, for a mutation to hit."""
    out: list[tuple[Any, Any]] = []
    stack = [record]
    while stack:
        node = stack.pop()
        keys = list(node) if isinstance(node, dict) else range(len(node))
        for key in keys:
            out.append((node, key))
            if isinstance(node[key], dict | list):
                stack.append(node[key])
    return out


mutation = st.tuples(
    st.sampled_from(["replace", "delete", "add"]),
    st.integers(min_value=0, max_value=10**6),
    json_values,
    st.sampled_from([*KEYS, "extra"]),
)


@SETTINGS
@given(mutations=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_manifests_raise_only_medimg_errors(
    mutations: list[tuple[str, int, Any, str]],
    dataset: tuple[Path, dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, base = dataset
    record = copy.deepcopy(base)
    for action, pick, value, key in mutations:
        locations = _locations(record)
        if not locations:
            break
        node, where = locations[pick % len(locations)]
        if action == "replace":
            node[where] = value
        elif action == "delete":
            if isinstance(node, dict):
                del node[where]
            else:
                node.pop(where)
        elif isinstance(node[where], dict):
            node[where][key] = value
        elif isinstance(node[where], list):
            node[where].append(value)
    path = root / "mutated.json"
    path.write_text(json.dumps(record), encoding="utf-8")
    _only_medimg_errors(path, check_files=True)
    _validate_exits_cleanly(path, capsys)


# Independent faults, each with the field path its problem must name.
FAULTS: dict[str, tuple[str, Any]] = {
    "bad id": ("id", "bad id!"),
    "image not a path": ("image", 5),
    "unknown case key": ("lable", "x.nii.gz"),
    "missing image file": ("image", "images/missing.nii.gz"),
    "path outside": ("label", "../outside.nii.gz"),
    "metadata not scalar": ("metadata", {"age": [1, 2]}),
}


@SETTINGS
@given(
    n_cases=st.integers(min_value=1, max_value=6),
    faults=st.lists(st.sampled_from(sorted(FAULTS)), min_size=6, max_size=6),
    faulty=st.lists(st.booleans(), min_size=6, max_size=6),
    label_value=st.sampled_from(["1", 1.0, True, -1, None]),
)
def test_validate_lists_every_problem(
    n_cases: int,
    faults: list[str],
    faulty: list[bool],
    label_value: Any,
    dataset: tuple[Path, dict[str, Any]],
) -> None:
    root, base = dataset
    record = copy.deepcopy(base)
    record["training"] = []
    expected: set[str] = set()
    file_faults_only = True
    for i in range(n_cases):
        case = {"id": f"c{i}", "image": "images/a.nii.gz", "label": "labels/a.nii.gz"}
        if faulty[i]:
            key, value = FAULTS[faults[i]]
            case[key] = value
            expected.add(f"training[{i}].{key}")
            file_faults_only &= faults[i] == "missing image file"
        record["training"].append(case)
    if label_value is not None:
        record["labels"][1]["value"] = label_value
        expected.add("labels[1].value")
        file_faults_only = False
    path = root / "faults.json"
    path.write_text(json.dumps(record), encoding="utf-8")
    if not expected:
        assert load_manifest(path).name == "tiny"
        return
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    named = {p.split(": ")[0] for p in info.value.problems}
    # file problems are reported once the schema is clean, so with schema faults present
    # only the schema faults are expected now
    if not file_faults_only:
        expected = {e for e in expected if not _is_missing_file(record, e)}
    for where in expected:  # the field itself or a part of it (metadata.age)
        assert any(n == where or n.startswith((f"{where}.", f"{where}[")) for n in named), (
            where,
            info.value.problems,
        )


def _is_missing_file(record: dict[str, Any], where: str) -> bool:
    index = int(where.split("[")[1].split("]")[0]) if where.startswith("training[") else -1
    return (
        index >= 0
        and where.endswith(".image")
        and record["training"][index]["image"] == "images/missing.nii.gz"
    )


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=string.printable + "\x00\x7f\u00e9\ud800", max_size=20))
def test_any_path_text_is_a_named_problem_or_accepted(text: str) -> None:
    from medimg.manifests.load import case_path_problems

    raw = {"training": [{"id": "a", "image": text}]}
    for line in case_path_problems(raw, Path("/data/root")):
        assert line.startswith("training[0].image: ")
