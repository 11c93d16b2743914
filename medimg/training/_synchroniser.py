"""The data-parallel half of a training step: DDP around the loss, the ranks' loss weights.

See :mod:`medimg.training.distributed` for what a distributed run does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from medimg.training.distributed import Distributed, current

if TYPE_CHECKING:
    import torch

__all__ = ["Synchroniser"]


def _loss_module(model: torch.nn.Module, loss_fn: Callable[..., torch.Tensor]) -> Any:
    """``loss_fn(model(inputs), target)`` as one module, so DDP wraps the whole loss.

    Detection's loss runs the network itself (its ``forward`` passes the images through), so
    wrapping only the model would leave the network outside DDP's forward.
    """
    import torch

    class LossOf(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return loss_fn(self.model(inputs), target)

    return LossOf()


class Synchroniser:
    """The data-parallel half of a training step (see the module notes).

    Parameters
    ----------
    model : torch.nn.Module
        The model, already on ``device``; trained in place.
    loss_fn : callable
        ``loss_fn(model(inputs), target) -> scalar``.
    device : torch.device
        This rank's device.
    ctx : Distributed, optional
        This process (:func:`current` by default).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: Callable[..., torch.Tensor],
        device: torch.device,
        ctx: Distributed | None = None,
    ) -> None:
        import torch
        from torch.nn.parallel import DistributedDataParallel

        self.ctx = ctx or current()
        self.device = device
        if not self.ctx.enabled:
            self._loss: Callable[..., torch.Tensor] = lambda x, y: loss_fn(model(x), y)
            return
        if device.type == "cuda":
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # type: ignore[no-untyped-call]  # torch leaves it unannotated
        ids = [device.index] if device.type == "cuda" else None
        self._loss = DistributedDataParallel(_loss_module(model, loss_fn), device_ids=ids)

    def weight(self, rows: int) -> float:
        """The loss weight ``n_r * N / n`` of this rank's ``rows`` of the step's ``n`` rows.

        1.0 in a world of one, and whenever every rank has as many rows (the tasks' padded
        shards); the step's row count is summed over ranks.
        """
        import torch
        import torch.distributed as dist

        if not self.ctx.enabled:
            return 1.0
        total = torch.tensor([rows], dtype=torch.int64)
        if self.ctx.backend == "nccl":
            total = total.to(self.device)
        dist.all_reduce(total)
        n = int(total.item())
        return 1.0 if rows * self.ctx.world_size == n else rows * self.ctx.world_size / n

    def loss(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The (unweighted) loss of this rank's rows, through DDP when distributed."""
        return self._loss(inputs, target)

    def batch_loss(self, loss: float, weight: float) -> float:
        """The whole batch's loss from every rank's ``loss`` and weight (same on every rank)."""
        import torch
        import torch.distributed as dist

        if not self.ctx.enabled:
            return loss
        total = torch.tensor([loss * weight / self.ctx.world_size], dtype=torch.float64)
        if self.ctx.backend == "nccl":
            total = total.to(self.device)
        dist.all_reduce(total)
        return float(total.item())
