"""Bad inputs of ONNX and MONAI bundle interop: ``medimg model export-*|import-bundle`` and
``medimg predict --backend onnxruntime``.

The model is a tiny seeded CT UNet (not trained) written as training writes a model folder;
bundles are exported from it and then damaged.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from catalogue_helpers import BadInput, check_bad_input, untrained_model


def _run(tmp: Path) -> Path:
    return untrained_model(tmp / "run")


def _bundle(tmp: Path, edit: Callable[[Path], None]) -> Callable[[Path], Sequence[str]]:
    def make(tmp: Path) -> Sequence[str]:
        from medimg.interop import export_monai_bundle

        bundle = export_monai_bundle(_run(tmp), tmp / "bundle")
        edit(bundle)
        return ["model", "import-bundle", str(bundle), str(tmp / "imported")]

    return make


def _network_def(change: Callable[[dict], None]) -> Callable[[Path], None]:  # type: ignore[type-arg]
    def edit(bundle: Path) -> None:
        path = bundle / "configs" / "inference.json"
        record = json.loads(path.read_text())
        change(record["network_def"])
        path.write_text(json.dumps(record))

    return edit


def _predict_bf16(tmp: Path) -> Sequence[str]:
    from medimg.synthetic.datasets import write_ct_segmentation_dataset

    manifest = write_ct_segmentation_dataset(tmp / "data", 2, seed=0)
    return ["predict", "--model", str(_run(tmp)), "--manifest", str(manifest), "--out",
            str(tmp / "out"), "--split", "training", "--backend", "onnxruntime",
            "--precision", "bfloat16"]  # fmt: skip


CATALOGUE = [
    BadInput(
        "bundle_network_not_ours",
        _bundle(Path(), _network_def(lambda d: d.update({"_target_": "BasicUNet"}))),
        2,
        r"error: {tmp}/bundle/configs/inference\.json: network_def class 'BasicUNet' is not "
        r"one of medimg's networks \(medimg builds UNet, .*\); this bundle cannot be imported",
    ),
    BadInput(
        "bundle_network_other_arguments",
        _bundle(Path(), _network_def(lambda d: d.update({"num_res_units": 3}))),
        2,
        r"error: {tmp}/bundle/configs/inference\.json: network_def UNet arguments must be those "
        r"medimg builds for a unet network, got other values for num_res_units",
    ),
    BadInput(
        "bundle_network_expression",
        _bundle(Path(), _network_def(lambda d: d.update({"out_channels": "$1 + 1"}))),
        2,
        r"error: .*network_def\.out_channels must be a plain value, got the expression "
        r"'\$1 \+ 1'; medimg imports network_def without running code from the bundle",
    ),
    BadInput(
        "bundle_missing_weights",
        _bundle(Path(), lambda b: shutil.rmtree(b / "models")),
        2,
        r"error: {tmp}/bundle must be a MONAI bundle holding models/model\.pt, got none",
    ),
    BadInput(
        "bundle_weights_not_a_state_dict",
        _bundle(Path(), lambda b: (b / "models" / "model.pt").write_bytes(b"not a checkpoint")),
        2,
        r"error: {tmp}/bundle/models/model\.pt must be a state dict loadable with "
        r"weights_only=True",
    ),
    BadInput(
        "onnxruntime_precision",
        _predict_bf16,
        2,
        r"error: precision 'bfloat16' cannot be honoured by backend 'onnxruntime' \(the ONNX "
        r"network computes in float32\); use --precision float32 or --backend torch",
    ),
]


@pytest.mark.parametrize("entry", CATALOGUE, ids=lambda e: e.kind)
def test_catalogue_interop(
    entry: BadInput, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_bad_input(entry, tmp_path, capsys)
