"""Data-parallel training over processes: torchrun starts them, this module joins them up.

``torchrun --nproc-per-node N -m medimg train ...`` starts ``N`` copies of ``medimg train``
with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their
environment. The command line hands that environment to :func:`init_from_environment`, which
joins the process group (``gloo`` on the CPU, ``nccl`` when the run trains on CUDA, one GPU per
local rank); :func:`current` then describes this process to the training engine, which behaves
as follows in every task:

* **Batches.** Every rank builds the same global batches (``batches(epoch)`` depends on the seed
  and the epoch only) and trains on its own contiguous share of each batch's rows
  (:meth:`Synchroniser.shard`, DistributedSampler-style: sizes differ by at most one).
* **Gradients.** The model and its loss run inside one
  :class:`~torch.nn.parallel.DistributedDataParallel` module, which averages the gradients
  over ranks. Each rank's loss is weighted by ``n_r * N / n`` (its ``n_r`` of the batch's ``n``
  rows), so for a loss that is a mean over samples (Dice + CE, cross-entropy) the averaged
  gradient equals the single-process gradient of the whole batch; a rank left without a row
  (a batch smaller than the world) runs one row with weight 0. The logged loss is the same
  weighted sum, identical on every rank.
* **Validation, checkpoints, logs, run record.** Rank 0 validates and broadcasts the metric,
  so every rank agrees on it and on the best epoch; rank 0 alone writes ``last.pt``,
  ``best.pt``, TensorBoard, the model record and ``run.json`` (which states ``world_size``).
  Checkpoints keep every rank's random-generator state; a resumed run has rank 0 read
  ``last.pt`` and broadcast it, so other nodes need no copy of the run folder.

Notes
-----
Exactness against one process holds for per-sample-mean losses without batch statistics:
BatchNorm normalises each rank's share (converted to ``SyncBatchNorm`` on CUDA; the CPU has no
synchronised BatchNorm), and detection's RetinaNet loss normalises by the batch's matched
anchors, so there DDP is the usual mean of per-rank losses. Every rank preprocesses every
training case (the batches are drawn from all of them each epoch) and draws the epoch's
patches; only the forward and backward passes are split.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from medimg.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = [
    "Distributed",
    "Synchroniser",
    "broadcast",
    "choose_backend",
    "current",
    "gather",
    "init_from_environment",
    "main_first",
    "rank_bounds",
    "rank_device",
    "shutdown",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Distributed:
    """Where this process stands in a data-parallel run.

    Attributes
    ----------
    rank, world_size, local_rank : int
        Global rank, number of processes, rank on this node (``0, 1, 1`` outside a run).
    backend : str or None
        ``"gloo"`` or ``"nccl"``; None outside a run.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run's files (rank 0)."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether more than one process trains."""
        return self.world_size > 1


