"""medimg.inference.batch: resume keys, records, the summary and the loop, with a stand-in model."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from medimg.errors import CaseError, ConfigError, ImageReadError, OutputLockedError
from medimg.inference import (
    BatchCase,
    BatchModel,
    CaseRecord,
    InferenceConfig,
    PredictionBatch,
    ResumeKey,
    inference_settings,
    input_identities,
    run_batch,
)
from medimg.io.locks import LOCK_NAME, OutputLock

SETTINGS = inference_settings(InferenceConfig(roi_size_vox=(16, 16, 8)), output="labels")


@pytest.fixture
def inputs(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "in"
    folder.mkdir()
    paths = [folder / f"c{k}.nii.gz" for k in range(3)]
    for k, p in enumerate(paths):
        p.write_bytes(bytes([k]) * 10)
    return paths


def _cases(inputs: list[Path], out: Path) -> list[BatchCase]:
    return [BatchCase(p.name[:2], (p,), out / f"{p.name[:2]}.out") for p in inputs]


class Model:
    """Stand-in: writes the input's bytes reversed; counts what it ran; fails on request."""

    def __init__(self, fail: set[str] | None = None) -> None:
        self.ran: list[str] = []
        self.fail = fail or set()

    def __call__(self, case: BatchCase) -> dict[str, object]:
        self.ran.append(case.case_id)
        if case.case_id in self.fail:
            raise ImageReadError(f"{case.inputs[0]}: damaged")
        assert case.output is not None
        case.output.write_bytes(case.inputs[0].read_bytes()[::-1])
        return {"n": len(self.ran)}


def _run(out: Path, inputs: list[Path], model: Model, **kw: object) -> tuple[CaseRecord, ...]:
    batch_model = BatchModel(str(kw.pop("sha", "a" * 64)), "c" * 64, kw.pop("settings", SETTINGS))  # type: ignore[arg-type]
    with PredictionBatch(out, header={"split": "test"}, **kw) as batch:  # type: ignore[arg-type]
        return run_batch(batch, _cases(inputs, out), batch_model, model, fail_fast=False)


def _summary(out: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((out / "summary.json").read_text())
    return loaded


def test_settings_keep_what_changes_the_output() -> None:
    assert SETTINGS == {
        "roi_size_vox": [16, 16, 8], "overlap": 0.5, "sigma_scale": 0.125, "mirror_axes": [],
        "output": "labels", "precision": "float32",
    }  # fmt: skip
    # device, batch size, layout and progress do not change a prediction: same settings
    other = InferenceConfig(roi_size_vox=(16, 16, 8), device="cpu", batch_size=4, progress=True)
    assert inference_settings(other, output="labels") == SETTINGS


def test_resume_key_differences_name_each_part(inputs: list[Path]) -> None:
    ids = input_identities(inputs[:1])
    key = ResumeKey("a" * 64, "c" * 64, SETTINGS, ids)
    assert key.differences(key) == []
    assert key.differences(None) == ["no resume key recorded with the output"]
    other = ResumeKey(
        "b" * 64, "d" * 64, {**SETTINGS, "overlap": 0.25}, input_identities(inputs[1:2])
    )
    diffs = other.differences(key)
    assert diffs[0] == "model (checkpoint SHA-256 aaaaaaaaaaaa... -> bbbbbbbbbbbb...)"
    assert diffs[1].startswith("preprocessing (chain key cccccccccccc... -> dddddddddddd")
    assert diffs[2] == "inference setting overlap (0.5 -> 0.25)"
    assert diffs[3].startswith(f"input file {inputs[1]} (content changed: size 10 -> 10, SHA-256")
    two = ResumeKey("a" * 64, "c" * 64, SETTINGS, input_identities(inputs[:2]))
    assert two.differences(key) == ["number of input files (1 -> 2)"]
    assert ResumeKey.from_json(json.loads(json.dumps(key.to_json()))) == key
    for broken in (None, [], {"settings": {}}, {**key.to_json(), "inputs": [{"size": 1}]},
                   {**key.to_json(), "model_sha256": 3}):  # fmt: skip
        assert ResumeKey.from_json(broken) is None


def test_input_identities_name_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"gone.nii.gz: no such file; fix the case's path") as exc:
        input_identities([tmp_path / "gone.nii.gz"])
    assert isinstance(exc.value, FileNotFoundError)  # ImageNotFoundError is one


