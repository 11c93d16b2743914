"""MONAI bundle export: a medimg model in the layout MONAI Label and MONAI Deploy take.

:func:`export_monai_bundle` writes, into a new folder (renamed into place when complete):

* ``configs/metadata.json`` -- MONAI's bundle metadata (``meta_schema_20220324``): version,
  changelog, MONAI/PyTorch/NumPy versions, task, description, label or class names, and
  ``network_data_format`` (the input's modality, intensity format and value range, channels,
  window size; the output's channels and their names). A ``medimg`` section keeps the model
  record and the fingerprint, so :func:`~medimg.interop.import_monai_bundle` restores the
  exact model (MONAI ignores keys it does not know);
* ``configs/inference.json`` -- a config ``monai.bundle`` parses and runs (``python -m
  monai.bundle run --config_file configs/inference.json``): ``network_def`` is the MONAI class
  and arguments medimg builds (:func:`medimg.networks.network_spec`, so it instantiates the
  same module), ``preprocessing`` the chain as MONAI transforms (see
  :mod:`medimg.interop._monai_preprocess` for what is exact, approximate and left out; the
  notes are repeated in the metadata's ``preprocessing_notes``), a ``SlidingWindowInferer``
  with medimg's window, overlap 0.5 and Gaussian sigma 1/8 (segmentation; classification a
  ``SimpleInferer``), and post-processing (softmax, inversion to the input grid, argmax,
  ``SaveImaged``);
* ``models/model.pt`` -- the network's state dict (``torch.save``; loads with
  ``weights_only=True``, as MONAI's ``CheckpointLoader`` reads a bare state dict);
* ``docs/README.md`` -- the model card.

Not carried over: medimg's mirror TTA defaults and resume/integrity machinery (MONAI's runner
has neither), and detection models (MONAI's RetinaNet bundles need torchvision's detection
parts, which medimg replaces; :class:`~medimg.errors.ConfigError`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

from medimg.errors import ConfigError, OutputExistsError
from medimg.typing import PathLike

__all__ = ["BUNDLE_FILES", "SCHEMA_URL", "export_monai_bundle", "network_def"]

logger = logging.getLogger(__name__)

SCHEMA_URL: Final = (
    "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/"
    "meta_schema_20220324.json"
)
BUNDLE_FILES: Final = ("configs/metadata.json", "configs/inference.json", "models/model.pt")
"""The files every MONAI bundle holds (and that import reads)."""
_FORMATS: Final = {"CT": "hounsfield", "MR": "magnitude", "XR": "magnitude"}


def network_def(network: Any) -> dict[str, Any]:
    """The ``network_def`` of a :class:`~medimg.networks.NetworkConfig`: class and arguments.

    Examples
    --------
    >>> from medimg.networks import NetworkConfig
    >>> d = network_def(NetworkConfig(name="unet", roi_size_vox=(32, 32, 16)))
    >>> d["_target_"], d["channels"]
    ('monai.networks.nets.UNet', [16, 32, 64])
    """
    from medimg.networks.build import network_spec

    spec = network_spec(network)
    args: dict[str, Any] = json.loads(json.dumps(spec.kwargs))  # tuples as lists, as JSON
    return {"_target_": spec.target, **args}


def export_monai_bundle(
    source: PathLike,
    out_dir: PathLike,
    *,
    trust: Any = None,
    passphrase: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the model ``source`` (run folder, model folder or package) as a MONAI bundle.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    OutputExistsError
        When ``out_dir`` exists and ``overwrite`` is false.
    ConfigError
        For a detection model (see the module docstring), or a folder that is no model.
    CheckpointError, PackageError
        As :func:`medimg.tasks.load_model`.
    """
    from medimg.tasks import load_model

    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: exists; pass --force to replace the bundle")
    model = load_model(source, trust=trust, passphrase=passphrase, device="cpu")
    if model.task == "detection":
        raise ConfigError(
            f"{source}: a detection model cannot be exported as a MONAI bundle: MONAI's "
            "RetinaNet bundles need torchvision's detection parts, which medimg replaces "
            "(README, torchvision decision); export a segmentation or classification model"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        _write(model, tmp)
        _replace_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("%s: MONAI bundle of %s", out, source)
    return out


def _replace_folder(new: Path, out: Path) -> None:
    if not out.exists():
        os.replace(new, out)
        return
    old = new.with_name(new.name + ".old")
    os.replace(out, old)
    os.replace(new, out)
    shutil.rmtree(old, ignore_errors=True)


def _write(model: Any, folder: Path) -> None:
    import torch

    from medimg.interop._monai_preprocess import monai_preprocessing

    bundle = model.bundle
    size = None if bundle.head is None else bundle.head.input_size_vox
    preprocessing, notes = monai_preprocessing(bundle, size)
    for name in ("configs", "models", "docs"):
        (folder / name).mkdir()
    state = {k: v.detach().cpu().clone() for k, v in bundle.model.state_dict().items()}
    torch.save(state, folder / "models" / "model.pt")
    config = inference_config(model, preprocessing)
    _dump(config, folder / "configs" / "inference.json")
    _dump(metadata(model, notes), folder / "configs" / "metadata.json")
    (folder / "docs" / "README.md").write_text(model.card, encoding="utf-8")


def _dump(record: Any, path: Path) -> None:
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def inference_config(model: Any, preprocessing: list[Any]) -> dict[str, Any]:
    """``configs/inference.json`` of ``model``: MONAI's evaluator over a folder of images."""
    bundle, segmentation = model.bundle, model.task == "segmentation"
    net = bundle.network
    multi_label = bool(getattr(bundle.head, "multi_label", False))
    if segmentation:
        inferer = {"_target_": "SlidingWindowInferer", "roi_size": list(net.roi_size_vox),
                   "sw_batch_size": 2, "overlap": 0.5, "mode": "gaussian",
                   "sigma_scale": 0.125}  # fmt: skip
        post = [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing",
             "orig_keys": "image", "nearest_interp": False, "to_tensor": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir",
             "output_postfix": "seg", "output_dtype": "$numpy.uint8", "resample": False,
             "separate_folder": False},
        ]  # fmt: skip
    else:
        inferer = {"_target_": "SimpleInferer"}
        act = {"sigmoid": True} if multi_label else {"softmax": True}
        post = [{"_target_": "Activationsd", "keys": "pred", **act}]
    return {
        "imports": ["$import glob", "$import numpy", "$import os", "$import torch"],
        "bundle_root": ".",
        "output_dir": "$os.path.join(@bundle_root, 'eval')",
        "dataset_dir": "/workspace/data",
        "datalist": "$list(sorted(glob.glob(os.path.join(@dataset_dir, '*.nii*'))))",
        "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "network_def": network_def(net),
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": preprocessing},
        "dataset": {
            "_target_": "Dataset",
            "data": "$[{'image': i} for i in @datalist]",
            "transform": "@preprocessing",
        },
        "dataloader": {
            "_target_": "DataLoader",
            "dataset": "@dataset",
            "batch_size": 1,
            "shuffle": False,
            "num_workers": 0,
        },
        "inferer": inferer,
        "postprocessing": {"_target_": "Compose", "transforms": post},
        "handlers": [
            {
                "_target_": "CheckpointLoader",
                "load_path": "$os.path.join(@bundle_root, 'models', 'model.pt')",
                "load_dict": {"model": "@network"},
                "strict": True,
            },
            {"_target_": "StatsHandler", "iteration_log": False},
        ],
        "evaluator": {
            "_target_": "SupervisedEvaluator",
            "device": "@device",
            "val_data_loader": "@dataloader",
            "network": "@network",
            "inferer": "@inferer",
            "postprocessing": "@postprocessing",
            "val_handlers": "@handlers",
            "amp": False,
        },
        "run": ["$@evaluator.run()"],
    }