def current() -> Distributed:
    """Where this process stands in the initialised process group (a world of one without).

    Examples
    --------
    >>> current()
    Distributed(rank=0, world_size=1, local_rank=0, backend=None)
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return Distributed()
    world, rank = dist.get_world_size(), dist.get_rank()
    local = _LOCAL_RANK[0] if _LOCAL_RANK else rank
    return Distributed(rank, world, local, str(dist.get_backend()))


_LOCAL_RANK: list[int] = []  # this process's LOCAL_RANK, set by init_from_environment


def choose_backend(device: str = "auto") -> str:
    """``"nccl"`` when ``device`` resolves to CUDA, else ``"gloo"``.

    Examples
    --------
    >>> choose_backend("cpu")
    'gloo'
    """
    from medimg.training.device import select_device

    return "nccl" if select_device(device).type == "cuda" else "gloo"


def _env_int(environ: Mapping[str, str], name: str) -> int:
    value = environ.get(name, "")
    try:
        return int(value)
    except ValueError:
        raise ConfigError(
            f"environment variable {name} must be an integer (torchrun sets it), got {value!r}; "
            "start the run with torchrun or medimg train --nproc N"
        ) from None


def init_from_environment(environ: Mapping[str, str], *, device: str = "auto") -> Distributed:
    """Join the process group torchrun described in ``environ``; a world of one without it.

    Parameters
    ----------
    environ : mapping of str to str
        The process environment (``os.environ``); ``WORLD_SIZE`` absent or ``1`` means a
        single process.
    device : str
        The training device setting; decides the backend (:func:`choose_backend`) and, on
        CUDA, selects GPU ``LOCAL_RANK``.

    Returns
    -------
    Distributed

    Raises
    ------
    ConfigError
        When a variable is not an integer, or the ranks outnumber this node's GPUs.
    """
    import torch
    import torch.distributed as dist

    if "WORLD_SIZE" not in environ or _env_int(environ, "WORLD_SIZE") <= 1:
        return current()
    if dist.is_initialized():
        return current()
    local = _env_int(environ, "LOCAL_RANK")
    backend = choose_backend(device)
    if backend == "nccl":
        if local >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {local} needs a GPU of its own, got {torch.cuda.device_count()} "
                "on this node; start at most one process per GPU (--nproc-per-node)"
            )
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend)  # env:// rendezvous: MASTER_ADDR, MASTER_PORT
    _LOCAL_RANK[:] = [local]
    ctx = current()
    logger.debug("rank %d of %d (%s) joined", ctx.rank, ctx.world_size, backend)
    return ctx


def rank_device(name: str = "auto", ctx: Distributed | None = None) -> torch.device:
    """The device of this rank: :func:`~medimg.training.select_device`, on CUDA GPU ``LOCAL_RANK``.

    Examples
    --------
    >>> rank_device("cpu")
    device(type='cpu')
    """
    import torch

    from medimg.training.device import select_device

    ctx = ctx or current()
    device = select_device(name)
    if device.type == "cuda" and ctx.enabled:
        return torch.device("cuda", ctx.local_rank)
    return device


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast(value: T, ctx: Distributed | None = None) -> T:
    """Rank 0's ``value`` on every rank (picklable objects; tensors travel on the CPU)."""
    import torch.distributed as dist

    ctx = ctx or current()
    if not ctx.enabled:
        return value
    box: list[Any] = [value if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    result: T = box[0]
    return result


def gather(value: T, ctx: Distributed | None = None) -> list[T]:
    """Every rank's ``value``, in rank order, on every rank."""
    import torch.distributed as dist

    ctx = ctx or current()
    if not ctx.enabled:
        return [value]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, value)
    return out


def main_first(work: Callable[[], T], ctx: Distributed | None = None) -> T:
    """Run ``work`` on rank 0, then on the others (e.g. to fill a cache the others reuse)."""
    import torch.distributed as dist

    ctx = ctx or current()
    if not ctx.enabled:
        return work()
    if ctx.is_main:
        result = work()
        dist.barrier()
        return result
    dist.barrier()
    return work()


def rank_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of an ``n``-row batch that ``rank`` trains on.

    Contiguous shares whose sizes differ by at most one, the larger ones first.

    Examples
    --------
    >>> [rank_bounds(5, r, 2) for r in range(2)]
    [(0, 3), (3, 5)]
    >>> rank_bounds(1, 1, 2)
    (1, 1)
    """
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


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

    def shard(
        self, inputs: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Rows of a global batch this rank trains on, and its loss weight ``n_r * world / n``."""
        if not self.ctx.enabled:
            return inputs, target, 1.0
        n = int(inputs.shape[0])
        start, stop = rank_bounds(n, self.ctx.rank, self.ctx.world_size)
        if stop == start:  # a batch smaller than the world: one row, no weight
            return inputs[:1], target[:1], 0.0
        weight = (stop - start) * self.ctx.world_size / n
        return inputs[start:stop], target[start:stop], weight

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
