"""The segmentation pipeline from Python, as a notebook would use it.

Run with ``python examples/segmentation_notebook.py OUT_DIR``. Each step returns a typed result,
so a notebook can inspect the fit's history, re-predict one case, or plot one case's overlay.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from medimg.synthetic.datasets import write_ct_segmentation_dataset
from medimg.training import TrainConfig
from pipelines.segmentation import SegmentationConfig, evaluate, predict, train

logger = logging.getLogger("example")


def main(out: Path) -> float:
    """Synthetic data -> train -> predict -> evaluate; return the mean held-out Dice."""
    manifest = write_ct_segmentation_dataset(out / "data", 10, seed=0, overwrite=True)
    cfg = SegmentationConfig(
        manifest=manifest,
        out_dir=out / "run",
        network="dynunet",
        base_features=8,
        roi_size_vox=(32, 32, 16),
        train=TrainConfig(max_epochs=60, learning_rate=1e-2, validate_every_epochs=5),
    )
    trained = train(cfg, resume=True)  # continues an interrupted run in out/run/model
    logger.info(
        "best validation Dice %.4f at epoch %s", trained.fit.best_metric, trained.fit.best_epoch
    )
    predicted = predict(cfg)
    logger.info("predictions: %s", [(c.case_id, c.status) for c in predicted.cases])
    scores = evaluate(cfg, overwrite=True)
    for case in scores.cases:
        logger.info("%s: %s", case.case_id, {s.name: round(s.dice, 4) for s in case.labels})
    return float(scores.summary["mean_dice"])


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "medimg-example"))
