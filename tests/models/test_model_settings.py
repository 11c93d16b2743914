"""How a loaded model predicts: progress per sliding window, stored defaults, options, prompt.

* ``Model.predict(image, progress=cb)`` calls ``cb(0, total)`` and then ``cb(k, total)`` after
  every window, ``total`` being the planner's window count of the preprocessed volume
  (``iter_slabs(on_window=...)`` underneath).
* A model's stored inference defaults (``contract.json`` ``inference``; ``run.json`` for a
  folder) are what ``load_model`` and ``medimg predict`` use unless a setting is given.
* ``load_model(..., options=...)`` takes the task's prediction options.
* ``medimg predict --model ENCRYPTED`` asks for the passphrase on a terminal, else refuses.
"""

from __future__ import annotations

import getpass
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from medimg import load_model
from medimg.cli import main
from medimg.errors import ConfigError
from medimg.inference import InferenceConfig, iter_slabs, plan_inference
from medimg.tasks import SegmentationPredictOptions

_SECRET = "correct horse"


def _image(manifest: Path) -> Path:
    return manifest.parent / json.loads(manifest.read_text())["test"][0]["image"]


def _predict(model: Path, manifest: Path, out: Path, *extra: str) -> bytes:
    argv = ["predict", "--model", str(model), "--manifest", str(manifest), "--out", str(out)]
    assert main([*argv, "--device", "cpu", *extra]) == 0
    return (out / "case_004.nii.gz").read_bytes()


