"""Bad inputs of ``medimg import medmnist``, of model folders and of output paths.

Each is pinned to its exit code and message: the file named, what is wrong, the fix. MedMNIST
files are refused before anything is written; a model folder whose ``model.json``, checkpoint
or fingerprint is damaged or edited is refused naming the file and the key; an output path
that cannot be a folder ends in one line naming it (exit 2: the path given cannot be used).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from catalogue_helpers import BadInput, check_bad_input

NPZ = "adrenalmnist3d.npz"  # a set medimg knows (CT, normal/hyperplasia)
_DAMAGED = r"the model folder is damaged or was edited: train again or restore it"


def _arrays(**replace: np.ndarray) -> dict[str, np.ndarray]:
    """A valid 3D MedMNIST layout: 3/1/1 images of 4 x 5 x 6 voxels, labels (N, 1) in {0, 1}."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 3), ("val", 1), ("test", 1)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 4, 5, 6), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1).astype(np.uint8)
    return arrays | replace


def _import(tmp: Path, name: str = NPZ) -> list[str]:
    return ["import", "medmnist", str(tmp / name), str(tmp / "out")]


def _medmnist(**replace: np.ndarray) -> Callable[[Path], Sequence[str]]:
    def make(tmp: Path) -> Sequence[str]:
        np.savez(tmp / NPZ, **_arrays(**replace))
        return _import(tmp)

    return make


def _raw(content: bytes) -> Callable[[Path], Sequence[str]]:
    def make(tmp: Path) -> Sequence[str]:
        (tmp / NPZ).write_bytes(content)
        return _import(tmp)

    return make


def _zip(members: dict[str, bytes]) -> Callable[[Path], Sequence[str]]:
    def make(tmp: Path) -> Sequence[str]:
        with zipfile.ZipFile(tmp / NPZ, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)
        return _import(tmp)

    return make


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _object_array(tmp: Path) -> Sequence[str]:
    members = {f"{k}.npy": _npy(v) for k, v in _arrays().items()}
    members["train_images.npy"] = _npy(np.array([{"x": 1}, None, 3], dtype=object))
    return _zip(members)(tmp)


def _nan_image(tmp: Path) -> Sequence[str]:
    images = _arrays()["train_images"].astype(np.float32)
    images[2, 1, 1, 1] = np.nan
    return _medmnist(train_images=images)(tmp)


