"""``medimg model export-onnx|export-bundle|import-bundle``: models in ONNX and MONAI's formats.

Registered into the ``medimg model`` group by :mod:`medimg.cli.model` (``register_model``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register_model"]

_MODEL_HELP = "a run folder (holding model/), a model folder (model.json) or a .medimg package"


def _source_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", type=Path, help=_MODEL_HELP)
    p.add_argument("--trust", action="append", type=Path, metavar="PUBKEY",
                   help="a package must be signed by this key (repeatable)")  # fmt: skip
    p.add_argument("--passphrase-file", type=Path, metavar="F",
                   help="an encrypted package's passphrase: the first line of F")  # fmt: skip
    p.add_argument("--force", action="store_true", help="replace an existing output")


def register_model(inner: Any) -> None:
    """Add ``export-onnx``, ``export-bundle`` and ``import-bundle`` to ``medimg model``."""
    p = inner.add_parser(
        "export-onnx", help="write a model's network as ONNX",
        description="Load and verify MODEL and write its network as OUT (ONNX opset 17, input "
        "'image' (B, C, *spatial) -> output 'logits'; batch and spatial sizes dynamic; "
        "DynUNet's inference output only), atomically, checked with onnx.checker. medimg "
        "predict --backend onnxruntime runs such a file; medimg model pack --onnx puts one "
        "into a package.",
    )  # fmt: skip
    _source_options(p)
    p.add_argument("out", metavar="OUT", type=Path, help="the .onnx file to write")
    p.set_defaults(handler=run_export_onnx)
    p = inner.add_parser(
        "export-bundle", help="write a model as a MONAI bundle",
        description="Write MODEL as a MONAI bundle in OUT_DIR: configs/metadata.json, "
        "configs/inference.json (network_def, preprocessing as MONAI transforms, sliding-window "
        "inferer, post-processing; run with python -m monai.bundle run --config_file "
        "configs/inference.json), models/model.pt (state dict) and docs/README.md (model "
        "card). What of the chain MONAI cannot express is listed in the metadata's "
        "preprocessing_notes. Segmentation and classification models.",
    )  # fmt: skip
    _source_options(p)
    p.add_argument("out", metavar="OUT_DIR", type=Path, help="the bundle folder to write")
    p.set_defaults(handler=run_export_bundle)
    p = inner.add_parser(
        "import-bundle", help="a MONAI bundle whose network is medimg's, as a model folder",
        description="Read the MONAI bundle BUNDLE and write OUT_RUN/model (model.json, best.pt), "
        "which medimg predict --model OUT_RUN takes. Its network_def must be a network medimg "
        "builds with the arguments medimg gives it (else refused naming the class); nothing in "
        "the bundle is evaluated, and the weights load with weights_only=True.",
    )  # fmt: skip
    p.add_argument("bundle", metavar="BUNDLE", type=Path, help="a MONAI bundle folder")
    p.add_argument("out", metavar="OUT_RUN", type=Path, help="the run folder to write")
    p.add_argument("--force", action="store_true", help="replace an existing OUT_RUN")
    p.set_defaults(handler=run_import_bundle)


def _passphrase(args: argparse.Namespace) -> str | None:
    from medimg.packages import read_passphrase_file

    return None if args.passphrase_file is None else read_passphrase_file(args.passphrase_file)


def run_export_onnx(args: argparse.Namespace) -> int:
    """Handle ``medimg model export-onnx``."""
    from medimg.errors import ConfigError, OutputExistsError
    from medimg.inference.onnx import export_onnx
    from medimg.io.integrity import sha256_file
    from medimg.networks import NetworkConfig
    from medimg.tasks import load_model

    if args.out.exists() and not args.force:
        raise OutputExistsError(f"{args.out}: exists; pass --force to replace it")
    model = load_model(args.model, trust=args.trust, passphrase=_passphrase(args), device="cpu")
    net = model.bundle.network
    if not isinstance(net, NetworkConfig):
        raise ConfigError(f"{args.model}: a {model.task} model cannot be exported to ONNX; "
                          "export a segmentation or classification model")  # fmt: skip
    path = export_onnx(
        model.bundle.model, in_channels=net.in_channels, spatial_dims=net.spatial_dims,
        path=args.out, sample_size_vox=net.roi_size_vox, overwrite=args.force,
    )  # fmt: skip
    print(f"{path}  sha256 {sha256_file(path)}")
    return 0


def run_export_bundle(args: argparse.Namespace) -> int:
    """Handle ``medimg model export-bundle``."""
    from medimg.interop import export_monai_bundle

    out = export_monai_bundle(args.model, args.out, trust=args.trust,
                              passphrase=_passphrase(args), overwrite=args.force)  # fmt: skip
    print(f"MONAI bundle written to {out}")
    return 0


def run_import_bundle(args: argparse.Namespace) -> int:
    """Handle ``medimg model import-bundle``."""
    from medimg.interop import import_monai_bundle

    out = import_monai_bundle(args.bundle, args.out, overwrite=args.force)
    print(f"medimg model written to {out / 'model'} (medimg predict --model {out})")
    return 0
