"""MONAI bundle import: a bundle whose network is one of medimg's, as a medimg model folder.

The bundle's ``network_def`` must name a class medimg builds (UNet, SegResNet, DynUNet,
SwinUNETR, DenseNet121, resnet18/50, EfficientNetBN) with plain-value arguments that are
exactly those :func:`medimg.networks.network_spec` gives some
:class:`~medimg.networks.NetworkConfig`; anything else is refused naming the class (or the
arguments that differ). Expressions and references (``$...``, ``@...``, ``%...``) in
``network_def`` are refused, never evaluated: importing runs no code from the bundle, and the
weights load with ``weights_only=True``.

The preprocessing comes from the metadata's ``medimg`` section when medimg exported the
bundle (the exact chain and fingerprint). A bundle from elsewhere maps only when its
``preprocessing`` is a chain medimg has: ``Spacingd`` (the target spacing, also DynUNet's plan
spacing) and, for CT, ``ScaleIntensityRanged`` to [0, 1] (a HU window), for MR
``NormalizeIntensityd``; its modality and output names come from ``network_data_format``. Any
other chain is refused naming the transform: medimg would otherwise predict from inputs the
network was not trained on.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Final

from medimg.errors import CheckpointError, ConfigError, OutputExistsError
from medimg.typing import PathLike

__all__ = ["import_monai_bundle"]

logger = logging.getLogger(__name__)

_CLASSES: Final = {
    "UNet": "unet", "SegResNet": "segresnet", "DynUNet": "dynunet", "SwinUNETR": "swinunetr",
    "DenseNet121": "densenet121", "resnet18": "resnet18", "resnet50": "resnet50",
    "EfficientNetBN": "efficientnet-b0",
}  # fmt: skip
"""MONAI classes (or factories) of ``network_def._target_`` -> medimg network names."""


def import_monai_bundle(
    bundle_dir: PathLike, out_dir: PathLike, *, overwrite: bool = False
) -> Path:
    """Write the MONAI bundle ``bundle_dir`` as a medimg run folder ``out_dir`` (``model/``).

    Returns
    -------
    Path
        ``out_dir``; ``medimg predict --model OUT_DIR`` takes it.

    Raises
    ------
    ConfigError
        When a bundle file is missing or not JSON, the network is not one of medimg's (the
        message names the class), ``network_def`` holds expressions, or the preprocessing has
        no medimg chain (the message names the transform).
    CheckpointError
        When ``models/model.pt`` is no state dict (with ``weights_only=True``) of the network.
    OutputExistsError
        When ``out_dir`` exists and ``overwrite`` is false.
    """
    folder, out = Path(bundle_dir), Path(out_dir)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: exists; pass --force to replace it")
    config = _read_json(folder, "configs/inference.json")
    meta = _read_json(folder, "configs/metadata.json")
    ours = meta.get("medimg") if isinstance(meta.get("medimg"), dict) else None
    network = _network(folder, config, meta, ours)
    settings = _settings(folder, config, meta, ours, network)
    state = _weights(folder, network)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        _write_model(tmp / "model", network, settings, state)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("%s: medimg model of the MONAI bundle %s", out, folder)
    return out


def _read_json(folder: Path, name: str) -> dict[str, Any]:
    path = folder / name
    if not path.is_file():
        raise ConfigError(f"{folder} must be a MONAI bundle holding {name}, got no such file")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} must be a JSON object, got unreadable JSON: {exc}") from None
    if not isinstance(record, dict):
        raise ConfigError(f"{path} must be a JSON object, got {type(record).__name__}")
    return record


def _plain(value: Any, where: str) -> None:
    """Refuse bundle-config expressions, references and macros anywhere in ``value``."""
    if isinstance(value, str) and value[:1] in ("$", "@", "%"):
        raise ConfigError(
            f"{where} must be a plain value, got the expression {value!r}; medimg imports "
            "network_def without running code from the bundle"
        )
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(
        value, list) else ()  # fmt: skip
    for key, item in items:
        _plain(item, f"{where}.{key}")


def _network(folder: Path, config: dict[str, Any], meta: dict[str, Any], ours: Any) -> Any:
    from medimg.interop.monai_bundle import network_def

    where = f"{folder / 'configs/inference.json'}: network_def"
    spec = config.get("network_def")
    if not isinstance(spec, dict) or not isinstance(spec.get("_target_"), str):
        raise ConfigError(f"{where} must be an object with a '_target_' class, got {spec!r}")
    _plain(spec, where)
    cls = spec["_target_"].removeprefix("monai.networks.nets.").rpartition(".")[2]
    if cls not in _CLASSES:
        raise ConfigError(
            f"{where} class {spec['_target_']!r} is not one of medimg's networks (medimg "
            f"builds {', '.join(_CLASSES)}); this bundle cannot be imported"
        )
    candidate = _candidate(_CLASSES[cls], spec, config, meta, ours)
    expected = network_def(candidate)
    given = {"_target_": expected["_target_"], **{k: v for k, v in spec.items() if k != "_target_"}}
    if given != expected:
        differ = sorted(k for k in set(given) | set(expected) if given.get(k) != expected.get(k))
        raise ConfigError(
            f"{where} {cls} arguments must be those medimg builds for a {candidate.name} "
            f"network, got other values for {', '.join(differ)} (medimg: "
            f"{ {k: expected.get(k) for k in differ} }); this bundle's network is not one of "
            "medimg's"
        )
    return candidate


def _tuples(record: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in record.items()}


def _candidate(name: str, spec: dict[str, Any], config: dict[str, Any], meta: dict[str, Any],
               ours: Any) -> Any:  # fmt: skip
    """The NetworkConfig the bundle's arguments suggest (checked against them afterwards)."""
    from medimg.networks import NetworkConfig

    if ours is not None:
        return NetworkConfig(**_tuples(ours["record"]["network"]))
    dims = spec.get("spatial_dims", 3)
    roi = _roi(config, meta, dims)
    base = {"unet": ("channels", 0), "dynunet": ("filters", 0)}.get(name)
    features = spec[base[0]][base[1]] if base and isinstance(spec.get(base[0]), list) else (
        spec.get("init_filters") or spec.get("feature_size") or 16)  # fmt: skip
    return NetworkConfig(
        name=name, spatial_dims=dims,
        in_channels=spec.get("in_channels", spec.get("n_input_channels", 1)),
        out_channels=spec.get("out_channels", spec.get("num_classes", 2)),
        roi_size_vox=roi, spacing_mm=_spacing(config) if name == "dynunet" else None,
        base_features=features, deep_supervision=bool(spec.get("deep_supervision", False)),
        dropout=float(spec.get("dropout") or spec.get("dropout_prob") or 0.0),
        stem_stride=int(spec.get("conv1_t_stride", 1)),
        width_factor=float(spec.get("widen_factor", 1.0)),
    )  # fmt: skip