def _truncated(tmp: Path) -> Sequence[str]:
    np.savez(tmp / NPZ, **_arrays())
    data = (tmp / NPZ).read_bytes()
    (tmp / NPZ).write_bytes(data[: len(data) // 2])
    return _import(tmp)


def _bad_crc(tmp: Path) -> Sequence[str]:
    np.savez(tmp / NPZ, **_arrays())  # stored, not deflated: a flipped byte is caught by CRC only
    with zipfile.ZipFile(tmp / NPZ) as archive:
        info = archive.getinfo("train_images.npy")
    data = bytearray((tmp / NPZ).read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + info.compress_size - 1] ^= 0xFF  # the last voxel of train_images
    (tmp / NPZ).write_bytes(bytes(data))
    return _import(tmp)


def _unbounded_labels(tmp: Path) -> Sequence[str]:
    # a set medimg does not know gets class names "0", "1", ...: a label of 5000 would make 5001
    np.savez(tmp / "mydata.npz", **_arrays(test_labels=np.array([[5000]], np.int64)))
    return [*_import(tmp, "mydata.npz"), "--modality", "CT"]


def _bad_header(tmp: Path) -> Sequence[str]:
    members = {f"{k}.npy": _npy(v) for k, v in _arrays().items()}
    members["val_images.npy"] = b"\x93NUMPY\x01\x00\x10\x00{'descr': 7}"  # header cut short
    return _zip(members)(tmp)


def _encrypted_member(tmp: Path) -> Sequence[str]:
    # found by fuzz/fuzz_medmnist.py: zipfile raised RuntimeError ("password required")
    np.savez(tmp / NPZ, **_arrays())
    data = bytearray((tmp / NPZ).read_bytes())
    data[data.index(b"PK\x01\x02") + 8] |= 0x1  # first central-directory entry: "encrypted"
    (tmp / NPZ).write_bytes(bytes(data))
    return _import(tmp)


def _under_a_file(tmp: Path) -> Path:
    (tmp / "afile").write_text("a regular file, not a folder")
    return tmp / "afile" / "out"


def _medmnist_out_under_file(tmp: Path) -> Sequence[str]:
    np.savez(tmp / NPZ, **_arrays())
    return ["import", "medmnist", str(tmp / NPZ), str(_under_a_file(tmp))]


# -- model folders --------------------------------------------------------------------------


def _dataset(tmp: Path) -> Path:
    from medimg.synthetic.datasets import write_ct_segmentation_dataset

    manifest = tmp / "data" / "dataset.json"
    return manifest if manifest.is_file() else write_ct_segmentation_dataset(tmp / "data", 1)


def _model(folder: Path, *, fingerprint: Any = None, base_features: int = 4) -> Path:
    import torch

    from medimg.networks import NetworkConfig, build_network
    from medimg.training import save_model_bundle
    from medimg.training.checkpoint import save_checkpoint
    from medimg.transforms import PreprocessConfig

    net = NetworkConfig(name="unet", out_channels=4, roi_size_vox=(8, 8, 8),
                        base_features=base_features)  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(0)
        weights = build_network(net).state_dict()
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint({"model": weights}, folder / "best.pt")
    preprocess = PreprocessConfig(target_spacing_mm=(4.0, 4.0, 4.0), hu_window="soft_tissue")
    save_model_bundle(folder, network=net, preprocess=preprocess, modality="CT",
                      outputs={1: "liver", 2: "spleen", 3: "lesion"}, fingerprint=fingerprint,
                      checkpoint="best.pt")  # fmt: skip
    return folder


def _predict(tmp: Path, model: Path, out: Path | None = None) -> list[str]:
    return ["predict", "--manifest", str(_dataset(tmp)), "--out", str(out or tmp / "pred"),
            "--model", str(model), "--split", "training", "--device", "cpu"]  # fmt: skip


def _edited_record(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Path], Sequence[str]]:
    """A model folder whose model.json is rewritten by ``edit`` (in place, or text/bytes)."""

    def make(tmp: Path) -> Sequence[str]:
        model = _model(tmp / "model")
        record = json.loads((model / "model.json").read_text())
        new = edit(record)
        if isinstance(new, bytes):
            (model / "model.json").write_bytes(new)
        else:
            text = new if isinstance(new, str) else json.dumps(record if new is None else new)
            (model / "model.json").write_text(text)
        return _predict(tmp, model)

    return make


def _set(record: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        record = record[part]
    record[last] = value


def _weights_do_not_fit(tmp: Path) -> Sequence[str]:
    model = _model(tmp / "model")
    other = _model(tmp / "other", base_features=8)  # same kind of network, twice the channels
    (model / "best.pt").write_bytes((other / "best.pt").read_bytes())
    record = json.loads((model / "model.json").read_text())
    record["checkpoint_sha256"] = json.loads((other / "model.json").read_text())[
        "checkpoint_sha256"
    ]
    (model / "model.json").write_text(json.dumps(record))
    return _predict(tmp, model)


def _truncated_checkpoint_rehashed(tmp: Path) -> Sequence[str]:
    from medimg.training.checkpoint import sha256_file

    model = _model(tmp / "model")
    data = (model / "best.pt").read_bytes()
    (model / "best.pt").write_bytes(data[: len(data) // 2])
    record = json.loads((model / "model.json").read_text())
    record["checkpoint_sha256"] = sha256_file(model / "best.pt")
    (model / "model.json").write_text(json.dumps(record))
    return _predict(tmp, model)


def _missing_checkpoint(tmp: Path) -> Sequence[str]:
    model = _model(tmp / "model")
    (model / "best.pt").unlink()
    return _predict(tmp, model)


def _fingerprint_replaced(tmp: Path) -> Sequence[str]:
    from medimg.fingerprint import load_or_compute_fingerprint

    manifest = _dataset(tmp)
    model = _model(tmp / "model", fingerprint=load_or_compute_fingerprint(manifest))
    text = (model / "fingerprint.json").read_text()
    (model / "fingerprint.json").write_text(text.replace('"seed": 0', '"seed": 1'))
    return _predict(tmp, model)


def _checkpoint_not_weights(tmp: Path) -> Sequence[str]:
    import torch

    from medimg.training.checkpoint import sha256_file

    model = _model(tmp / "model")
    torch.save([1, 2, 3], model / "best.pt")
    record = json.loads((model / "model.json").read_text())
    record["checkpoint_sha256"] = sha256_file(model / "best.pt")
    (model / "model.json").write_text(json.dumps(record))
    return _predict(tmp, model)


def _fingerprint_missing(tmp: Path) -> Sequence[str]:
    model = _model(tmp / "model")
    record = json.loads((model / "model.json").read_text())
    record["fingerprint"] = "fingerprint.json"
    (model / "model.json").write_text(json.dumps(record))
    return _predict(tmp, model)


def _fingerprint_unhashed(text: str) -> Callable[[Path], Sequence[str]]:
    # a folder from before fingerprint_sha256 was recorded: the document itself is checked
    def make(tmp: Path) -> Sequence[str]:
        model = _model(tmp / "model")
        record = json.loads((model / "model.json").read_text())
        record["fingerprint"] = "fingerprint.json"
        (model / "model.json").write_text(json.dumps(record))
        (model / "fingerprint.json").write_text(text)
        return _predict(tmp, model)

    return make


def _predict_out_under_file(tmp: Path) -> Sequence[str]:
    return _predict(tmp, _model(tmp / "model"), out=_under_a_file(tmp))


def _synth_out_under_file(tmp: Path) -> Sequence[str]:
    return ["synth", "ct-seg", str(_under_a_file(tmp)), "--cases", "1"]


_MODEL_JSON = r"error: {tmp}/model/model\.json: "

CATALOGUE = [
    BadInput(
        "medmnist_not_a_zip",
        _raw(b"train_images = ..."),
        2,
        r"error: {tmp}/adrenalmnist3d\.npz: is not a zip archive \(starts b'trai'\); a MedMNIST "
        r"\.npz is a zip archive; download it again",
    ),
    BadInput(
        "medmnist_empty_file",
        _raw(b""),
        2,
        r"error: {tmp}/adrenalmnist3d\.npz: is empty \(0 bytes\); a MedMNIST \.npz is a zip",
    ),
    BadInput(
        "medmnist_single_npy",
        _raw(_npy(np.zeros(3))),
        2,
        r"error: {tmp}/adrenalmnist3d\.npz: is a single \.npy array, not an \.npz archive of the "
        r"six MedMNIST arrays \(train_images, train_labels, val_images",
    ),
    BadInput(
        "medmnist_zip_without_arrays",
        _zip({"readme.txt": b"hello"}),
        2,
        r"error: {tmp}/adrenalmnist3d\.npz: not a MedMNIST file: missing arrays train_images, "
        r"train_labels, val_images, val_labels, test_images, test_labels \(archive members: "
        r"readme\.txt; each array is NAME\.npy\)",
    ),
    BadInput(
        "medmnist_object_array",
        _object_array,
        2,
        r"error: {tmp}/adrenalmnist3d\.npz: array train_images holds Python objects \(dtype "
        r"object\); medimg reads only numeric arrays \(allow_pickle=False: unpickling can run "
        r"code\)",
    ),
    BadInput(
        "medmnist_label_count_mismatch",
        _medmnist(val_labels=np.zeros((3, 1), np.uint8)),
        2,
        r"error: {tmp}/adrenalmnist3d\.npz: val_images and val_labels must have one label per "
        r"image, got 1 images and 3 labels",
    ),
    BadInput(
        "medmnist_float_labels",
        _medmnist(train_labels=np.array([[0.0], [1.0], [0.5]])),
        2,
        r"error: {tmp}/adrenalmnist3d\.npz: train_labels must be integers \(class indices\), got "
        r"dtype float64; cast them",
    ),
    BadInput(
        "medmnist_negative_label",
        _medmnist(test_labels=np.array([[-1]], np.int64)),
        2,
        r"error: {tmp}/adrenalmnist3d\.npz: test_labels must be class indices >= 0, got -1 at "
        r"index 0",
    ),
    BadInput(
        "medmnist_image_shape",
        _medmnist(val_images=np.zeros((1, 4), np.uint8)),
        2,
        r"error: {tmp}/adrenalmnist3d\.npz: val_images must have shape \(N, H, W\) \(2D\) or "
        r"\(N, D, H, W\) \(3D\) with every image axis >= 1, got \(1, 4\)",
    ),
    BadInput(
        "medmnist_nan_image",
        _nan_image,
        2,
        r"error: {tmp}/adrenalmnist3d\.npz: train_images must be finite, got NaN or infinity in "
        r"image 2",
    ),
    BadInput(
        "medmnist_truncated",
        _truncated,
        2,
        r"error: {tmp}/adrenalmnist3d\.npz: damaged zip archive \(File is not a zip file\); "
        r"download it again",
    ),
    BadInput(
        "medmnist_bad_crc",
        _bad_crc,
        2,
        r"error: {tmp}/adrenalmnist3d\.npz: array train_images .*\(Bad CRC-32 for file "
        r"'train_images\.npy'\).* download the file again",
    ),
    BadInput(
        "medmnist_output_under_a_file",
        _medmnist_out_under_file,
        2,
        r"error: {tmp}/afile/out/images: not a directory; a part of the path is a file; choose "
        r"another path",
    ),
    BadInput(
        "model_json_invalid",
        _edited_record(lambda r: '{"network": '),
        2,
        _MODEL_JSON + r"not valid JSON \(Expecting value at line 1 column 13\); " + _DAMAGED,
    ),
    BadInput(
        "model_json_not_an_object",
        _edited_record(lambda r: [r]),
        2,
        _MODEL_JSON + r"must hold a JSON object, got list \[\{\"network\": .*; " + _DAMAGED,
    ),
    BadInput(
        "model_json_missing_key",
        _edited_record(lambda r: r.pop("network") and None),
        2,
        _MODEL_JSON + r"missing key 'network'; " + _DAMAGED,
    ),
    BadInput(
        "model_json_key_wrong_type",
        _edited_record(lambda r: _set(r, "outputs", ["liver"])),
        2,
        _MODEL_JSON + r"key 'outputs' must be an object, got list \[\"liver\"\]; " + _DAMAGED,
    ),
    BadInput(
        "model_json_setting_wrong_type",
        _edited_record(lambda r: _set(r, "network.base_features", "8")),
        2,
        _MODEL_JSON + r"network\.base_features must be int, got str \"8\"",
    ),
    BadInput(
        "model_json_unknown_setting",
        _edited_record(lambda r: _set(r, "preprocess.hu_windw", "liver")),
        2,
        _MODEL_JSON + r"preprocess\.hu_windw is not a setting of PreprocessConfig \(valid: "
        r"target_spacing_mm, ",
    ),
    BadInput(
        "model_json_invalid_setting",
        _edited_record(lambda r: _set(r, "network.dropout", 1.5)),
        2,
        _MODEL_JSON + r"network: dropout must be in \[0, 1\), got 1\.5",
    ),
    BadInput(
        "model_json_checkpoint_outside_folder",
        _edited_record(lambda r: _set(r, "checkpoint", "../other/best.pt")),
        2,
        _MODEL_JSON + r"key 'checkpoint' must name a file inside {tmp}/model \(letters, digits, "
        r"'_', '-', '\.', '/' between folders\), got str \"\.\./other/best\.pt\"",
    ),
    BadInput(
        "model_json_checkpoint_name_too_long",  # found by the fuzzer: stat's ENAMETOOLONG
        _edited_record(lambda r: _set(r, "checkpoint", "b" * 300 + ".pt")),
        2,
        _MODEL_JSON + r"key 'checkpoint' must name a file inside {tmp}/model .*got str \"bbb",
    ),
    BadInput(
        "model_json_checkpoint_sha256_edited",
        _edited_record(lambda r: _set(r, "checkpoint_sha256", "ab" * 32)),
        2,
        r"error: checkpoint {tmp}/model/best\.pt has SHA-256 [0-9a-f]{64}, expected (ab){32}; "
        r"it was replaced or damaged",
    ),
    BadInput(
        "model_checkpoint_missing",
        _missing_checkpoint,
        2,
        r"error: checkpoint {tmp}/model/best\.pt not found",
    ),
    BadInput(
        "model_checkpoint_truncated",
        _truncated_checkpoint_rehashed,
        2,
        r"error: checkpoint {tmp}/model/best\.pt cannot be (read|loaded)",
    ),
    BadInput(
        "model_weights_do_not_fit",
        _weights_do_not_fit,
        2,
        r"error: checkpoint {tmp}/model/best\.pt does not fit the network of "
        r"{tmp}/model/model\.json \(.*size mismatch.*\); model\.json and the weights come from "
        r"different runs",
    ),
    BadInput(
        "model_fingerprint_replaced",
        _fingerprint_replaced,
        2,
        r"error: fingerprint {tmp}/model/fingerprint\.json has SHA-256 [0-9a-f]{64}, expected "
        r"[0-9a-f]{64} \(recorded in {tmp}/model/model\.json\); it was replaced or damaged",
    ),
    BadInput(
        "medmnist_bad_npy_header",
        _bad_header,
        2,
        r"error: {tmp}/adrenalmnist3d\.npz: array val_images is not a valid \.npy member \(.*\); "
        r"download the file again",
    ),
    BadInput(
        "medmnist_encrypted_member",
        _encrypted_member,
        2,
        r"error: {tmp}/adrenalmnist3d\.npz: array \w+ is encrypted; MedMNIST files are not: "
        r"download it again",
    ),
    BadInput(
        "medmnist_labels_without_entries",  # found by the fuzzer: (N, 0) passed, then zip() failed
        _medmnist(val_labels=np.zeros((1, 0), np.uint8)),
        2,
        r"error: {tmp}/adrenalmnist3d\.npz: val_labels must have shape \(N,\) or \(N, 1\), got "
        r"\(1, 0\)",
    ),
    BadInput(
        "medmnist_int64_images_beyond_int32",  # found by the fuzzer: nibabel's ValueError
        _medmnist(test_images=np.full((1, 4, 5, 6), 2**40, np.int64)),
        2,
        r"error: {tmp}/adrenalmnist3d\.npz: test_images must fit in 32-bit integers to be written "
        r"as NIfTI, got values 1099511627776\.\.1099511627776 \(int64\); rescale them",
    ),
    BadInput(
        "medmnist_mixed_dimensionality",
        _medmnist(test_images=np.zeros((1, 4, 5), np.uint8)),
        2,
        r"error: {tmp}/adrenalmnist3d\.npz: every split must hold images of one dimensionality, "
        r"got train_images \(3, 4, 5, 6\), val_images \(1, 4, 5, 6\), test_images \(1, 4, 5\)",
    ),
    BadInput(
        "medmnist_empty_training_split",
        _medmnist(
            train_images=np.zeros((0, 4, 5, 6), np.uint8), train_labels=np.zeros((0, 1), np.uint8)
        ),
        2,
        r"error: {tmp}/adrenalmnist3d\.npz: train_images must hold at least one image, got none",
    ),
    BadInput(
        "medmnist_scalar_labels",
        _medmnist(val_labels=np.array(1, np.uint8)),
        2,
        r"error: {tmp}/adrenalmnist3d\.npz: array val_labels must have one entry per image, got "
        r"a scalar",
    ),
    BadInput(
        "medmnist_complex_images",
        _medmnist(test_images=np.zeros((1, 4, 5, 6), np.complex64)),
        2,
        r"error: {tmp}/adrenalmnist3d\.npz: test_images must be integers or floats, got dtype "
        r"complex64",
    ),
    BadInput(
        "medmnist_multi_label",
        _medmnist(train_labels=np.zeros((3, 14), np.uint8)),
        2,
        r"error: {tmp}/adrenalmnist3d\.npz: multi-label set \(14 labels per image\) is not "
        r"supported; a manifest case has one class",
    ),
    BadInput(
        "medmnist_label_beyond_class_names",
        _medmnist(train_labels=np.array([[0], [1], [2]], np.uint8)),
        2,
        r"error: {tmp}/adrenalmnist3d\.npz: class_names must name all 3 label values, got 2: "
        r"\('normal', 'hyperplasia'\)",
    ),
    BadInput(
        "medmnist_duplicate_class_names",
        lambda tmp: [*_medmnist()(tmp), "--class-names", "a,b,a"],
        2,
        r"error: {tmp}/adrenalmnist3d\.npz: class_names\[2\] duplicates class_names\[0\] \('a'\)",
    ),
    BadInput(
        "medmnist_empty_class_name",
        lambda tmp: [*_medmnist()(tmp), "--class-names", "a, "],
        2,
        r"error: {tmp}/adrenalmnist3d\.npz: class_names\[1\] must not be empty, got \('a', ''\)",
    ),
    BadInput(
        "medmnist_single_class",
        lambda tmp: [
            *_medmnist(
                train_labels=np.zeros((3, 1), np.uint8),
                val_labels=np.zeros((1, 1), np.uint8),
                test_labels=np.zeros((1, 1), np.uint8),
            )(tmp),
            "--class-names",
            "only",
        ],
        2,
        r"error: {tmp}/adrenalmnist3d\.npz: a classification set needs at least two classes, got "
        r"\('only',\)",
    ),
    BadInput(
        "medmnist_unbounded_label_values",
        _unbounded_labels,
        2,
        r"error: {tmp}/mydata\.npz: labels go up to 5000; name the classes \(class_names, "
        r"--class-names\) when there are more than 1000",
    ),
    BadInput(
        "model_json_not_utf8",
        _edited_record(lambda r: b'{"network": "\xff"}'),
        2,
        _MODEL_JSON + r"must be UTF-8 JSON, got invalid start byte; " + _DAMAGED,
    ),
    BadInput(
        "model_json_sha256_not_hex",
        _edited_record(lambda r: _set(r, "checkpoint_sha256", "see best.pt")),
        2,
        _MODEL_JSON
        + r"key 'checkpoint_sha256' must be 64 lowercase hex digits, got 'see best\.pt'",
    ),
    BadInput(
        "model_json_unknown_modality",
        _edited_record(lambda r: _set(r, "modality", "ct")),
        2,
        _MODEL_JSON + r"key 'modality': 'ct' is not a modality; did you mean 'CT'\?",
    ),
    BadInput(
        "model_json_outputs_not_indices",
        _edited_record(lambda r: _set(r, "outputs", {"liver": 1})),
        2,
        _MODEL_JSON
        + r"key 'outputs' must map output indices to names, got 'liver': 1; "
        + _DAMAGED,
    ),
    BadInput(
        "model_json_setting_missing",
        _edited_record(lambda r: r["network"].pop("name") and None),
        2,
        _MODEL_JSON + r"network\.name is missing",
    ),
    BadInput(
        "model_json_tuple_setting_wrong_length",
        _edited_record(lambda r: _set(r, "preprocess.target_spacing_mm", [1.0, 2.0])),
        2,
        _MODEL_JSON + r"preprocess\.target_spacing_mm must be a list of 3 \(number, number, "
        r"number\) or null, got list \[1\.0, 2\.0\]",
    ),
    BadInput(
        "model_checkpoint_not_weights",
        _checkpoint_not_weights,
        2,
        r"error: checkpoint {tmp}/model/best\.pt must hold the network's weights under 'model', "
        r"got list",
    ),
    BadInput(
        "model_fingerprint_missing",
        _fingerprint_missing,
        2,
        r"error: fingerprint {tmp}/model/fingerprint\.json named by {tmp}/model/model\.json not "
        r"found; restore it or train again",
    ),
    BadInput(
        "model_fingerprint_unreadable",
        _fingerprint_unhashed('{"fingerprint_version": 1'),
        2,
        r"error: fingerprint {tmp}/model/fingerprint\.json cannot be read: fingerprint document "
        r"is not valid JSON \(JSONDecodeError: .*\); restore it or train again$",
    ),
    BadInput(
        "model_fingerprint_not_an_object",  # found by the fuzzer: from_json's AttributeError
        _fingerprint_unhashed("7"),
        2,
        r"error: fingerprint {tmp}/model/fingerprint\.json cannot be read: fingerprint document "
        r"must be a JSON object, got int; restore it or train again$",
    ),
    BadInput(
        "predict_output_under_a_file",
        _predict_out_under_file,
        2,
        r"error: {tmp}/afile/out\b.*not a directory",
    ),
    BadInput(
        "synth_output_under_a_file",
        _synth_out_under_file,
        2,
        r"error: {tmp}/afile/out/imagesTr: not a directory; a part of the path is a file; "
        r"choose another path",
    ),
]


@pytest.mark.parametrize("entry", CATALOGUE, ids=lambda e: e.kind)
def test_catalogue_cli(entry: BadInput, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check_bad_input(entry, tmp_path, capsys)
    if entry.kind.startswith("medmnist"):  # refused before anything is written
        assert not list(tmp_path.glob("out/**/*.nii.gz"))
