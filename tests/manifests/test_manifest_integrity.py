"""Integrity of validation (issue 12): a clean validate means training's reads accept the files.

Links are resolved before the root check, every load policy of ``load_volume`` is applied from
the header (voxels read only where NaN/inf can live), DICOM folders are refused, label values
must be JSON integers, and every malformed manifest file is a ManifestError naming the field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from manifest_helpers import AFFINE, SHAPE, write_pair

from medimg.cli import main
from medimg.errors import ManifestError, MedimgError
from medimg.io import load_volume, save_volume
from medimg.manifests import Tolerances, load_manifest
from medimg.manifests.importers import convert_dataset_json
from medimg.manifests.load import MAX_JSON_DEPTH, read_manifest_json

Writer = Callable[[Path, dict[str, Any]], Path]


def problems(path: Path, **kwargs: Any) -> tuple[str, ...]:
    with pytest.raises(ManifestError) as info:
        load_manifest(path, **kwargs)
    assert info.value.path == path
    return info.value.problems


def file_problems(path: Path) -> tuple[str, ...]:
    with pytest.raises(ManifestError) as info:
        read_manifest_json(path)
    return info.value.problems


# --------------------------------------------------------------------------------------------
# item 6: links


def test_link_to_a_file_outside_the_root_is_refused_naming_link_and_target(
    seg_dir: tuple[Path, dict[str, Any]], write_manifest: Writer, tmp_path_factory: Any
) -> None:
    root, record = seg_dir
    outside = tmp_path_factory.mktemp("outside")
    image, _ = write_pair(outside, "z")
    os.symlink(outside / image, root / "images" / "z.nii.gz")
    record["training"][0]["image"] = "images/z.nii.gz"
    path = write_manifest(root, record)
    assert problems(path) == (
        f"training[0].image: 'images/z.nii.gz' leads outside the manifest's folder through the "
        f"link {root}/images/z.nii.gz -> {outside}/images/z.nii.gz (resolved: "
        f"{outside.resolve()}/images/z.nii.gz); move the data under {root.resolve()}, or set "
        '"allow_paths_outside_root": true',
    )
    # the lexical check alone (no disk access) cannot see links
    assert load_manifest(path, check_files=False).name == "tiny"
    record["allow_paths_outside_root"] = True  # the explicit opt-in covers links too
    assert load_manifest(write_manifest(root, record)).name == "tiny"


def test_linked_folder_outside_the_root_and_links_inside_it(
    seg_dir: tuple[Path, dict[str, Any]], write_manifest: Writer, tmp_path_factory: Any
) -> None:
    root, record = seg_dir
    outside = tmp_path_factory.mktemp("outside")
    write_pair(outside, "a")
    os.symlink(outside / "labels", root / "ext")
    os.symlink(root / "images", root / "same")  # a link that stays inside is fine
    record["training"][0]["label"] = "ext/a.nii.gz"
    record["training"][1]["image"] = "same/b.nii.gz"
    (found,) = problems(write_manifest(root, record))
    assert found.startswith(
        f"training[0].label: 'ext/a.nii.gz' leads outside the manifest's folder through the "
        f"link {root}/ext -> {outside}/labels (resolved: "
    )


def test_broken_link_is_named(seg_dir: tuple[Path, dict[str, Any]], write_manifest: Writer) -> None:
    root, record = seg_dir
    os.symlink(root / "nowhere.nii.gz", root / "images" / "gone.nii.gz")
    record["training"][0]["image"] = "images/gone.nii.gz"
    assert problems(write_manifest(root, record)) == (
        f"training[0].image: file not found: images/gone.nii.gz (resolved: "
        f"{root}/images/gone.nii.gz, a broken link to {root}/nowhere.nii.gz); fix the path",
    )


# --------------------------------------------------------------------------------------------
# item 9: the same policies as training's reads


def _sheared(root: Path) -> str:
    affine = np.diag([1.0, 1.0, 2.5, 1.0])
    affine[0, 1] = 0.2  # x leans into y: axes 78.7 degrees apart, a shear of 11.31 degrees
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.int16), affine), root / "images" / "sh.nii.gz")
    return "images/sh.nii.gz"


def _nan_image(root: Path) -> str:
    image = np.zeros(SHAPE, np.float32)
    image[3, 4, 5] = np.nan
    save_volume(image[None], root / "images" / "nan.nii.gz", like=AFFINE)
    return "images/nan.nii.gz"


def _overflowing_scale(root: Path) -> str:
    # int16 stored, scl_slope 1e35: 32767 * 1e35 = 3.3e39 > float32 max 3.4e38 -> inf on read
    data = np.zeros(SHAPE, np.int16)
    data[0, 0, 0] = 32767
    img = nib.Nifti1Image(data, AFFINE)
    img.header.set_slope_inter(1e35, 0.0)
    nib.save(img, root / "images" / "scaled.nii")
    return "images/scaled.nii"


def _flat_ct(root: Path) -> str:
    nib.save(nib.Nifti1Image(np.zeros((12, 10), np.int16), np.eye(4)), root / "images" / "flat.nii")
    return "images/flat.nii"


def _rgb(root: Path) -> str:
    rgb = np.zeros(SHAPE, np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")]))
    nib.save(nib.Nifti1Image(rgb, AFFINE), root / "images" / "rgb.nii")
    return "images/rgb.nii"


def _corrupt_gzip(root: Path) -> str:
    rng = np.random.default_rng(0)
    data = rng.integers(-1000, 1000, SHAPE).astype(np.int16)  # int: only the CRC pass reads it
    save_volume(data[None], root / "images" / "crc.nii.gz", like=AFFINE)
    raw = bytearray((root / "images" / "crc.nii.gz").read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (root / "images" / "crc.nii.gz").write_bytes(bytes(raw))
    return "images/crc.nii.gz"


def _single_slice(root: Path) -> str:
    # (12, 10, 1) stays 3D for the reader (ndim=3), so training accepts it; so must validate
    save_volume(np.zeros((1, 12, 10, 1), np.int16), root / "images" / "one.nii.gz", like=AFFINE)
    return "images/one.nii.gz"


BAD_IMAGES = {
    "sheared": (_sheared, "has a sheared affine: voxel axes deviate 11.310 degrees"),
    "nan": (_nan_image, "1 NaN and 0 infinite voxels (first at voxel (3, 4, 5))"),
    "overflowing scale": (_overflowing_scale, "0 NaN and 1 infinite voxels"),
    "2D for CT": (_flat_ct, "is 2D (shape (12, 10)) but CT images are 3D"),
    "RGB": (_rgb, "structured dtype (R,G,B)"),
    "corrupt gzip": (_corrupt_gzip, "corrupt gzip stream: CRC check failed"),
}


@pytest.mark.parametrize("kind", list(BAD_IMAGES))
def test_validate_refuses_what_training_refuses(
    kind: str, seg_dir: tuple[Path, dict[str, Any]], write_manifest: Writer
) -> None:
    root, record = seg_dir
    make, expected = BAD_IMAGES[kind]
    rel = make(root)
    record["training"] = [{"id": "x", "image": rel}]
    record.pop("labels")
    (found,) = problems(write_manifest(root, record))
    assert found.startswith("training[0].image: "), found
    assert expected in found, found
    with pytest.raises(MedimgError):  # what the chain's LoadVolumed calls
        load_volume(root / rel, ndim=3)


def test_validate_accepts_what_training_accepts(
    seg_dir: tuple[Path, dict[str, Any]], write_manifest: Writer
) -> None:
    root, record = seg_dir
    rel = _single_slice(root)
    record["training"] = [{"id": "x", "image": rel}]
    record.pop("labels")
    assert load_manifest(write_manifest(root, record)).name == "tiny"
    assert load_volume(root / rel, ndim=3).spatial_shape == (12, 10, 1)


def test_every_bad_file_of_every_case_is_listed(
    seg_dir: tuple[Path, dict[str, Any]], write_manifest: Writer
) -> None:
    root, record = seg_dir
    record["training"] = [
        {"id": f"c{k}", "image": make(root)} for k, (make, _) in enumerate(BAD_IMAGES.values())
    ]
    record.pop("labels")
    found = problems(write_manifest(root, record))
    assert [p.split(":")[0] for p in found] == [f"training[{k}].image" for k in range(6)]


def test_label_maps_are_read_as_training_reads_them(
    seg_dir: tuple[Path, dict[str, Any]], write_manifest: Writer
) -> None:
    root, record = seg_dir
    label = np.zeros((1, *SHAPE), np.float32)
    label[0, 1, 1, 1] = np.inf
    save_volume(label, root / "labels" / "a.nii.gz", like=AFFINE, overwrite=True)
    save_volume(
        np.zeros((2, *SHAPE), np.uint8), root / "labels" / "b.nii.gz", like=AFFINE, overwrite=True
    )
    path = write_manifest(root, record)
    assert problems(path) == (
        "training[0].label: cannot read the label voxels: 0 NaN and 1 infinite voxels (first at "
        "voxel (1, 1, 1)); medimg refuses non-finite intensities by default: fix the file, or "
        "load with nonfinite='zero' to replace them by 0 or nonfinite='keep' to keep them",
        "training[1].label: holds 2 volumes, a label map is one; give one label volume per case",
    )
    # without the label-value check, a float label is still read for its finite values
    assert problems(path, tolerances=Tolerances(check_label_values=False))[0].startswith(
        "training[0].label: labels/a.nii.gz: 0 NaN and 1 infinite voxels"
    )


def test_a_folder_without_dicom_files_is_named_with_what_to_point_to(
    seg_dir: tuple[Path, dict[str, Any]], write_manifest: Writer
) -> None:
    root, record = seg_dir
    (root / "series").mkdir()
    record["training"][1]["image"] = "series"
    (found,) = problems(write_manifest(root, record))
    assert found.startswith("training[1].image: cannot read series: ")
    assert found.endswith(
        "holds no DICOM image (0 files left out); point to the folder that holds the series' "
        ".dcm files"
    )


def test_decode_limit_is_the_max_memory_option(
    seg_dir: tuple[Path, dict[str, Any]],
    write_manifest: Writer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, record = seg_dir
    path = write_manifest(root, record)
    # 12 * 10 * 8 float32 voxels = 3840 bytes; a 0.000001 GiB limit is 1073 bytes
    assert main(["validate", "--max-memory-gb", "0.000001", str(path)]) == 2
    err = capsys.readouterr().err
    assert (
        "training[0].image: images/a.nii.gz decodes to 0.00 GiB (shape (12, 10, 8)), over the "
        "decode limit of 0.00 GiB; raise it (medimg validate --max-memory-gb)"
    ) in err
    assert main(["validate", "--max-memory-gb", "1", str(path)]) == 0
    with pytest.raises(SystemExit):
        main(["validate", "--max-memory-gb", "0", str(path)])
    assert "must be a finite number of GiB > 0, got '0'" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# item 11: label values given as strings


def test_label_value_given_as_a_string_is_refused(
    seg_dir: tuple[Path, dict[str, Any]], write_manifest: Writer
) -> None:
    root, record = seg_dir
    record["labels"][1]["value"] = "1"
    record["labels"][0]["value"] = 0.0
    assert problems(write_manifest(root, record)) == (
        "labels[0].value: must be a JSON integer, got float 0.0; give an integer",
        "labels[1].value: must be a JSON integer, got str '1'; write 1 without quotes",
    )


def test_nnunet_label_value_given_as_a_string_is_refused(tmp_path: Path) -> None:
    raw = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "liver": "1", "spleen": True, "both": [1, 2]},
        "file_ending": ".nii.gz",
    }
    with pytest.raises(ManifestError) as info:
        convert_dataset_json(raw, tmp_path / "dataset.json")
    assert info.value.problems[:3] == (
        "labels.liver: must be a JSON integer, got str '1'; write 1 without quotes",
        "labels.spleen: must be a JSON integer, got bool True; give the label's integer voxel "
        "value",
        "labels.both: region-based label [1, 2] is not supported; list plain integer labels only",
    )


def test_msd_label_keys_are_values_read_explicitly(tmp_path: Path) -> None:
    raw = {
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "liver", "x": "spleen", "2": 7},
        "training": "all",
        "test": {"a": 1},
    }
    with pytest.raises(ManifestError) as info:
        convert_dataset_json(raw, tmp_path / "dataset.json")
    assert info.value.problems == (
        "labels.x: MSD label keys are voxel values such as \"1\", got 'x'; use the label's "
        "integer value as the key",
        "labels.2: must be the label's name, got 7",
        "training: must be a list of cases, got 'all'",
        "test: must be a list of cases, got {'a': 1}",
    )


def test_nnunet_malformed_dataset_entries_and_file_ending(tmp_path: Path) -> None:
    raw: dict[str, Any] = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0},
        "dataset": {"a": 3, "b": {"images": "x.nii.gz"}},
    }
    with pytest.raises(ManifestError) as info:
        convert_dataset_json(raw, tmp_path / "dataset.json")
    assert info.value.problems == (
        "dataset.a: must be {'images': [paths], 'label': path}, got 3",
        "dataset.b: must be {'images': [paths], 'label': path}, got {'images': 'x.nii.gz'}",
    )
    raw.pop("dataset")
    raw["file_ending"] = "**"
    with pytest.raises(ManifestError, match=r"file_ending: must be a suffix like '.nii.gz', got"):
        convert_dataset_json(raw, tmp_path / "dataset.json")


# --------------------------------------------------------------------------------------------
# item 11 / brief 4: malformed manifest files are ManifestErrors naming the field


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"[1, 2]", "(file): must hold a JSON object {...}, got list"),
        (b"3", "(file): must hold a JSON object {...}, got int"),
        (b"", "(file): is empty; a manifest is a JSON object (see: medimg manifest schema)"),
        (b"  \n", "(file): is empty; a manifest is a JSON object (see: medimg manifest schema)"),
        (
            b'{"a": ' + b"9" * 5000 + b"}",
            "(file): not valid JSON for medimg: Exceeds the limit "
            "(4300 digits) for integer string conversion; write a smaller number",
        ),
        (b"[" * 5000, "(file): JSON nested too deeply to read (hundreds of levels)"),
        (
            b'{"name": "\xff"}',
            "(file): cannot be read as UTF-8 text: byte 0xff at offset 10 "
            "cannot be decoded; save the file as UTF-8",
        ),
        (
            b'{"name": "a",',
            "(file): not valid JSON: Expecting property name enclosed in double "
            "quotes at line 1 column 14",
        ),
    ],
)
def test_unreadable_manifest_files(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "m.json"
    path.write_bytes(content)
    (found,) = file_problems(path)
    assert found.startswith(expected), found


def test_json_level_problems_are_listed_with_their_field_paths(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    deep = "[" * (MAX_JSON_DEPTH + 2) + "]" * (MAX_JSON_DEPTH + 2)
    path.write_text(
        '{"schema_version": 1, "schema_version": 1, "name": NaN, "x": -Infinity, "y": 1e999, '
        f'"training": [{{"id": "a", "id": "b", "metadata": {{"deep": {deep}}}}}]}}'
    )
    found = file_problems(path)
    assert found[:5] == (
        "schema_version: key 'schema_version' is given more than once in one object; keep one "
        "(JSON readers disagree on which copy wins)",
        "name: NaN is not a JSON number (NaN and Infinity are not JSON; a number past 1.8e308 "
        "reads as Infinity); write a finite number or null",
        "x: -Infinity is not a JSON number (NaN and Infinity are not JSON; a number past "
        "1.8e308 reads as Infinity); write a finite number or null",
        "y: Infinity is not a JSON number (NaN and Infinity are not JSON; a number past "
        "1.8e308 reads as Infinity); write a finite number or null",
        "training[0].id: key 'id' is given more than once in one object; keep one (JSON "
        "readers disagree on which copy wins)",
    )
    assert found[5].startswith("training[0].metadata.deep[0][0]")
    assert found[5].endswith(
        f"JSON nested deeper than {MAX_JSON_DEPTH} levels; a manifest "
        "nests 3 (see: medimg manifest schema)"
    )


def test_byte_order_mark_is_accepted(
    seg_dir: tuple[Path, dict[str, Any]], write_manifest: Writer
) -> None:
    root, record = seg_dir
    path = root / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(record).encode())
    assert load_manifest(path).name == "tiny"


def test_folder_missing_nul_and_unreadable_manifest_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert file_problems(tmp_path) == (
        "(file): is a folder, not a manifest file; give the JSON file inside it",
    )
    assert file_problems(tmp_path / "none.json") == ("(file): no such file; check the path",)
    assert file_problems(tmp_path / "a\0b.json") == (
        "(file): the path holds a NUL character; give the manifest's real path",
    )
    path = tmp_path / "m.json"
    path.write_text("{}")

    def denied(self: Path) -> bytes:  # tests run as root, where chmod 000 still reads
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    assert file_problems(path) == (
        "(file): cannot be read: permission denied; check the file's permissions",
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "must be a file path relative to the manifest, got ''; give the path"),
        (
            "a\0b.nii.gz",
            "'a\\x00b.nii.gz' holds the control character '\\x00'; file names in "
            "a manifest must be printable (rename the file)",
        ),
        ("a\nb.nii.gz", "holds the control character '\\n'"),
        ("\ud800.nii.gz", "is not valid Unicode text (a lone surrogate); fix the path"),
        ("/etc/passwd", "'/etc/passwd' is outside the manifest's folder (/etc/passwd)"),
        ("../x.nii.gz", "'../x.nii.gz' is outside the manifest's folder"),
    ],
)
def test_path_forms(
    value: str, expected: str, seg_dir: tuple[Path, dict[str, Any]], write_manifest: Writer
) -> None:
    root, record = seg_dir
    record["training"][0]["label"] = value
    (found,) = problems(write_manifest(root, record), check_files=False)
    assert found.startswith("training[0].label: "), found
    assert expected in found, found


def test_opt_in_must_be_a_json_boolean_and_schema_version_an_integer(
    seg_dir: tuple[Path, dict[str, Any]], write_manifest: Writer
) -> None:
    root, record = seg_dir
    record["allow_paths_outside_root"] = "true"
    record["schema_version"] = True
    assert problems(write_manifest(root, record), check_files=False) == (
        "schema_version: must be 1 or 2 (a JSON integer), got True",
        "allow_paths_outside_root: must be true or false (JSON booleans), got 'true'",
    )


def test_a_pipe_is_refused_before_any_reader_blocks_on_it(
    seg_dir: tuple[Path, dict[str, Any]], write_manifest: Writer
) -> None:
    root, record = seg_dir
    os.mkfifo(root / "images" / "pipe.nii")
    record["training"][0]["image"] = "images/pipe.nii"
    assert problems(write_manifest(root, record)) == (
        "training[0].image: images/pipe.nii is not a regular file (a device, pipe or socket); "
        "name an image file",
    )


def test_tolerances_are_checked_on_construction() -> None:
    from medimg.errors import ConfigError

    with pytest.raises(ConfigError, match=r"grid_mm must be a finite distance >= 0 mm, got nan"):
        Tolerances(grid_mm=float("nan"))
    with pytest.raises(ConfigError, match=r"max_bytes must be > 0 or None, got 0"):
        Tolerances(max_bytes=0)