def _roi(config: dict[str, Any], meta: dict[str, Any], dims: int) -> tuple[int, ...]:
    found = config.get("inferer")
    inferer: dict[str, Any] = found if isinstance(found, dict) else {}
    shape = inferer.get("roi_size") or (
        ((meta.get("network_data_format") or {}).get("inputs") or {}).get("image") or {}
    ).get("spatial_shape")  # fmt: skip
    if not (
        isinstance(shape, list) and len(shape) == dims and all(isinstance(s, int) for s in shape)
    ):
        raise ConfigError(
            f"the bundle must give the network's window as {dims} integers (inferer.roi_size "
            f"or network_data_format.inputs.image.spatial_shape), got {shape!r}"
        )
    return tuple(shape)


def _transforms(config: dict[str, Any]) -> list[dict[str, Any]]:
    chain = config.get("preprocessing")
    steps = chain.get("transforms") if isinstance(chain, dict) else None
    return [s for s in steps or [] if isinstance(s, dict)]


def _spacing(config: dict[str, Any]) -> tuple[float, ...] | None:
    for step in _transforms(config):
        if str(step.get("_target_", "")).endswith("Spacingd"):
            pixdim = step.get("pixdim")
            if isinstance(pixdim, list) and all(isinstance(p, int | float) for p in pixdim):
                return tuple(float(p) for p in pixdim)
    return None


