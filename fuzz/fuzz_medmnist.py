"""Fuzz ``import_medmnist``: bytes -> MedMNIST ``.npz`` -> NIfTI files and a manifest.

Run (from the repository root)::

    .venv/bin/python fuzz/fuzz_medmnist.py -atheris_runs=5000 -max_len=512

A finding is any exception that is not a :class:`medimg.errors.MedimgError` (a traceback the
user of ``medimg import medmnist`` would see); atheris stops and saves the input as
``crash-<hash>``. Replay one with ``.venv/bin/python fuzz/fuzz_medmnist.py crash-<hash>``.

The first byte chooses how an input becomes the file:

* ``% 3 == 0``: the remaining bytes are the file itself (zip magic, empty files, ``.npy``...);
* ``% 3 == 1``: a valid 3/1/1-image file (3D, 2 x 3 x 2 voxels) with bytes of it overwritten
  (the zip directory, ``.npy`` headers, CRCs, data) at positions and values taken from the input;
* ``% 3 == 2``: the six arrays built from the input: for each, a dtype from a list (integers,
  floats, bool, complex, strings, objects, records), a shape of 0-5 axes of 0-3 entries and
  values from the input (NaN and negative labels included), saved with ``np.savez``.

Arrays stay tiny so each input takes milliseconds. Files go to a temporary folder made on the
first input, never at import.
"""

from __future__ import annotations

import io
import sys
import tempfile
import zipfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    import numpy as np

    from medimg.errors import MedimgError
    from medimg.manifests.medmnist import import_medmnist

_KEYS = tuple(f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels"))
_DTYPES = ("u1", "i2", "i8", "f4", "f8", "?", "c8", "U3", "O", "V4", "u8", "f2")
_FOLDER: list[Path] = []


def _folder() -> Path:
    if not _FOLDER:
        _FOLDER.append(Path(tempfile.mkdtemp(prefix="fuzz_medmnist_")))
    return _FOLDER[0]


def _valid() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 3), ("val", 1), ("test", 1)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 2, 3, 2), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1).astype(np.uint8)
    return arrays


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for key, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, array, allow_pickle=True)  # objects on purpose
            archive.writestr(f"{key}.npy", member.getvalue())
    return buffer.getvalue()


def _edited(fdp: atheris.FuzzedDataProvider) -> bytes:
    data = bytearray(_npz(_valid()))
    for _ in range(fdp.ConsumeIntInRange(1, 8)):
        if not data or fdp.remaining_bytes() < 2:
            break
        at = fdp.ConsumeIntInRange(0, len(data) - 1)
        if fdp.ConsumeBool():
            data[at] = fdp.ConsumeInt(1) & 0xFF
        else:
            del data[at:]
    return bytes(data)


def _array(fdp: atheris.FuzzedDataProvider) -> np.ndarray:
    dtype = np.dtype(_DTYPES[fdp.ConsumeIntInRange(0, len(_DTYPES) - 1)])
    shape = tuple(fdp.ConsumeIntInRange(0, 3) for _ in range(fdp.ConsumeIntInRange(0, 5)))
    count = int(np.prod(shape)) if shape else 1
    if dtype.kind == "O":
        return np.array([None] * count, dtype=object).reshape(shape)
    raw = fdp.ConsumeBytes(count * dtype.itemsize).ljust(count * dtype.itemsize, b"\0")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _built(fdp: atheris.FuzzedDataProvider) -> bytes:
    arrays = _valid()
    for key in _KEYS:
        if fdp.ConsumeIntInRange(0, 3) == 0:  # mostly keep the valid array, so checks go deep
            arrays[key] = _array(fdp)
    if fdp.ConsumeIntInRange(0, 7) == 0:
        del arrays[_KEYS[fdp.ConsumeIntInRange(0, len(_KEYS) - 1)]]
    return _npz(arrays)


def npz_bytes(data: bytes) -> bytes:
    """The ``.npz`` file an input stands for (see the module docstring)."""
    if not data:
        return b""
    mode, fdp = data[0] % 3, atheris.FuzzedDataProvider(data[1:])
    if mode == 0:
        return data[1:]
    return _edited(fdp) if mode == 1 else _built(fdp)


def TestOneInput(data: bytes) -> None:  # the name atheris calls
    """Import one fuzzed file; anything but a MedimgError is a finding."""
    folder = _folder()
    path = folder / "fuzzmnist.npz"
    path.write_bytes(npz_bytes(data))
    try:
        import_medmnist(path, folder / "out", modality="CT", overwrite=True)
    except MedimgError:
        pass


def main() -> None:
    """Run the fuzzer with libFuzzer's command-line options (``-atheris_runs=N``, ...)."""
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
