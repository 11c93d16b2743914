"""ISA-L inflate of gzip/zlib streams: same bytes as zlib, and the same precise refusals."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import pytest

from medimg.errors import ImageReadError
from medimg.io import _compressed
from medimg.io._compressed import CHUNK_BYTES, CompressedData, iter_decompressed

pytest.importorskip("isal")


def _payload() -> bytes:
    rng = np.random.default_rng(17)
    body = np.zeros((64, 64, 700), np.int16)  # about 5.7 MB: more than one CHUNK_BYTES
    body[8:56, 8:56, 100:600] = rng.integers(-1000, 1000, size=(48, 48, 500), dtype=np.int16)
    assert body.nbytes > CHUNK_BYTES
    return body.tobytes()


def _write(tmp_path: Path, blob: bytes) -> CompressedData:
    path = tmp_path / "x.gz"
    path.write_bytes(blob)
    return CompressedData(path, 0, "gzip")


def test_isal_is_the_decompressor_for_gzip_and_zlib() -> None:
    dec = _compressed._new_decompressor("gzip", fast=True)
    assert type(dec).__module__.startswith(("isal", "igzip"))
    assert type(_compressed._new_decompressor("zlib", fast=False)).__module__ == "zlib"


def test_two_members_decode_to_the_same_bytes_as_zlib(tmp_path: Path) -> None:
    raw = _payload()
    blob = gzip.compress(raw[:3_000_000]) + gzip.compress(raw[3_000_000:]) + b"\0" * 9
    data = _write(tmp_path, blob)
    pieces = list(iter_decompressed(data))
    assert max(len(p) for p in pieces) <= CHUNK_BYTES
    assert b"".join(pieces) == raw


def test_zlib_stream_with_adler32(tmp_path: Path) -> None:
    raw = _payload()
    path = tmp_path / "x.zraw"
    path.write_bytes(zlib.compress(raw))
    assert b"".join(iter_decompressed(CompressedData(path, 0, "zlib", len(raw)))) == raw


@pytest.mark.parametrize(
    ("offset_from_end", "message"),
    [(-6, "CRC check failed: the stored CRC-32 of member 1"), (-2, "length mismatch")],
)
def test_crc_and_isize_flips_keep_their_precise_messages(
    tmp_path: Path, offset_from_end: int, message: str
) -> None:
    blob = bytearray(gzip.compress(_payload()))
    blob[offset_from_end] ^= 0x10
    data = _write(tmp_path, bytes(blob))
    with pytest.raises(ImageReadError, match=message) as info:
        b"".join(iter_decompressed(data))
    assert str(data.path) in str(info.value)
    assert "damaged" in str(info.value)


def test_truncated_stream_is_refused(tmp_path: Path) -> None:
    blob = gzip.compress(_payload())
    data = _write(tmp_path, blob[: len(blob) // 2])
    with pytest.raises(ImageReadError, match="truncated"):
        b"".join(iter_decompressed(data))


@pytest.mark.slow  # importing MONAI's transforms on a loaded machine
def test_ct_chain_output_is_todays_within_1e6(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole CT chain on a seeded oblique, anisotropic .nii.gz: ISA-L against zlib."""
    import nibabel as nib

    from medimg.transforms import PreprocessConfig, preprocessing_for

    rng = np.random.default_rng(5)
    data = rng.integers(-1000, 1500, size=(40, 36, 12), dtype=np.int16)
    c, s = np.cos(0.3), np.sin(0.3)
    affine = np.array(
        [
            [-0.8 * c, 0.9 * s, 0, 12.0],
            [-0.8 * s, -0.9 * c, 0, -4.0],
            [0, 0, 3.0, 7.5],
            [0, 0, 0, 1],
        ]
    )
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    cfg = PreprocessConfig(target_spacing_mm=(1.5, 1.5, 1.5), hu_window=(-1000.0, 1000.0))
    chain = preprocessing_for("CT", cfg)
    fast = np.asarray(chain({"image": str(path)})["image"])
    monkeypatch.setattr(_compressed, "_isal_zlib", None)
    today = np.asarray(chain({"image": str(path)})["image"])
    assert fast.shape == today.shape
    assert fast.shape[1:] != data.shape  # resampled
    np.testing.assert_allclose(fast, today, rtol=0, atol=1e-6)
