"""``medimg predict --ray [ADDRESS|local]`` and the per-case resources of its Ray tasks."""

from __future__ import annotations

import argparse
from typing import Any

from medimg.cli import gb_in_bytes, positive_float, positive_int

__all__ = ["add_ray_options", "ray_config"]


def _non_negative_float(text: str) -> float:
    if text.strip() in ("0", "0.0"):
        return 0.0
    return positive_float(text)


def add_ray_options(p: argparse.ArgumentParser) -> None:
    """Add ``--ray``, ``--ray-cpus``, ``--ray-gpus``, ``--ray-memory``, ``--ray-local-cpus``."""
    a = p.add_argument
    a("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
      help="one Ray task per case (pip install medimg[ray]): 'local' (the default when given "
      "without a value) starts a cluster on this machine for the run; an address (auto, "
      "HOST:6379, ray://HOST:10001) joins a running one; outputs go to --out, which every "
      "node must reach under the same path")  # fmt: skip
    a("--ray-cpus", type=positive_float, default=1.0, metavar="N",
      help="CPUs of each case's task (and its torch threads) (default: 1)")  # fmt: skip
    a("--ray-gpus", type=_non_negative_float, default=0.0, metavar="N",
      help="GPUs of each case's task, fractions allowed (default: 0)")  # fmt: skip
    a("--ray-memory", type=gb_in_bytes, default=None, metavar="GB",
      help="memory each case's task reserves, in GiB (Ray schedules by it)")  # fmt: skip
    a("--ray-local-cpus", type=positive_int, default=None, metavar="N",
      help="with --ray local: CPUs of the local cluster (default: all)")  # fmt: skip


def ray_config(args: argparse.Namespace) -> Any:
    """The :class:`~medimg.inference.ray_batch.RayConfig` of ``args``; None without ``--ray``.

    Raises
    ------
    ConfigError
        When a Ray option is given without ``--ray``, or ``--ray-local-cpus`` with an address.
    """
    from medimg.errors import ConfigError
    from medimg.inference.ray_batch import RayConfig

    extras = {"--ray-gpus": args.ray_gpus != 0.0, "--ray-cpus": args.ray_cpus != 1.0,
              "--ray-memory": args.ray_memory is not None,
              "--ray-local-cpus": args.ray_local_cpus is not None}  # fmt: skip
    if args.ray is None:
        given = [flag for flag, set_ in extras.items() if set_]
        if given:
            raise ConfigError(
                f"{given[0]} must come with --ray [ADDRESS|local], got it alone; add --ray or "
                "drop it"
            )
        return None
    if args.ray != "local" and args.ray_local_cpus is not None:
        raise ConfigError(
            f"--ray-local-cpus must come with --ray local, got --ray {args.ray}; the cluster "
            "at an address has its own CPUs"
        )
    return RayConfig(address=args.ray, num_cpus=args.ray_cpus, num_gpus=args.ray_gpus,
                     memory_bytes=args.ray_memory, local_cpus=args.ray_local_cpus)  # fmt: skip
