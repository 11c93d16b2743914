"""Data-parallel training over processes: torchrun starts them, this module joins them up.

``torchrun --nproc-per-node N -m medimg train ...`` starts ``N`` copies of ``medimg train``
with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their
environment. The command line hands that environment to :func:`init_from_environment`, which
joins the process group (``gloo`` on the CPU, ``nccl`` when the run trains on CUDA, one GPU per
local rank); :func:`current` then describes this process to the training engine, which behaves
as follows in every task:

* **Training cases.** Each rank preprocesses and holds only its own shard of the training
  cases (:func:`training_shard`, DistributedSampler-style: a permutation seeded by the run's
  seed, padded by repeating its first cases to a multiple of the world size, every
  ``world_size``-th case from position ``rank``; the same shard every epoch), shuffles it and
  draws its patches from its own random stream (``rank`` of
  :func:`~medimg.training.epoch_batches`), so memory and preprocessing shrink with the ranks.
* **Global batch and learning rate.** ``--batch-size`` is the batch of one rank, as in
  :class:`torch.utils.data.DistributedSampler`: a step of ``N`` ranks trains on a global
  batch of ``N * batch_size`` rows (the sum of the per-rank batches), and an epoch has about
  ``1 / N`` of one process's steps. medimg does not scale the learning rate: the synchronised
  gradient is the gradient of the mean loss over the global batch, what one process would
  compute with ``--batch-size N * batch_size``; for the same number of updates per epoch as
  one process, divide the per-rank batch by ``N``, or raise the learning rate as you would for
  a larger batch (e.g. linearly, with warm-up).
* **Gradients.** The model and its loss run inside one
  :class:`~torch.nn.parallel.DistributedDataParallel` module, which averages the gradients
  over ranks. Each rank's loss is weighted by ``n_r * N / n`` (its ``n_r`` of the step's ``n``
  rows), so for a loss that is a mean over samples (cross-entropy) the averaged gradient
  equals the single-process gradient of the global batch. ``dice_ce``'s batch Dice sums its
  overlaps over every rank's rows (:func:`all_reduce_with_grad`), so it too is the global
  batch's. The logged loss is the same weighted sum, identical on every rank.
* **Validation.** Every rank scores its shard of the validation cases
  (:func:`validation_shard`: every ``world_size``-th case, unpadded) and the per-case outputs
  are gathered in case order (:func:`gather_validation`) before the metric (Dice mean over
  cases, AUC over the probabilities, CPM over the findings), so every rank computes the
  single-process metric and agrees on the best checkpoint.
* **Checkpoints, logs, run record.** Rank 0 alone writes ``last.pt``, ``best.pt``,
  TensorBoard, the model record and ``run.json`` (which states ``world_size``). Checkpoints
  keep every rank's random-generator state; a resumed run has rank 0 read ``last.pt`` and
  broadcast it, so other nodes need no copy of the run folder. Resume with the same world
  size to continue exactly (the shards and random streams are per rank).

Notes
-----
A run of one process is unchanged by all this: its shard is every case in manifest order and
its stream is ``(seed, epoch)``. What is not exact against one process: BatchNorm normalises
each rank's rows (converted to ``SyncBatchNorm`` on CUDA; the CPU has no synchronised
BatchNorm), and detection's RetinaNet loss normalises by each rank's matched anchors, so there
DDP is the usual mean of per-rank losses. The padded training shards repeat up to
``N - 1`` cases once per epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from medimg.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = [
    "Distributed",
    "all_reduce_with_grad",
    "broadcast",
    "choose_backend",
    "current",
    "gather",
    "gather_validation",
    "init_from_environment",
    "interleave",
    "main_first",
    "rank_device",
    "shutdown",
    "training_shard",
    "validation_shard",
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


def shutdown(*, synchronise: bool = True) -> None:
    """Leave the process group, if this process joined one.

    With ``synchronise`` (a rank leaving normally), every rank first waits at a barrier, so
    none tears its group down while another still has a collective in flight with it: a rank
    that did (the non-main ranks return as soon as training ends) aborted in gloo's teardown
    ("terminate called without an active exception", exit -6) in about one of eight two-rank
    test runs. A rank leaving on an error does not wait (its peers may never arrive).
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if synchronise:
            dist.barrier()
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


def training_shard(items: Sequence[T], *, seed: int, ctx: Distributed | None = None) -> list[T]:
    """The training cases of this rank: DistributedSampler's partition, fixed for the run.

    The ``n`` items are permuted by ``seed``, padded by repeating the first ones of the
    permutation to ``N * ceil(n / N)``, and rank ``r`` takes positions ``r, r + N, ...``;
    its shard keeps the input order. Every rank gets ``ceil(n / N)`` items (so every rank takes
    the same number of steps) and a world of one gets ``items`` unchanged.

    Examples
    --------
    >>> training_shard(list("abcde"), seed=0, ctx=Distributed(0, 2))
    ['a', 'b', 'd']
    >>> training_shard(list("abcde"), seed=0, ctx=Distributed(1, 2))  # 'a' pads it to 3
    ['a', 'c', 'e']
    >>> training_shard(list("abc"), seed=0)
    ['a', 'b', 'c']
    """
    import numpy as np

    ctx = ctx or current()
    if not ctx.enabled or not items:
        return list(items)
    order = [int(i) for i in np.random.default_rng([seed, 7]).permutation(len(items))]
    total = -(-len(items) // ctx.world_size) * ctx.world_size
    padded = (order * (total // len(order) + 1))[:total]
    return [items[i] for i in sorted(padded[ctx.rank :: ctx.world_size])]


def validation_shard(items: Sequence[T], ctx: Distributed | None = None) -> list[T]:
    """The validation cases of this rank: ``items[rank::world_size]`` (each case once).

    Examples
    --------
    >>> validation_shard(list("abcde"), Distributed(1, 2))
    ['b', 'd']
    """
    ctx = ctx or current()
    return list(items[ctx.rank :: ctx.world_size])


def interleave(shards: Sequence[Sequence[T]]) -> list[T]:
    """Inverse of :func:`validation_shard`: every rank's results back in case order.

    Examples
    --------
    >>> interleave([["a", "c", "e"], ["b", "d"]])
    ['a', 'b', 'c', 'd', 'e']
    """
    n = sum(len(s) for s in shards)
    return [shards[i % len(shards)][i // len(shards)] for i in range(n)]


def gather_validation(local: Sequence[T], ctx: Distributed | None = None) -> list[T]:
    """Every rank's per-case outputs of its :func:`validation_shard`, in case order, on all ranks.

    A world of one gets ``list(local)``.
    """
    ctx = ctx or current()
    if not ctx.enabled:
        return list(local)
    return interleave(gather(list(local), ctx))


def all_reduce_with_grad(tensor: torch.Tensor, ctx: Distributed | None = None) -> torch.Tensor:
    """The sum of ``tensor`` over ranks, differentiable (``tensor`` itself in a world of one).

    The backward pass sums the ranks' gradients as well
    (:func:`torch.distributed.nn.functional.all_reduce`), so a loss computed from sums over
    every rank's rows (batch Dice) back-propagates into each rank's rows as the one-process
    loss of the global batch would, once DDP averages the gradients.
    """
    ctx = ctx or current()
    if not ctx.enabled:
        return tensor
    from torch.distributed.nn.functional import all_reduce

    reduced: torch.Tensor = all_reduce(tensor)  # type: ignore[no-untyped-call]  # torch leaves it unannotated
    return reduced