def test_a_batch_resumes_exactly_what_is_done(
    tmp_path: Path, inputs: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    first = _run(out, inputs, Model(fail={"c1"}))
    assert [r.status for r in first] == ["written", "failed", "written"]
    assert "c1.nii.gz: damaged" in (first[1].error or "")
    summary = _summary(out)
    assert (summary["written"], summary["failed"], summary["pending"]) == (2, 1, 0)
    assert summary["finished"] is True
    assert not (out / LOCK_NAME).exists()

    again = Model()
    records = _run(out, inputs, again)
    assert again.ran == ["c1"]  # only the failed case runs again
    assert [r.status for r in records] == ["skipped", "written", "skipped"]
    assert records[0].result == {"n": 1}  # the result travels with the skipped record
    assert records[0].time_s is None

    # another model, other settings, a changed input, a replaced output: each redoes its cases
    caplog.set_level(logging.INFO)
    model = Model()
    _run(out, inputs, model, sha="b" * 64)
    assert model.ran == ["c0", "c1", "c2"]
    assert "case c0: predicting again: model (checkpoint SHA-256 aaaa" in caplog.text
    model = Model()
    _run(out, inputs, model, sha="b" * 64, settings={**SETTINGS, "mirror_axes": [0]})
    assert model.ran == ["c0", "c1", "c2"]
    assert "inference setting mirror_axes ([] -> [0])" in caplog.text
    stat = inputs[2].stat()
    inputs[2].write_bytes(b"\x09" * 10)  # same size, old mtime put back
    os.utime(inputs[2], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    (out / "c0.out").write_bytes(b"replaced!!")
    model = Model()
    _run(out, inputs, model, sha="b" * 64, settings={**SETTINGS, "mirror_axes": [0]})
    assert model.ran == ["c0", "c2"]
    assert "output c0.out (replaced or damaged since it was written)" in caplog.text
    assert f"input file {inputs[2]} (content changed" in caplog.text
    model = Model()
    _run(out, inputs, model, sha="b" * 64, settings={**SETTINGS, "mirror_axes": [0]})
    assert model.ran == []
    model = Model()
    _run(out, inputs, model, sha="b" * 64, overwrite=True)
    assert model.ran == ["c0", "c1", "c2"]


def test_stale_outputs_are_deleted_before_any_work(tmp_path: Path, inputs: list[Path]) -> None:
    out = tmp_path / "out"
    _run(out, inputs, Model())
    seen: list[list[str]] = []

    class Watching(Model):
        def __call__(self, case: BatchCase) -> dict[str, object]:
            seen.append(sorted(p.name for p in out.glob("*.out")))
            return super().__call__(case)

    _run(out, inputs, Watching(), sha="b" * 64)
    assert seen[0] == []  # no output of the old model is left while the new one runs


def test_summary_is_written_after_every_case_with_pending_ones(
    tmp_path: Path, inputs: list[Path]
) -> None:
    out = tmp_path / "out"
    states: list[tuple[object, ...]] = []

    class Peeking(Model):
        def __call__(self, case: BatchCase) -> dict[str, object]:
            s = _summary(out)
            states.append((s["written"], s["pending"], s["finished"]))
            return super().__call__(case)

    _run(out, inputs, Peeking())
    assert states == [(0, 3, False), (1, 2, False), (2, 1, False)]
    rows = _summary(out)["cases"]
    assert isinstance(rows, list)
    assert rows[0]["resume_key"]["model_sha256"] == "a" * 64
    assert rows[0]["output_identity"]["size"] == 10


def test_fail_fast_records_the_failure_then_raises(tmp_path: Path, inputs: list[Path]) -> None:
    out = tmp_path / "out"
    model = BatchModel("a" * 64, "c" * 64, SETTINGS)
    with (
        pytest.raises(CaseError, match=r"case c1: prediction failed: .*c1.nii.gz: damaged"),
        PredictionBatch(out, header={}) as batch,
    ):
        run_batch(batch, _cases(inputs, out), model, Model(fail={"c1"}))
    summary = _summary(out)
    assert [c["status"] for c in summary["cases"]] == ["written", "failed", "pending"]  # type: ignore[index, union-attr]
    assert summary["finished"] is False
    assert not (out / LOCK_NAME).exists()


def test_a_failure_reason_always_names_the_input(tmp_path: Path, inputs: list[Path]) -> None:
    def vague(case: BatchCase) -> None:
        raise RuntimeError("out of memory")

    model = BatchModel("a" * 64, "c" * 64, SETTINGS)
    with PredictionBatch(tmp_path / "out", header={}) as batch:
        (record, *_) = run_batch(
            batch, _cases(inputs, tmp_path / "out"), model, vague, fail_fast=False
        )
    assert record.error == f"RuntimeError: out of memory (input {inputs[0]})"


def test_the_folder_is_locked_and_temporaries_are_cleared(
    tmp_path: Path, inputs: list[Path]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".c0.out.abcd_123.tmp.out"
    stale.write_bytes(b"half")
    with PredictionBatch(out, header={}):
        assert not stale.exists()
        with pytest.raises(
            OutputLockedError, match=r"out is in use by pid \d+ since .*medimg predict"
        ):
            PredictionBatch(out, header={}).__enter__()
    with OutputLock(out), pytest.raises(OutputLockedError):
        _run(out, inputs, Model())
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"output folder .*file must be a folder, got a file"):
        PredictionBatch(tmp_path / "file", header={}).__enter__()


def test_a_damaged_summary_means_everything_is_redone(
    tmp_path: Path, inputs: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    _run(out, inputs, Model())
    (out / "summary.json").write_text('{"cases": [')
    model = Model()
    _run(out, inputs, model)
    assert model.ran == ["c0", "c1", "c2"]
    assert "summary.json: unreadable" in caplog.text
    (out / "summary.json").write_text('{"cases": [1, {"status": "written"}]}')
    model = Model()
    _run(out, inputs, model)
    assert model.ran == ["c0", "c1", "c2"]
