"""The validate / synth / fingerprint / manifest commands: exit codes and what they print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medimg.cli import main
from medimg.errors import ConfigError, OutputExistsError
from medimg.synthetic.datasets import write_ct_segmentation_dataset


def test_validate_exit_codes_and_messages(
    seg_dir: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, record = seg_dir
    good = root / "good.json"
    good.write_text(json.dumps(record))
    record["training"][1]["label"] = "labels/missing.nii.gz"
    record["channels"][0]["modality"] = "Ct"
    bad = root / "bad.json"
    bad.write_text(json.dumps(record))
    assert main(["validate", str(good)]) == 0
    assert capsys.readouterr().out == f"{good}: ok (2 cases, segmentation)\n"
    assert main(["validate", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: {bad} has 1 problem:\n"
        "  channels[0].modality: 'Ct' is not a modality; did you mean 'CT'? (valid: CT, MR, XR)\n"
    )
    record["channels"][0]["modality"] = "CT"
    bad.write_text(json.dumps(record))
    assert main(["validate", str(bad)]) == 2
    assert "  training[1].label: file not found: labels/missing.nii.gz" in capsys.readouterr().err
    assert main(["validate", "--schema-only", str(bad)]) == 0


def test_synth_refuses_to_overwrite_and_checks_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["synth", "xray-cls", str(tmp_path), "--cases", "2"]) == 0
    assert capsys.readouterr().out == f"wrote 2 cases and {tmp_path / 'dataset.json'}\n"
    assert main(["synth", "xray-cls", str(tmp_path), "--cases", "2"]) == 2
    assert "exists; pass overwrite=True (--force)" in capsys.readouterr().err
    assert main(["synth", "xray-cls", str(tmp_path), "--cases", "2", "--force"]) == 0
    with pytest.raises(ConfigError, match=r"n_cases must be >= 1, got 0"):
        write_ct_segmentation_dataset(tmp_path / "ct", 0)
    with pytest.raises(OutputExistsError, match=r"dataset.json exists; pass overwrite=True"):
        write_ct_segmentation_dataset(tmp_path, 1)


def test_fingerprint_splits_and_schema_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_ct_segmentation_dataset(tmp_path, 2, seed=0)
    assert main(["fingerprint", str(manifest)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{tmp_path / 'dataset.fingerprint.json'}\n  cases            2\n")
    assert main(["fingerprint", str(manifest), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_cases"] == 2
    assert main(["manifest", "splits", str(manifest), "--folds", "2"]) == 0
    assert (
        capsys.readouterr().out == f"{tmp_path / 'dataset.splits.json'}: 2 folds of [1, 1] cases\n"
    )
    schema = tmp_path / "schema.json"
    assert main(["manifest", "schema", str(schema)]) == 0
    assert json.loads(schema.read_text())["title"] == "medimg dataset manifest"