def _settings(folder: Path, config: dict[str, Any], meta: dict[str, Any], ours: Any,
              network: Any) -> dict[str, Any]:  # fmt: skip
    """Preprocessing, modality, outputs, fingerprint and head of the model folder."""
    from medimg.fingerprint import Fingerprint
    from medimg.tasks.classification import ClassificationHead
    from medimg.transforms import PreprocessConfig

    segmentation = network.task.value == "segmentation"
    if ours is not None:
        record = ours["record"]
        head = record.get("head")
        return {
            "preprocess": PreprocessConfig(**_tuples(record["preprocess"])),
            "modality": record["modality"],
            "outputs": {int(k): v for k, v in record["outputs"].items()},
            "fingerprint": None if ours.get("fingerprint") is None
            else Fingerprint.from_json(ours["fingerprint"]),
            "head": None if segmentation else ClassificationHead(**_tuples(head or {})),
        }  # fmt: skip
    fmt = meta.get("network_data_format") or {}
    modality = str(((fmt.get("inputs") or {}).get("image") or {}).get("modality", "")).upper()
    names = ((fmt.get("outputs") or {}).get("pred") or {}).get("channel_def") or {}
    outputs = {int(k): str(v) for k, v in names.items() if not (segmentation and k == "0")}
    return {
        "preprocess": _foreign_chain(folder, config, modality),
        "modality": modality,
        "outputs": outputs or {k: f"class_{k}" for k in range(1 if segmentation else 0,
                                                              network.out_channels)},
        "fingerprint": None,
        "head": None if segmentation else ClassificationHead(),
    }  # fmt: skip


_NEUTRAL: Final = ("LoadImaged", "EnsureChannelFirstd", "Orientationd", "EnsureTyped",
                   "Spacingd", "CastToTyped")  # fmt: skip


def _foreign_chain(folder: Path, config: dict[str, Any], modality: str) -> Any:
    from medimg.transforms import PreprocessConfig

    where = f"{folder / 'configs/inference.json'}: preprocessing"
    if modality not in ("CT", "MR"):
        raise ConfigError(
            f"{folder / 'configs/metadata.json'}: network_data_format.inputs.image.modality "
            f"must be CT or MR for a bundle not exported by medimg, got {modality!r}"
        )
    spacing = _spacing(config)
    if spacing is None or len(spacing) != 3:
        raise ConfigError(f"{where} must resample with Spacingd(pixdim=[x, y, z]), got none")
    window: tuple[float, float] | None = None
    for step in _transforms(config):
        name = str(step.get("_target_", "")).rpartition(".")[2]
        if name in _NEUTRAL or (modality == "MR" and name == "NormalizeIntensityd"):
            continue
        if modality == "CT" and name == "ScaleIntensityRanged" and step.get("b_min") == 0 and (
                step.get("b_max") == 1 and step.get("clip")):  # fmt: skip
            window = (float(step["a_min"]), float(step["a_max"]))
            continue
        raise ConfigError(
            f"{where} step {name!r} has no counterpart in medimg's {modality} chain; medimg "
            "would predict from inputs this network was not trained on"
        )
    if modality == "CT" and window is None:
        raise ConfigError(f"{where} must scale CT with ScaleIntensityRanged to [0, 1], got none")
    return PreprocessConfig(target_spacing_mm=(spacing[0], spacing[1], spacing[2]),
                            hu_window=window)  # fmt: skip


def _weights(folder: Path, network: Any) -> dict[str, Any]:
    import pickle

    import torch

    from medimg.networks import build_network

    path = folder / "models" / "model.pt"
    if not path.is_file():
        raise ConfigError(f"{folder} must be a MONAI bundle holding models/model.pt, got none")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path} must be a state dict loadable with weights_only=True: "
                              f"{exc}") from None  # fmt: skip
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # CheckpointLoader's {"model": ...} form
    try:
        build_network(network).load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path} must hold the weights of its network_def: {exc}") from None
    return dict(state)


def _write_model(model_dir: Path, network: Any, settings: dict[str, Any], state: Any) -> None:
    from medimg.training import save_checkpoint, save_model_bundle

    model_dir.mkdir(parents=True)
    save_checkpoint({"model": state}, model_dir / "best.pt")
    save_model_bundle(model_dir, network=network, checkpoint="best.pt", **settings)
