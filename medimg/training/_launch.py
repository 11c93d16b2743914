"""``medimg train --nproc N``: torchrun's elastic launcher, started in this process.

The launcher (:mod:`torch.distributed.run`, what ``torchrun`` runs) is called in-process rather
than as a ``torchrun`` subprocess so that a failing rank's own exit status comes back: the
launcher raises :class:`~torch.distributed.elastic.multiprocessing.errors.ChildFailedError`
holding every failed rank's exit code, and ``medimg`` exits with the worst of them (2 for a bad
input, as a single process would), where ``torchrun`` itself always exits 1. The agent starts
``N`` worker processes of ``python -m medimg train ...`` (the same arguments, ``--nproc``
removed) and joins them through a c10d rendezvous on ``127.0.0.1`` at a free port, which is
``torchrun --standalone`` bound to the loopback address.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from medimg.errors import ConfigError

__all__ = ["launch_local", "without_option"]

logger = logging.getLogger(__name__)


def without_option(argv: Sequence[str], flag: str) -> list[str]:
    """``argv`` without ``flag VALUE`` / ``flag=VALUE``.

    Examples
    --------
    >>> without_option(["train", "--nproc", "2", "--out", "d"], "--nproc")
    ['train', '--out', 'd']
    >>> without_option(["train", "--nproc=2"], "--nproc")
    ['train']
    """
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == flag:
            skip = True
        elif not arg.startswith(flag + "="):
            out.append(arg)
    return out


def launch_local(nproc: int, argv: Sequence[str]) -> int:
    """Run ``python -m medimg ARGV`` in ``nproc`` processes on this machine; the exit status.

    Parameters
    ----------
    nproc : int
        Processes (ranks), >= 1; at most one per GPU on CUDA.
    argv : sequence of str
        The ``medimg`` arguments of each rank (without ``--nproc``).

    Returns
    -------
    int
        0 when every rank succeeded, else the largest exit code of a failed rank.

    Raises
    ------
    ConfigError
        When ``nproc`` < 1.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    args = get_args_parser().parse_args(
        ["--nnodes", "1", "--nproc-per-node", str(nproc), "--rdzv-backend", "c10d",
         "--rdzv-endpoint", "127.0.0.1:0", "--rdzv-id", str(uuid.uuid4()),
         "--local-addr", "127.0.0.1", "--max-restarts", "0", "-m", "medimg", *argv]
    )  # fmt: skip
    logger.info("starting %d ranks: python -m medimg %s", nproc, " ".join(argv))
    try:
        run(args)  # type: ignore[no-untyped-call]  # torch leaves it unannotated
    except ChildFailedError as exc:
        codes = [f.exitcode for f in exc.failures.values()]
        logger.error("ranks failed with exit codes %s", codes)
        return max([c for c in codes if c > 0] or [1])
    return 0
