from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medimg.errors import GeometryError, OutputExistsError
from medimg.evaluation import (
    CSV_COLUMNS,
    save_overlay_figure,
    save_training_curves,
    score_case,
    summarize,
    write_case_csv,
    write_json,
)


def _cases() -> list:
    ref = np.zeros((8, 8, 6), np.uint8)
    ref[2:5, 2:5, 1:4] = 1
    shifted = np.roll(ref, 1, axis=0)
    labels = {1: "liver"}
    return [
        score_case("a", ref, ref, spacing_mm=(1.0, 1.0, 2.5), labels=labels),
        score_case("b", shifted, ref, spacing_mm=(1.0, 1.0, 2.5), labels=labels),
    ]


def test_csv_and_summary(tmp_path: Path) -> None:
    cases = _cases()
    path = write_case_csv(cases, tmp_path / "cases.csv")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["case_id"], r["dice"]) for r in rows] == [("a", "1.000000"), ("b", "0.666667")]
    summary = summarize(cases)
    assert summary["mean_dice"] == pytest.approx((1 + 2 / 3) / 2)
    assert summary["labels"]["liver"]["dice"]["min"] == pytest.approx(2 / 3)
    out = write_json({**summary, "undefined": float("nan")}, tmp_path / "summary.json")
    loaded = json.loads(out.read_text())
    assert loaded["undefined"] is None
    assert loaded["labels"]["liver"]["n_cases"] == 2
    with pytest.raises(OutputExistsError, match=r"summary.json: exists; pass overwrite=True"):
        write_json(summary, out)


def test_figures_are_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(8, 8, 6))
    ref = np.zeros((8, 8, 6), np.uint8)
    ref[2:5, 2:5, 1:4] = 1
    png = save_overlay_figure(image, np.roll(ref, 1, axis=0), ref, tmp_path / "o.png", title="a")
    curves = save_training_curves(
        {"train_loss": [1.0, 0.5, 0.3], "val_dice": [float("nan"), 0.5, 0.8]}, tmp_path / "c.png"
    )
    for path in (png, curves):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(GeometryError, match=r"3D arrays of one shape, got \(8, 8, 6\), \(8, 8\)"):
        save_overlay_figure(image, ref[:, :, 0], ref, tmp_path / "x.png")


def test_import_loads_neither_matplotlib_nor_torch() -> None:
    code = (
        "import sys, medimg.evaluation, medimg.networks, medimg.training; "
        "print(sorted(m for m in ('matplotlib', 'torch', 'monai', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
