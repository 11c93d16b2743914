"""Fingerprint.from_json: any damaged document is a FingerprintError naming what is wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest

from medimg.errors import FingerprintError, MedimgError
from medimg.fingerprint import ChannelStats, Fingerprint
from medimg.modality import Modality

_STATS = ChannelStats(
    mean=1.0, std=0.5, percentile_00_5=0.0, percentile_99_5=2.0, median=1.0, min=0.0, max=2.0,
    n_voxels=10,
)  # fmt: skip
_GOOD = Fingerprint(
    manifest_sha256="0" * 64, modalities=(Modality.CT,), n_cases=1, spacings_mm=((1.0, 1.0, 2.5),),
    shapes_vox=((4, 5, 6),), median_spacing_mm=(1.0, 1.0, 2.5), p10_spacing_mm=(1.0, 1.0, 2.5),
    median_shape_vox=(4, 5, 6), anisotropy_ratio=2.5, anisotropic=False, lowres_axis=None,
    intensity=(_STATS,), intensity_source="foreground", label_fractions={0: 0.9, 1: 0.1},
    samples_per_case=10, seed=0,
)  # fmt: skip


def _edited(**changes: Any) -> str:
    record = json.loads(_GOOD.to_json())
    for key, value in changes.items():
        if value is KeyError:
            del record[key]
        else:
            record[key] = value
    return json.dumps(record)


def test_a_document_round_trips() -> None:
    assert Fingerprint.from_json(_GOOD.to_json()) == _GOOD


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", r"^fingerprint document is not valid JSON \(JSONDecodeError: "),
        ("[" * 100_000 + "]" * 100_000, r"^fingerprint document is not valid JSON \(Recursion"),
        ("[1, 2]", r"^fingerprint document must be a JSON object, got list"),
        ('{"fingerprint_version": 2}', r"^fingerprint_version must be 1, got 2; recompute"),
        (_edited(n_cases=KeyError), r"^fingerprint document lacks the key 'n_cases'; recompute"),
        (_edited(intensity=5), r"wrong type or value \(TypeError: .*int"),
        (_edited(intensity=[{"mean": 1}]), r"wrong type or value \(TypeError: "),
        (_edited(label_fractions=[1]), r"wrong type or value \(AttributeError: "),
        (_edited(modalities=["pet"]), r"wrong type or value \(ValueError: 'pet'"),
        (_edited(spacings_mm=[["a"]]), r"wrong type or value \(ValueError: "),
        (_edited(lowres_axis="x"), r"lowres_axis must be an integer or null, got 'x'"),
        (_edited(inputs=[{"x": 1}]), r"inputs must hold case_id, role and identity records"),
    ],
)
def test_a_damaged_document_is_a_fingerprint_error(text: str, message: str) -> None:
    with pytest.raises(FingerprintError, match=message) as err:
        Fingerprint.from_json(text)
    assert isinstance(err.value, MedimgError)
    assert isinstance(err.value, ValueError)  # callers catching ValueError still do
    assert str(err.value).endswith("recompute it with `medimg fingerprint MANIFEST --force`")
