"""Fuzz manifest loading: bytes -> manifest file -> ``load_manifest(path, check_files=True)``.

Run (from the repository root), best with the seed corpus the harness writes::

    .venv/bin/python fuzz/fuzz_manifest.py --write-seeds /tmp/manifest_corpus
    .venv/bin/python fuzz/fuzz_manifest.py /tmp/manifest_corpus -atheris_runs=20000 -max_len=1024

A finding is any exception that is not a :class:`medimg.errors.MedimgError` (a traceback the
user would see); the harness re-raises it so atheris stops and saves the input as
``crash-<hash>``. Replay one with ``.venv/bin/python fuzz/fuzz_manifest.py crash-<hash>``.

Each input is used one of two ways, chosen by its first byte: the bytes themselves as the
manifest file (JSON parsing, encodings, structure), or spliced as JSON text into one of several
slots of a valid manifest over a tiny on-disk dataset (12 x 10 x 8 voxels), so that mutations
reach the schema, the path checks, the MSD / nnU-Net importers and the file checks (headers,
load policies, label values) too. The dataset is written to a temporary folder on the first
input, never at import.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    import medimg.manifests.checks  # noqa: F401  # imported lazily by load_manifest: instrument it
    from medimg.errors import MedimgError
    from medimg.manifests import load_manifest

_TEMPLATES = (
    '{"schema_version": 1, "name": "t", "channels": [{"name": "CT", "modality": "CT"}], '
    '"labels": [{"value": 0, "name": "bg"}, {"value": @@, "name": "box"}], '
    '"training": [{"id": "a", "image": "images/a.nii.gz", "label": "labels/a.nii.gz"}]}',
    '{"schema_version": 1, "name": "t", "channels": [{"name": "CT", "modality": "CT"}], '
    '"labels": [{"value": 0, "name": "bg"}, {"value": 1, "name": "box"}], '
    '"training": [{"id": "a", "image": @@, "label": "labels/a.nii.gz"}]}',
    '{"schema_version": 1, "name": "t", "channels": [@@], '
    '"classes": ["x", "y"], "training": [{"id": "a", "image": "images/a.nii.gz", "class": "x"}]}',
    '{"schema_version": 1, "name": "t", "channels": [{"name": "CT", "modality": "CT"}], '
    '"labels": [{"value": 0, "name": "bg"}, {"value": 1, "name": "box"}], '
    '"training": [{"id": "a", "image": "images/a.nii.gz", "label": "labels/a.nii.gz"}, @@]}',
    '{"schema_version": 1, "name": "t", "channels": [{"name": "CT", "modality": "CT"}], '
    '"training": [{"id": "a", "image": "images/a.nii.gz", "metadata": @@}], @@}',
    '{"modality": {"0": "CT"}, "labels": @@, '
    '"training": [{"image": "./images/a.nii.gz", "label": "./labels/a.nii.gz"}]}',
    '{"channel_names": {"0": "CT"}, "labels": {"background": 0, "box": 1}, '
    '"file_ending": ".nii.gz", "dataset": @@}',
)

_ROOT: list[Path] = []


def _root() -> Path:
    """A folder with case ``a`` (image and label), written on first use."""
    if not _ROOT:
        import numpy as np

        from medimg.io import save_volume

        root = Path(tempfile.mkdtemp(prefix="fuzz_manifest_"))
        image = np.zeros((12, 10, 8), np.int16)
        image[2:5, 3:6, 1:4] = 100
        affine = np.diag([1.0, 1.0, 2.5, 1.0])
        save_volume(image[None], root / "images" / "a.nii.gz", like=affine)
        save_volume((image > 0).astype(np.uint8)[None], root / "labels" / "a.nii.gz", like=affine)
        (root / "imagesTr").mkdir()
        _ROOT.append(root)
    return _ROOT[0]


def manifest_bytes(data: bytes) -> bytes:
    """The manifest file an input stands for (see the module docstring)."""
    if not data or data[0] % 2 == 0:
        return data[1:]
    template = _TEMPLATES[data[0] // 2 % len(_TEMPLATES)]
    fragment = data[1:].decode("utf-8", errors="surrogateescape")
    try:
        return template.replace("@@", fragment).encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError:
        return template.replace("@@", "null").encode()


def TestOneInput(data: bytes) -> None:  # the name atheris calls
    """Load one fuzzed manifest; anything but a MedimgError is a finding."""
    path = _root() / "dataset.json"
    path.write_bytes(manifest_bytes(data))
    try:
        load_manifest(path, check_files=True)
    except MedimgError:
        pass


_SEEDS = (
    b"\x01" + b"1",
    b"\x03" + b'"images/a.nii.gz"',
    b"\x05" + b'{"name": "CT", "modality": "CT"}',
    b"\x07" + b'{"id": "b", "image": ["images/a.nii.gz"], "label": "labels/a.nii.gz"}',
    b"\x09" + b'{"age": 1.5}',
    b"\x0b" + b'{"0": "background", "1": "box"}',
    b"\x0d" + b'{"a": {"images": ["images/a.nii.gz"], "label": "labels/a.nii.gz"}}',
    b"\x00" + b'{"schema_version": 1, "name": "t", "training": []}',
)


def write_seeds(folder: Path) -> None:
    """Write one seed input per template (and one raw manifest) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, seed in enumerate(_SEEDS):
        (folder / f"seed_{k}").write_bytes(seed)


def main() -> None:
    """Run the fuzzer with libFuzzer's command-line options (``-atheris_runs=N``, ...)."""
    if len(sys.argv) == 3 and sys.argv[1] == "--write-seeds":
        write_seeds(Path(sys.argv[2]))
        return
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
