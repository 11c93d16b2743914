"""MONAI bundle export and import: MONAI's ConfigParser builds our network from inference.json
and model.pt with identical logits; a bundle of one of our networks comes back as a model."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from medimg.cli import main
from medimg.errors import ConfigError, OutputExistsError
from medimg.interop import export_monai_bundle, import_monai_bundle
from medimg.tasks import load_model

# MONAI's reader registry warns about an optional GPU codec when LoadImaged is built
NVCODEC = "ignore:.*nvImageCodec.*:UserWarning"

METADATA_KEYS = {  # MONAI's meta_schema_20220324 required keys, and the ones the issue names
    "schema", "version", "changelog", "monai_version", "pytorch_version", "numpy_version",
    "task", "description", "network_data_format",
}  # fmt: skip


def _parsed(bundle: Path) -> object:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser.read_meta(str(bundle / "configs" / "metadata.json"))
    return parser


@pytest.mark.filterwarnings(NVCODEC)
@pytest.mark.parametrize("task", ["segmentation", "classification"])
def test_monai_builds_our_network_with_identical_logits(
    task: str, tmp_path: Path, make_untrained_run: Callable[..., Path]
) -> None:
    run = make_untrained_run(tmp_path / "run", task=task)
    out = export_monai_bundle(run, tmp_path / "bundle")
    for name in ("configs/metadata.json", "configs/inference.json", "models/model.pt",
                 "docs/README.md"):  # fmt: skip
        assert (out / name).is_file(), name
    meta = json.loads((out / "configs" / "metadata.json").read_text())
    assert METADATA_KEYS <= set(meta)
    image = meta["network_data_format"]["inputs"]["image"]
    assert (image["modality"], image["format"], image["num_channels"]) == ("CT", "hounsfield", 1)
    assert image["value_range"] == [0.0, 1.0]  # soft-tissue window to [0, 1]
    pred = meta["network_data_format"]["outputs"]["pred"]
    names = {"0": "background", "1": "liver", "2": "spleen"} if task == "segmentation" else {
        "0": "normal", "1": "nodule"}  # fmt: skip
    assert pred["channel_def"] == names
    parser = _parsed(out)
    net = parser.get_parsed_content("network_def")  # type: ignore[attr-defined]
    net.load_state_dict(torch.load(out / "models" / "model.pt", weights_only=True))
    ours = load_model(run, device="cpu").bundle.model.eval()
    size = (16, 16, 8) if task == "segmentation" else (16, 16, 16)
    x = torch.randn((2, 1, *size), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(net.eval()(x), ours(x))
    chain = parser.get_parsed_content("preprocessing")  # type: ignore[attr-defined]
    names_of = [type(t).__name__ for t in chain.transforms]
    assert "Spacingd" in names_of
    assert "ScaleIntensityRanged" in names_of
    inferer = parser.get_parsed_content("inferer")  # type: ignore[attr-defined]
    expected = "SlidingWindowInferer" if task == "segmentation" else "SimpleInferer"
    assert type(inferer).__name__ == expected


@pytest.mark.filterwarnings(NVCODEC)
def test_monai_preprocessing_normalises_like_ours(untrained_run: Path, tmp_path: Path) -> None:
    # an image already on the target grid (RAS, 1 x 1 x 2.5 mm): only the window acts, so
    # MONAI's chain and ours must give the same voxels
    import numpy as np

    from medimg.io import save_volume
    from medimg.training import apply_chain
    from medimg.transforms import preprocessing_for

    out = export_monai_bundle(untrained_run, tmp_path / "bundle")
    rng = np.random.default_rng(0)
    hu = rng.uniform(-400, 400, size=(12, 10, 8)).astype(np.float32)
    path = save_volume(hu[None], tmp_path / "ct.nii.gz", like=np.diag([1.0, 1.0, 2.5, 1.0]))
    chain = _parsed(out).get_parsed_content("preprocessing")  # type: ignore[attr-defined]
    monai_image = np.asarray(chain({"image": str(path)})["image"])
    bundle = load_model(untrained_run, device="cpu").bundle
    ours = apply_chain(preprocessing_for("CT", bundle.preprocess), {"image": str(path)})["image"]
    assert monai_image.shape == tuple(ours.shape) == (1, 12, 10, 8)
    # soft tissue: -160..240 HU -> 0..1
    assert float(np.abs(monai_image - np.asarray(ours)).max()) < 1e-5


def test_round_trip_gives_the_same_model(untrained_run: Path, tmp_path: Path) -> None:
    bundle = export_monai_bundle(untrained_run, tmp_path / "bundle")
    run = import_monai_bundle(bundle, tmp_path / "imported")
    a, b = load_model(untrained_run, device="cpu"), load_model(run, device="cpu")
    assert a.bundle.weights_sha256 == b.bundle.weights_sha256
    assert (a.bundle.network, a.bundle.preprocess) == (b.bundle.network, b.bundle.preprocess)
    assert a.outputs == b.outputs
    with pytest.raises(OutputExistsError, match="imported: exists; pass --force"):
        import_monai_bundle(bundle, run)


def _edit(bundle: Path, name: str, change: object) -> None:
    path = bundle / "configs" / name
    record = json.loads(path.read_text())
    change(record)  # type: ignore[operator]
    path.write_text(json.dumps(record))


@pytest.fixture
def bundle_copy(untrained_run: Path, tmp_path: Path) -> Path:
    return export_monai_bundle(untrained_run, tmp_path / "bundle")


def test_foreign_bundle_with_a_window_imports(bundle_copy: Path, tmp_path: Path) -> None:
    # no medimg section: network from network_def, chain from Spacingd + the HU window
    _edit(bundle_copy, "metadata.json", lambda r: r.pop("medimg"))
    run = import_monai_bundle(bundle_copy, tmp_path / "foreign")
    model = load_model(run, device="cpu")
    assert model.bundle.preprocess.hu_window_bounds == (-160.0, 240.0)
    assert model.bundle.network.spacing_mm == (1.0, 1.0, 2.5)
    assert model.outputs == {1: "liver", 2: "spleen"}


def test_network_not_ours_is_refused_by_class(bundle_copy: Path, tmp_path: Path) -> None:
    _edit(bundle_copy, "inference.json",
          lambda r: r.update(network_def={"_target_": "BasicUNet", "spatial_dims": 3}))  # fmt: skip
    with pytest.raises(ConfigError, match="class 'BasicUNet' is not one of medimg's networks"):
        import_monai_bundle(bundle_copy, tmp_path / "x")


def test_other_arguments_are_refused_by_name(bundle_copy: Path, tmp_path: Path) -> None:
    _edit(bundle_copy, "inference.json", lambda r: r["network_def"].update(norm_name="batch"))
    with pytest.raises(ConfigError, match="got other values for norm_name"):
        import_monai_bundle(bundle_copy, tmp_path / "x")


def test_expressions_in_network_def_are_never_run(bundle_copy: Path, tmp_path: Path) -> None:
    code = "$__import__('os').system('touch pwned')"
    _edit(bundle_copy, "inference.json", lambda r: r["network_def"].update(in_channels=code))
    with pytest.raises(ConfigError, match=r"network_def\.in_channels must be a plain value"):
        import_monai_bundle(bundle_copy, tmp_path / "x")


def test_foreign_chain_without_counterpart_is_refused(bundle_copy: Path, tmp_path: Path) -> None:
    def change(r: dict) -> None:  # type: ignore[type-arg]
        r["preprocessing"]["transforms"].insert(3, {"_target_": "GaussianSmoothd", "keys": "image"})

    _edit(bundle_copy, "metadata.json", lambda r: r.pop("medimg"))
    _edit(bundle_copy, "inference.json", change)
    with pytest.raises(ConfigError, match="step 'GaussianSmoothd' has no counterpart"):
        import_monai_bundle(bundle_copy, tmp_path / "x")


def test_cli_round_trip(
    untrained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["model", "export-bundle", str(untrained_run), str(tmp_path / "b")]) == 0
    assert main(["model", "import-bundle", str(tmp_path / "b"), str(tmp_path / "r")]) == 0
    assert main(["model", "export-onnx", str(tmp_path / "r"), str(tmp_path / "n.onnx")]) == 0
    out = capsys.readouterr().out
    assert "MONAI bundle written to" in out
    assert "sha256" in out
    assert (tmp_path / "r" / "model" / "model.json").is_file()
    shutil.rmtree(tmp_path / "b" / "models")
    assert main(["model", "import-bundle", str(tmp_path / "b"), str(tmp_path / "r2")]) == 2
    assert "must be a MONAI bundle holding models/model.pt" in capsys.readouterr().err
