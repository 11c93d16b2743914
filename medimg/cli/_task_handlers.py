"""Handlers of ``medimg train``, ``predict`` and ``evaluate`` (:mod:`medimg.cli.tasks`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from medimg.cli.tasks import build_configs, resolve_task

__all__ = ["run_evaluate", "run_predict", "run_train"]


def run_train(args: argparse.Namespace) -> int:
    """Handle ``medimg train``.

    Raises
    ------
    ConfigError
        With ``--resume`` when the model folder holds no run to continue.
    """
    import logging
    import os

    from medimg.tasks import train
    from medimg.training.distributed import init_from_environment, shutdown

    task = resolve_task(args)
    cfg = build_configs(args, task)
    if args.nproc is not None:  # torchrun's launcher starts the ranks (training/_launch.py)
        from medimg.training._launch import launch_local, without_option

        return launch_local(args.nproc, without_option(args.argv, "--nproc"))
    ctx = init_from_environment(os.environ, device=cfg.train.device)  # under torchrun
    if not ctx.is_main:  # rank 0 alone logs and prints
        logging.getLogger("medimg").setLevel(logging.WARNING)
    try:
        result = train(task, cfg, resume=args.resume, require_run=True)
    except BaseException:
        shutdown(synchronise=False)
        raise
    shutdown()
    if not ctx.is_main:
        return 0
    fit = result.fit
    best = "n/a" if fit.best_metric is None else f"{fit.best_metric:.4f} (epoch {fit.best_epoch})"
    print(f"trained {fit.epochs_run} epochs; best validation {task.metric} {best}")
    print(f"checkpoint {result.checkpoint} sha256 {result.checkpoint_sha256}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """Handle ``medimg predict``: exit status 1 when a case failed."""
    from medimg.cli._passphrase import ask_passphrase
    from medimg.cli._ray_options import ray_config
    from medimg.tasks import predict

    task = resolve_task(args)
    cfg = build_configs(args, task)
    result = predict(task, cfg, ray=ray_config(args), passphrase=ask_passphrase(cfg))
    counts = {s: sum(c.status == s for c in result.cases) for s in ("written", "skipped", "failed")}
    print(f"{result.path}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    failed = [c for c in result.cases if c.status == "failed"]
    if not failed:
        return 0
    print(f"{len(failed)} of {len(result.cases)} cases failed:")
    for case in failed:
        print(f"  {case.case_id}: {case.error}")
    print(
        f"error: {len(failed)} of {len(result.cases)} cases failed (first: "
        f"{failed[0].case_id}: {failed[0].error}); every reason is in {result.summary_path}; "
        f"fix those inputs and run again: finished cases are kept",
        file=sys.stderr,
    )
    return 1


def run_evaluate(args: argparse.Namespace) -> int:
    """Handle ``medimg evaluate``."""
    from medimg.tasks import evaluate

    task = resolve_task(args)
    result = evaluate(task, build_configs(args, task))
    _PRINTERS.get(task.name, lambda r: None)(result)
    print(f"report: {result.out_dir}")
    return 0


def _print_segmentation(result: Any) -> None:
    print(f"mean Dice {result.summary['mean_dice']:.4f} over {len(result.cases)} cases")
    for name, stats in result.summary["labels"].items():
        print(
            f"  {name}: Dice {stats['dice']['mean']:.4f}, HD95 {stats['hd95_mm']['mean']:.2f} mm, "
            f"surface Dice {stats['surface_dice']['mean']:.4f}"
        )


def _print_classification(result: Any) -> None:
    s = result.scores
    print(
        f"AUC {s.auc:.4f}, accuracy {s.accuracy:.4f}, balanced accuracy "
        f"{s.balanced_accuracy:.4f} over {result.summary['n_cases']} cases"
    )
    if s.sensitivity is not None:
        print(f"  at threshold {s.threshold}: sensitivity {s.sensitivity:.4f}, "
              f"specificity {s.specificity:.4f}")  # fmt: skip
    print(f"  confusion (rows true, columns predicted): {[list(r) for r in s.confusion]}")


def _print_detection(result: Any) -> None:
    s = result.summary  # None for a score that is not defined (no lesion, no detection)
    cpm, ap = ("n/a" if v is None else f"{v:.4f}" for v in (s["cpm"], s["map"]))
    print(f"CPM {cpm}, mAP@{s['map_iou']:g} {ap} over {s['n_scans']} scans")


_PRINTERS: dict[str, Callable[[Any], None]] = {
    "segmentation": _print_segmentation,
    "classification": _print_classification,
    "detection": _print_detection,
}
"""A task's summary lines after ``medimg evaluate`` (a task without one prints the folder)."""
