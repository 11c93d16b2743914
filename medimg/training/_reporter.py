"""Progress bar (opt-in), TensorBoard (opt-in) and log lines of each epoch of :func:`fit`."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medimg.training.config import TrainConfig

if TYPE_CHECKING:
    from medimg.training.loop import _State

__all__ = ["Reporter"]

logger = logging.getLogger("medimg.training.loop")  # the loop's log lines, as before


class Reporter:
    """Progress bar (opt-in), TensorBoard (opt-in) and log lines for each epoch."""

    def __init__(
        self, cfg: TrainConfig, out_dir: Path, first_epoch: int, *, quiet: bool = False
    ) -> None:
        from tqdm.auto import tqdm

        self.quiet = quiet  # another rank than 0 of a distributed run: no bar, logs or files

        self.bar = tqdm(
            total=cfg.max_epochs,
            initial=first_epoch,
            disable=quiet or not cfg.progress,
            unit="epoch",
        )
        self.best = math.nan
        self.writer: Any = None
        if cfg.tensorboard and not quiet:
            from torch.utils.tensorboard.writer import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(out_dir / "tensorboard"))

    def epoch(self, state: _State) -> None:
        """Report the epoch ``state`` just finished."""
        if self.quiet:
            return
        h, n = state.history, state.epoch
        loss, lr, metric = h["train_loss"][-1], h["learning_rate"][-1], h["val_metric"][-1]
        validated = not math.isnan(metric)
        if validated:
            logger.info("epoch %d: train loss %.4f, lr %.2e, val %.4f", n, loss, lr, metric)
            self.best = metric if math.isnan(self.best) else max(self.best, metric)
        else:  # no validation this epoch: say so rather than print "nan"
            logger.info("epoch %d: train loss %.4f, lr %.2e", n, loss, lr)
        shown = f"{self.best:.4f}" if not math.isnan(self.best) else "-"
        self.bar.set_postfix(loss=f"{loss:.4f}", best_val=shown, refresh=False)
        self.bar.update(1)
        if self.writer is not None:
            self.writer.add_scalar("train/loss", loss, n)
            self.writer.add_scalar("train/learning_rate", lr, n)
            if validated:
                self.writer.add_scalar("val/metric", metric, n)

    def close(self) -> None:
        """Close the bar and the TensorBoard writer."""
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