def metadata(model: Any, notes: list[str]) -> dict[str, Any]:
    """``configs/metadata.json`` of ``model`` (MONAI's bundle metadata, and a medimg section)."""
    import monai
    import numpy
    import torch

    import medimg

    bundle, net = model.bundle, model.bundle.network
    segmentation = model.task == "segmentation"
    names = _channel_names(model)
    version = str((model.contract.get("package") or {}).get("version") or "0.1.0")
    return {
        "schema": SCHEMA_URL,
        "version": version,
        "changelog": {version: f"exported from medimg {medimg.__version__} ({model.name})"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": numpy.__version__,
        "required_packages_version": {"nibabel": _version("nibabel")},
        "name": model.name,
        "task": f"{bundle.modality} {model.task} ({', '.join(names.values())})",
        "description": f"{net.name} trained with medimg; see docs/README.md (the model card)",
        "authors": "medimg export",
        "copyright": "see docs/README.md",
        "data_type": "nibabel",
        "image_classes": f"{net.in_channels} channel(s) of {bundle.modality}, preprocessed "
        "as in inference.json",
        "label_classes" if segmentation else "pred_classes": ", ".join(
            f"{k}: {v}" for k, v in names.items()
        ),
        "intended_use": "research; see the model card",
        "preprocessing_notes": notes,
        "network_data_format": _data_format(model, names),
        "medimg": {
            "record": _record(bundle),
            "fingerprint": None if bundle.fingerprint is None else bundle.fingerprint.to_json(),
            "contract": model.contract,
            "sha256": model.sha256,
        },
    }


def _record(bundle: Any) -> dict[str, Any]:
    from medimg.training.record import to_jsonable

    record: dict[str, Any] = {
        "network": to_jsonable(bundle.network),
        "preprocess": to_jsonable(bundle.preprocess),
        "modality": bundle.modality,
        "outputs": {str(k): v for k, v in bundle.outputs.items()},
    }
    if bundle.head is not None:
        record["head"] = asdict(bundle.head)
    return record


def _channel_names(model: Any) -> dict[str, str]:
    outputs = model.bundle.outputs
    if model.task == "segmentation":
        return {"0": "background", **{str(k): v for k, v in sorted(outputs.items())}}
    return {str(k): v for k, v in sorted(outputs.items())}


def _data_format(model: Any, names: dict[str, str]) -> dict[str, Any]:
    bundle, net = model.bundle, model.bundle.network
    shape = list(net.roi_size_vox)
    segmentation = model.task == "segmentation"
    image = {
        "type": "image", "format": _FORMATS.get(bundle.modality, "magnitude"),
        "modality": bundle.modality, "num_channels": net.in_channels, "spatial_shape": shape,
        "dtype": "float32", "value_range": _value_range(bundle), "is_patch_data": segmentation,
        "channel_def": {str(i): bundle.modality for i in range(net.in_channels)},
    }  # fmt: skip
    pred = {
        "type": "image" if segmentation else "probabilities",
        "format": "segmentation" if segmentation else "classification",
        "num_channels": net.out_channels, "spatial_shape": shape if segmentation else [],
        "dtype": "float32", "value_range": [], "is_patch_data": segmentation,
        "channel_def": names,
    }  # fmt: skip
    return {"inputs": {"image": image}, "outputs": {"pred": pred}}


def _value_range(bundle: Any) -> list[float]:
    """The network input's range after preprocessing, where the chain fixes one."""
    cfg = bundle.preprocess
    if bundle.modality == "XR" or (bundle.modality == "CT" and cfg.hu_window_bounds):
        return [0.0, 1.0]
    if bundle.modality == "CT" and bundle.fingerprint is not None:
        s = bundle.fingerprint.intensity[0]
        return [(s.percentile_00_5 - s.mean) / s.std, (s.percentile_99_5 - s.mean) / s.std]
    return []


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"
