"""Fuzz ``load_model_bundle``: bytes -> a model folder's ``model.json`` / ``fingerprint.json``.

Run (from the repository root)::

    .venv/bin/python fuzz/fuzz_model_bundle.py -atheris_runs=5000 -max_len=256

A finding is any exception that is not a :class:`medimg.errors.MedimgError` (a traceback the
user of ``medimg predict --model DIR`` would see); atheris stops and saves the input as
``crash-<hash>``. Replay one with ``.venv/bin/python fuzz/fuzz_model_bundle.py crash-<hash>``.

The first byte chooses what an input changes in a valid folder (a tiny 3D U-Net with its
checkpoint and the fingerprint of a one-case synthetic dataset):

* ``% 3 == 0``: the remaining bytes are ``model.json``;
* ``% 3 == 1``: one key of ``model.json`` (top level, or a ``network``/``preprocess`` setting,
  picked by the second byte) is set to the rest, parsed as JSON text when it parses (``null``,
  ``"8"``, ``[16, 16]``, ``1e400``, ``{}``...) and kept as a string otherwise, or deleted when
  the rest is empty;
* ``% 3 == 2``: the remaining bytes are ``fingerprint.json``, its SHA-256 recorded in
  ``model.json`` so the document itself is parsed.

The folder is written to a temporary directory on the first input, never at import.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports():
    from medimg.errors import MedimgError
    from medimg.training.bundle import load_model_bundle
    from medimg.training.checkpoint import sha256_file

_STATE: dict[str, Any] = {}


def _template() -> tuple[Path, dict[str, Any]]:
    """The valid folder (written once) and its parsed ``model.json``."""
    if not _STATE:
        import torch

        from medimg.fingerprint import load_or_compute_fingerprint
        from medimg.networks import NetworkConfig, build_network
        from medimg.synthetic.datasets import write_ct_segmentation_dataset
        from medimg.training import save_model_bundle
        from medimg.training.checkpoint import save_checkpoint
        from medimg.transforms import PreprocessConfig

        root = Path(tempfile.mkdtemp(prefix="fuzz_model_bundle_"))
        fingerprint = load_or_compute_fingerprint(write_ct_segmentation_dataset(root / "d", 1))
        net = NetworkConfig(name="unet", out_channels=2, roi_size_vox=(8, 8, 8), base_features=2)
        torch.manual_seed(0)
        folder = root / "template"
        folder.mkdir()
        save_checkpoint({"model": build_network(net).state_dict()}, folder / "best.pt")
        save_model_bundle(
            folder, network=net, preprocess=PreprocessConfig(hu_window="liver"), modality="CT",
            outputs={1: "organ"}, fingerprint=fingerprint, checkpoint="best.pt",
        )  # fmt: skip
        _STATE["root"], _STATE["template"] = root, folder
        _STATE["record"] = json.loads((folder / "model.json").read_text())
    return _STATE["template"], _STATE["record"]


def _paths(record: dict[str, Any]) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = [(key,) for key in record]
    for section in ("network", "preprocess"):
        paths += [(section, key) for key in record[section]]
    return paths


def _value(text: bytes) -> Any:
    decoded = text.decode("utf-8", errors="replace")
    try:
        return json.loads(decoded)
    except ValueError:
        return decoded


def write_folder(data: bytes, folder: Path) -> None:
    """Make ``folder`` the model folder an input stands for (see the module docstring)."""
    template, record = _template()
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(template, folder)
    mode, rest = (data[0] % 3, data[1:]) if data else (0, b"")
    if mode == 0:
        (folder / "model.json").write_bytes(rest)
        return
    edited = json.loads(json.dumps(record))
    if mode == 1:
        paths = _paths(edited)
        path = paths[rest[0] % len(paths)] if rest else paths[0]
        parent = edited if len(path) == 1 else edited[path[0]]
        if len(rest) <= 1:
            del parent[path[-1]]
        else:
            parent[path[-1]] = _value(rest[1:])
    else:
        (folder / "fingerprint.json").write_bytes(rest)
        edited["fingerprint_sha256"] = sha256_file(folder / "fingerprint.json")
    (folder / "model.json").write_text(json.dumps(edited), encoding="utf-8")


def TestOneInput(data: bytes) -> None:  # the name atheris calls
    """Load one fuzzed model folder; anything but a MedimgError is a finding."""
    _template()
    folder = _STATE["root"] / "model"
    write_folder(data, folder)
    try:
        load_model_bundle(folder)
    except MedimgError:
        pass


def main() -> None:
    """Run the fuzzer with libFuzzer's command-line options (``-atheris_runs=N``, ...)."""
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
