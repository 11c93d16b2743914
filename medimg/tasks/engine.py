"""The shared engines: :func:`train`, :func:`predict` and :func:`evaluate` for any :class:`Task`.

* :func:`train` -- under the model folder's lock: seed, validate the manifest, fingerprint,
  the modality's one chain, split, the task's :class:`~medimg.tasks.TrainPlan`,
  :func:`~medimg.training.fit`, best (else last) checkpoint, the model record with the task's
  typed head, training curves and ``run.json``.
* :func:`predict` -- the model folder's bundle (the task's ``load_model``) and chain, the
  split's cases, and one batch through :func:`~medimg.inference.run_batch` into a locked
  folder: one error policy for every
  task (:data:`~medimg.inference.CASE_ERRORS`), resume keys, progress, ``summary.json``
  after every case, ``run.json``.
* :func:`evaluate` -- the split's labelled cases scored by the task, with ``run.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from medimg.errors import ConfigError
from medimg.tasks.base import (
    CaseOutcome,
    EvaluateConfig,
    PredictConfig,
    PredictResult,
    Task,
    TrainResult,
    TrainSettings,
)

__all__ = ["evaluate", "predict", "prediction_setup", "train"]

logger = logging.getLogger(__name__)


def train(
    task: Task, cfg: TrainSettings, *, resume: bool = False, require_run: bool = False
) -> TrainResult:
    """Train ``task``'s network on the manifest's training cases; keep the best checkpoint.

    ``resume`` continues the run in ``cfg.model_dir`` when there is one (else starts a new
    run); with ``require_run`` as well, a folder without a run to continue is refused. That
    check happens once the folder's lock is held, so a live run is reported as such.

    Raises
    ------
    ManifestError
        When the manifest or its files have problems.
    ConfigError
        When the manifest is not one of ``task``, or ``require_run`` finds no run.
    OutputExistsError
        When ``cfg.model_dir`` holds a run and ``resume`` is false.
    OutputLockedError
        When another live run trains into ``cfg.model_dir`` (locked for the whole run; a dead
        run's lock is taken over with a warning).
    """
    from contextlib import nullcontext

    from medimg.training import training_lock
    from medimg.training.distributed import current

    main = current().is_main  # under torchrun, rank 0 owns the folder (distributed.py)
    with training_lock(cfg.model_dir) if main else nullcontext():
        if resume and require_run and main:
            _check_run_to_resume(cfg.model_dir)
        return _train(task, cfg, resume=resume)


def _check_run_to_resume(model_dir: Path) -> None:
    from medimg.training import LAST

    if not (model_dir / LAST).is_file():
        raise ConfigError(
            f"--resume needs a run to continue, got no {LAST} in {model_dir}; drop --resume "
            "to start a new run"
        )


def _train(task: Task, cfg: TrainSettings, *, resume: bool) -> TrainResult:
    from medimg.fingerprint import load_or_compute_fingerprint
    from medimg.manifests import load_manifest, resolve_cases
    from medimg.training import BEST, LAST, fit, seed_everything, split_cases, utc_now
    from medimg.training.distributed import current, main_first
    from medimg.transforms import preprocessing_for

    started = utc_now()
    seed_everything(cfg.seed)
    manifest = load_manifest(cfg.manifest)
    task.check_manifest(manifest, cfg.manifest)
    fingerprint = main_first(  # rank 0 computes and saves it; the other ranks reuse it
        lambda: load_or_compute_fingerprint(cfg.manifest, seed=cfg.seed)
    )
    modality = manifest.channels[0].modality
    chain = preprocessing_for(modality, cfg.preprocess, fingerprint)
    split = split_cases(
        resolve_cases(manifest, cfg.manifest), fraction=cfg.validation_fraction, seed=cfg.seed
    )
    plan = task.plan_training(cfg, manifest, fingerprint, chain, split)
    result = fit(
        plan.model, plan.loss, plan.batches, cfg.train, out_dir=cfg.model_dir,
        validate=plan.validate, resume=resume, lock=False,
    )  # fmt: skip
    checkpoint = cfg.model_dir / (BEST if BEST in result.checkpoints else LAST)
    cases = {"train": [c.case_id for c in split[0]], "validation": [c.case_id for c in split[1]]}
    if current().is_main:
        made = {"fingerprint": fingerprint, "modality": modality.value, "cases": cases}
        _write_model(task, cfg, plan, result, checkpoint, made, started)
    return TrainResult(
        model_dir=cfg.model_dir,
        checkpoint=checkpoint,
        checkpoint_sha256=result.checkpoints[checkpoint.name],
        fit=result,
        train_cases=tuple(cases["train"]),
        validation_cases=tuple(cases["validation"]),
    )


def _write_model(task: Task, cfg: TrainSettings, plan: Any, result: Any, checkpoint: Path,
                 made: dict[str, Any], started: str) -> None:  # fmt: skip
    """The model record, training curves and ``run.json`` of a finished run (rank 0)."""
    from medimg.evaluation import save_training_curves
    from medimg.training import save_model_bundle, write_run_record

    fingerprint, cases = made["fingerprint"], made["cases"]
    save_model_bundle(
        cfg.model_dir, network=plan.network, preprocess=cfg.preprocess,
        modality=made["modality"], outputs=plan.outputs, fingerprint=fingerprint,
        checkpoint=checkpoint.name, head=plan.head,
    )  # fmt: skip
    save_training_curves(dict(result.history), cfg.model_dir / "curves.png", overwrite=True)
    write_run_record(
        cfg.model_dir, config=cfg, seed=cfg.seed, started=started, manifest=cfg.manifest,
        extra={"task": task.name, "fit": result, "cases": cases,
               "fingerprint": json.loads(fingerprint.to_json()), **plan.record},
    )  # fmt: skip


def _memory_method() -> str:
    from medimg.inference import measure_usage

    with measure_usage() as probe:  # how this process measures (same for every case)
        pass
    return probe.method


def predict(
    task: Task, cfg: PredictConfig, *, ray: Any = None, passphrase: str | None = None
) -> PredictResult:
    """Predict every case of ``cfg.split`` with the model of ``cfg.model_dir``.

    ``passphrase`` opens an encrypted package (else ``cfg.passphrase_file``, else
    ``MEDIMG_PASSPHRASE_FILE``); it is never logged or stored, and Ray workers do not get it
    (they read the file).

    With ``ray`` (a :class:`~medimg.inference.ray_batch.RayConfig`) each remaining case is a
    task on that Ray cluster (:mod:`medimg.inference.ray_batch`); this process keeps the lock,
    the resume keys and the summary, and the folders must be on storage every node reaches.

    The run holds the lock of ``cfg.out_dir`` (a second run raises
    :class:`~medimg.errors.OutputLockedError`) and first deletes temporaries an interrupted run
    left. A case is skipped (unless ``cfg.overwrite``) only when the summary records it as done
    under an equal resume key -- the weights' SHA-256, the preprocessing chain key, the
    task's settings and the content (size, SHA-256) of its input files -- and its output, when
    it writes one, still has the recorded SHA-256 and passes the task's check; otherwise the
    stale output is deleted before work starts and the case is predicted again, the reason
    logged (:mod:`medimg.inference.batch`). The summary is rewritten atomically after every
    case, so an interrupted batch resumes where it stopped.

    With ``cfg.fail_fast`` every file is checked before work starts and a problem raises
    (:class:`~medimg.errors.ManifestError` listing them all, or
    :class:`~medimg.errors.CaseError` naming the case). Without it only the manifest's schema is
    checked up front, and a case failing with any of :data:`~medimg.inference.CASE_ERRORS`
    (medimg's checks, I/O, torch including out of memory, numpy) is recorded while the batch
    goes on.

    Raises
    ------
    ConfigError
        When the model is not one of ``task``, the options are another task's, or the split
        has no cases.
    """
    from medimg.inference import BatchCase, BatchModel, PredictionBatch, run_batch
    from medimg.modality import Modality
    from medimg.tasks._ray_predict import absolute_paths, predict_on_ray
    from medimg.training import utc_now, write_run_record
    from medimg.transforms.cache import chain_key

    started = utc_now()
    cfg = cfg if ray is None else absolute_paths(cfg)  # workers run in other folders
    bundle, cases, predictor = prediction_setup(task, cfg, passphrase=passphrase)
    model = BatchModel(
        bundle.weights_sha256,  # the weights' digest: a run folder and its package agree
        chain_key(Modality(bundle.modality), bundle.preprocess, bundle.fingerprint),
        predictor.settings,
    )
    work = [BatchCase(c.case_id, c.images, predictor.output(c)) for c in cases.values()]
    header = {
        "task": task.name,
        "split": cfg.split,
        "model_dir": str(cfg.model_dir),
        "settings": dict(predictor.settings),
        "peak_memory": "process peak RSS while the case ran: " + _memory_method(),
    }
    with PredictionBatch(cfg.out_dir, header=header, summary_name=predictor.summary_name,
                         overwrite=cfg.overwrite) as batch:  # fmt: skip
        predictor.start()
        is_valid = lambda b: predictor.is_done(cases[b.case_id])  # noqa: E731
        if ray is not None:
            records = predict_on_ray(task, cfg, batch, work, model, ray, is_valid)
        else:
            records = run_batch(
                batch, work, model, lambda b: predictor.run(cases[b.case_id], b),
                is_valid=is_valid, fail_fast=cfg.fail_fast, progress=cfg.progress,
            )  # fmt: skip
        outcomes = tuple(_outcome(r, predictor.output(cases[r.case_id])) for r in records)
        main = predictor.finish(records)
        write_run_record(
            cfg.out_dir, config=cfg, seed=0, started=started, manifest=cfg.manifest,
            extra={"task": task.name, "split": cfg.split, "cases": outcomes},
        )  # fmt: skip
    logger.info("predicted %d cases of %s -> %s", len(outcomes), cfg.split, main)
    return PredictResult(cfg.out_dir, main, batch.summary_path, outcomes)


def prediction_setup(
    task: Task, cfg: PredictConfig, *, passphrase: str | None = None
) -> tuple[Any, dict[str, Any], Any]:
    """The model bundle, the split's cases by id and the task's predictor of ``cfg``.

    What :func:`predict` builds before its batch, and each Ray worker once
    (:mod:`medimg.tasks._ray_predict`).

    Raises
    ------
    ConfigError
        When the model is not one of ``task`` or the split has no cases.
    """
    from medimg.manifests import load_manifest, resolve_cases
    from medimg.tasks._contract import check_manifest_contract
    from medimg.transforms import preprocessing_for

    if passphrase is None:
        passphrase = _passphrase(cfg.passphrase_file)
    bundle = task.load_model(cfg.model_dir, trust=cfg.trust or None, passphrase=passphrase)
    manifest = load_manifest(cfg.manifest, check_files=cfg.fail_fast)
    task.check_manifest(manifest, cfg.manifest)
    cases = {c.case_id: c for c in resolve_cases(manifest, cfg.manifest) if c.split == cfg.split}
    if not cases:
        raise ConfigError(
            f"split {cfg.split!r} of {cfg.manifest} must have cases to predict, got none; "
            f"choose another --split"
        )
    check_manifest_contract(bundle, manifest, cfg.manifest, cases.values())
    chain = preprocessing_for(bundle.modality, bundle.preprocess, bundle.fingerprint)
    return bundle, cases, task.predictor(bundle, chain, cfg)


def _passphrase(path: Path | None) -> str | None:
    """The passphrase in ``path`` (None: none given; a package then reads its environment)."""
    from medimg.packages import read_passphrase_file

    return None if path is None else read_passphrase_file(path)


def _outcome(record: Any, path: Path | None) -> CaseOutcome:
    """A batch record as every task reports it, with the case's output file (if any)."""
    return CaseOutcome(
        record.case_id, record.status, path, record.result, record.error, record.time_s,
        record.peak_memory_bytes,
    )  # fmt: skip


def counts(cases: tuple[CaseOutcome, ...]) -> dict[str, int]:
    """Cases per status (``written``, ``skipped``, ``failed``)."""
    return {s: sum(c.status == s for c in cases) for s in ("written", "skipped", "failed")}


def evaluate(task: Task, cfg: EvaluateConfig) -> Any:
    """Score the prediction folder against the references of ``cfg.split``; write the report.

    Raises
    ------
    ConfigError
        When the split has no labelled case, or the options are another task's.
    """
    from medimg.manifests import load_manifest, resolve_cases
    from medimg.training import utc_now, write_run_record

    started = utc_now()
    manifest = load_manifest(cfg.manifest, check_files=False)  # the task reads what it needs
    task.check_manifest(manifest, cfg.manifest)
    cases = [c for c in resolve_cases(manifest, cfg.manifest) if c.split == cfg.split]
    cases = [c for c in cases if _has_reference(c)]
    if not cases:
        raise ConfigError(
            f"split {cfg.split!r} of {cfg.manifest} must have labelled cases (a label, class "
            f"or boxes), got none; choose another --split"
        )
    result = task.evaluate(cases, manifest, cfg)
    write_run_record(
        cfg.out_dir, config=cfg, seed=0, started=started, manifest=cfg.manifest,
        extra={"task": task.name, "split": cfg.split, "summary": result.summary},
    )  # fmt: skip
    return result


def _has_reference(case: Any) -> bool:
    """Whether a case has what evaluation scores against: a label map, a class or boxes."""
    return any(x is not None for x in (case.label, case.class_index, case.boxes))


def options_of(task: Task, given: object | None, kind: str) -> Any:
    """``given`` when it is ``task``'s option class for ``kind``, its defaults when None."""
    cls = task.predict_options if kind == "predict" else task.evaluate_options
    if given is None:
        return cls()
    if not isinstance(given, cls):
        raise ConfigError(
            f"{kind} options of the {task.name} task must be {cls.__name__}, got "
            f"{type(given).__name__}"
        )
    return given


def write_table(
    path: Path, header: list[str], rows: list[list[object]], *, overwrite: bool
) -> Path:
    """Write a CSV table atomically (refusing to replace it unless ``overwrite``)."""
    import csv

    from medimg.io.writing import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=overwrite) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path
