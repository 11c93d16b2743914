"""Bad inputs of ``medimg predict --model PACKAGE``: an image outside the package's contract.

The package holds a tiny seeded CT segmentation network (not trained); the manifests point at
one synthetic CT phantom and declare what the package was not made for.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from catalogue_helpers import BadInput, check_bad_input, untrained_model


def _package(tmp: Path) -> Path:
    from medimg.packages import pack_model

    return pack_model(untrained_model(tmp / "run"), tmp / "liver.medimg")


def _manifest(tmp: Path, **changes: object) -> Path:
    from medimg.synthetic.datasets import write_ct_segmentation_dataset

    path = write_ct_segmentation_dataset(tmp / "data", 2, seed=0)
    raw = json.loads(path.read_text())
    cases = [*raw["training"], *raw.get("test", [])]
    raw["training"], raw["test"] = cases[:1], cases[1:]
    raw.update(changes)
    path.write_text(json.dumps(raw))
    return path


def _predict(**changes: object) -> Callable[[Path], Sequence[str]]:
    def make(tmp: Path) -> Sequence[str]:
        return ["predict", "--model", str(_package(tmp)), "--manifest",
                str(_manifest(tmp, **changes)), "--out", str(tmp / "out")]  # fmt: skip

    return make


CATALOGUE = [
    BadInput(
        "package_contract_modality",
        _predict(channels=[{"name": "T1", "modality": "MR"}]),
        2,
        r"error: {tmp}/data/imagesTr/case_001\.nii\.gz \(manifest {tmp}/data/dataset\.json\) "
        r"does not meet the input contract of {tmp}/liver\.medimg \(member 'contract\.json' "
        r"field 'modality': the model takes CT, got MR\); use a model trained for this input",
    ),
]


@pytest.mark.parametrize("entry", CATALOGUE, ids=lambda e: e.kind)
def test_catalogue_models(
    entry: BadInput, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_bad_input(entry, tmp_path, capsys)