@pytest.fixture(scope="module")
def tuned(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The segmentation run trained (as its run.json says) with overlap 0.25, mirroring Z."""
    from medimg.packages import pack_model

    root = tmp_path_factory.mktemp("tuned")
    run = Path(shutil.copytree(runs["segmentation"], root / "tuned"))
    record = run / "model" / "run.json"
    raw = json.loads(record.read_text())
    raw["config"] = {"sw_overlap": 0.25, "mirror_axes": [2]}
    record.write_text(json.dumps(raw))
    return {"run": run, "package": pack_model(run, root / "tuned.medimg")}


# -- progress per sliding window ------------------------------------------------------------


def test_iter_slabs_reports_every_window_against_the_plans_count() -> None:
    net = torch.nn.Conv3d(1, 2, kernel_size=1)
    image = np.random.default_rng(0).normal(size=(1, 21, 17, 13)).astype(np.float32)
    cfg = InferenceConfig(roi_size_vox=(8, 8, 8), overlap=0.5, prefetch=False, batch_size=3)
    calls: list[tuple[int, int]] = []
    slabs = list(iter_slabs(net, image, cfg, on_window=lambda d, t: calls.append((d, t))))
    total = plan_inference(net, image.shape, cfg).n_windows
    # windows per axis: ceil((n - roi) / step) + 1 with step 4: X 5, Y 4, Z 3
    assert total == 5 * 4 * 3
    assert calls == [(k, total) for k in range(total + 1)]  # one call per window, in order
    assert sum(s.depth for s in slabs) == 13
    plain = list(iter_slabs(net, image, cfg))
    for a, b in zip(slabs, plain, strict=True):
        assert torch.equal(a.data, b.data)  # the callback changes nothing


def test_a_progress_callback_that_raises_stops_the_run() -> None:
    net = torch.nn.Conv3d(1, 2, kernel_size=1)
    cfg = InferenceConfig(roi_size_vox=(8, 8, 8), prefetch=False, batch_size=1)
    seen: list[int] = []

    def stop(done: int, total: int) -> None:
        seen.append(done)
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        list(iter_slabs(net, np.zeros((1, 16, 16, 24), np.float32), cfg, on_window=stop))
    assert seen == [0, 1, 2]


@pytest.mark.slow  # one segmentation prediction (a few seconds)
def test_model_predict_reports_every_window(
    packages: dict[str, Path], datasets: dict[str, Path]
) -> None:
    from medimg.keys import Keys
    from medimg.training import apply_chain
    from medimg.transforms import preprocessing_for

    model = load_model(packages["segmentation"], device="cpu")
    image = _image(datasets["segmentation"])
    calls: list[tuple[int, int]] = []
    model.predict(image, progress=lambda d, t: calls.append((d, t)))
    b = model.bundle
    chain = preprocessing_for(b.modality, b.preprocess, b.fingerprint)
    shape = tuple(apply_chain(chain, {Keys.IMAGE.value: str(image)})[Keys.IMAGE.value].shape)
    cfg = InferenceConfig(roi_size_vox=b.network.roi_size_vox, overlap=model.options.sw_overlap)
    total = plan_inference(b.model, shape, cfg).n_windows
    assert total > 1
    assert calls == [(k, total) for k in range(total + 1)]


# -- stored inference defaults, options ----------------------------------------------------


def test_load_model_takes_the_stored_defaults_and_an_options_object(
    tuned: dict[str, Path], packages: dict[str, Path]
) -> None:
    for source in (tuned["package"], tuned["run"]):
        model = load_model(source, device="cpu")
        assert model.options == SegmentationPredictOptions(sw_overlap=0.25, mirror_axes=(2,))
        assert model.precision == "float32"
        inference = model.contract["inference"]
        assert inference["roi_size_vox"] == list(model.bundle.network.roi_size_vox) == [16, 16, 8]
    plain = load_model(packages["segmentation"], device="cpu")
    assert plain.options == SegmentationPredictOptions()  # no stored overlap: the task's 0.5
    given = SegmentationPredictOptions(sw_overlap=0.75)
    assert load_model(tuned["package"], options=given, device="cpu").options is given
    assert load_model(tuned["package"], precision="bfloat16", device="cpu").precision == "bfloat16"
    from medimg.tasks import ClassificationPredictOptions

    with pytest.raises(ConfigError, match=r"predict options of the segmentation task must be "
                       r"SegmentationPredictOptions, got ClassificationPredictOptions"):  # fmt: skip
        load_model(tuned["package"], options=ClassificationPredictOptions(), device="cpu")


def test_medimg_predict_takes_the_stored_defaults_unless_an_option_is_given(
    tuned: dict[str, Path], datasets: dict[str, Path], tmp_path: Path
) -> None:
    from medimg.cli import build_parser
    from medimg.cli.tasks import build_configs
    from medimg.tasks import SegmentationTask

    manifest = str(datasets["segmentation"])
    for model in (tuned["package"], tuned["run"]):
        base = ["predict", "--model", str(model), "--manifest", manifest, "--out", str(tmp_path)]
        cfg = build_configs(build_parser().parse_args(base), SegmentationTask())
        assert cfg.options.sw_overlap == 0.25
        assert cfg.options.mirror_axes == (2,)
        assert cfg.precision == "float32"
        args = build_parser().parse_args([*base, "--mirror-axes", "1", "--precision", "bfloat16"])
        cfg = build_configs(args, SegmentationTask())
        assert (cfg.options.sw_overlap, cfg.options.mirror_axes) == (0.25, (1,))
        assert cfg.precision == "bfloat16"


@pytest.mark.slow  # three segmentation predictions, mirrored (about 10 s on an idle machine)
def test_stored_defaults_predict_like_the_run_folder_given_the_same_settings(
    runs: dict[str, Path], tuned: dict[str, Path], datasets: dict[str, Path], tmp_path: Path
) -> None:
    from medimg.tasks import PredictConfig, SegmentationTask, predict

    manifest = datasets["segmentation"]
    settings = SegmentationPredictOptions(sw_overlap=0.25, mirror_axes=(2,))
    # the run folder without stored defaults (run.json config {}), the settings given
    predict(SegmentationTask(), PredictConfig(
        manifest=manifest, model_dir=runs["segmentation"] / "model", out_dir=tmp_path / "given",
        device="cpu", options=settings,
    ))  # fmt: skip
    given = (tmp_path / "given" / "case_004.nii.gz").read_bytes()
    assert _predict(tuned["package"], manifest, tmp_path / "pkg") == given
    model = load_model(tuned["package"], device="cpu")
    assert model.predict(_image(manifest)).labels_nifti == given


# -- the passphrase prompt -----------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def encrypted(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medimg.packages import pack_model

    root = tmp_path_factory.mktemp("encrypted")
    return pack_model(runs["segmentation"], root / "enc.medimg", passphrase=_SECRET)


@pytest.fixture
def no_passphrase_file(monkeypatch: pytest.MonkeyPatch) -> None:
    from medimg.packages import PASSPHRASE_ENV

    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)


@pytest.mark.slow  # two segmentation predictions (about 6 s on an idle machine)
@pytest.mark.usefixtures("no_passphrase_file")
def test_predict_asks_for_an_encrypted_packages_passphrase_on_a_terminal(
    encrypted: Path, packages: dict[str, Path], datasets: dict[str, Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    prompts: list[str] = []

    def typed(prompt: str = "") -> str:
        prompts.append(prompt)
        return _SECRET

    monkeypatch.setattr(sys, "stdin", _Terminal())
    monkeypatch.setattr(getpass, "getpass", typed)
    manifest = datasets["segmentation"]
    labels = _predict(encrypted, manifest, tmp_path / "enc")
    assert prompts == [f"passphrase for {encrypted}: "]  # asked once, naming the package
    assert labels == _predict(packages["segmentation"], manifest, tmp_path / "plain")
    assert len(prompts) == 1  # an unencrypted package is not asked for
    assert _SECRET not in (tmp_path / "enc" / "run.json").read_text()
    assert _SECRET not in capsys.readouterr().err

    def wrong(prompt: str = "") -> str:
        return "wrong horse"

    monkeypatch.setattr(getpass, "getpass", wrong)
    argv = ["predict", "--model", str(encrypted), "--manifest", str(manifest), "--out",
            str(tmp_path / "wrong"), "--device", "cpu"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: wrong passphrase for {encrypted} (member")
    assert "wrong horse" not in err
    assert not (tmp_path / "wrong" / "case_004.nii.gz").exists()


@pytest.mark.usefixtures("no_passphrase_file")
def test_a_passphrase_file_is_used_without_asking(
    encrypted: Path, datasets: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medimg.cli._passphrase import ask_passphrase
    from medimg.cli.tasks import build_configs
    from medimg.tasks import SegmentationTask

    def never(prompt: str = "") -> str:
        raise AssertionError("asked for a passphrase a file gives")

    from medimg.cli import build_parser

    monkeypatch.setattr(sys, "stdin", _Terminal())
    monkeypatch.setattr(getpass, "getpass", never)
    secret = tmp_path / "pass.txt"
    secret.write_text(_SECRET + "\n")
    base = ["predict", "--model", str(encrypted), "--manifest", str(datasets["segmentation"]),
            "--out", str(tmp_path / "out")]  # fmt: skip
    args = build_parser().parse_args([*base, "--passphrase-file", str(secret)])
    assert ask_passphrase(build_configs(args, SegmentationTask())) is None  # the engine reads F
    monkeypatch.setenv("MEDIMG_PASSPHRASE_FILE", str(secret))
    assert (
        ask_passphrase(build_configs(build_parser().parse_args(base), SegmentationTask())) is None
    )


def test_medimg_tasks_uses_only_the_public_package_helpers() -> None:
    import medimg.tasks

    folder = Path(medimg.tasks.__file__).parent
    private = [p.name for p in folder.glob("*.py") if "medimg.packages._" in p.read_text()]
    assert private == []
