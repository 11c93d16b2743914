"""The pieces of distributed training and Ray prediction that need no second process."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medimg.errors import ConfigError
from medimg.inference.ray_batch import RayConfig
from medimg.training._launch import without_option
from medimg.training.distributed import (
    Distributed,
    broadcast,
    current,
    gather,
    init_from_environment,
    main_first,
    rank_bounds,
)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 50), world=st.integers(1, 8))
def test_rank_shares_tile_the_batch(n: int, world: int) -> None:
    bounds = [rank_bounds(n, r, world) for r in range(world)]
    assert bounds[0][0] == 0
    assert bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)


def test_outside_torchrun_the_world_is_one_process() -> None:
    assert init_from_environment({}) == Distributed()
    assert init_from_environment({"WORLD_SIZE": "1"}) == Distributed()
    ctx = current()
    assert (ctx.is_main, ctx.enabled) == (True, False)
    assert broadcast(3) == 3
    assert gather("x") == ["x"]
    assert main_first(lambda: 7) == 7


def test_a_garbled_torchrun_environment_is_named() -> None:
    with pytest.raises(ConfigError, match=r"WORLD_SIZE must be an integer.*torchrun"):
        init_from_environment({"WORLD_SIZE": "two"})


def test_nproc_is_removed_from_the_relaunched_arguments() -> None:
    argv = ["train", "--nproc", "2", "--out", "d", "--nproc=3", "--epochs", "1"]
    assert without_option(argv, "--nproc") == ["train", "--out", "d", "--epochs", "1"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"address": ""}, "--ray needs an address"),
        ({"num_cpus": 0.0}, "--ray-cpus must be > 0"),
        ({"num_gpus": -1.0}, "--ray-gpus >= 0"),
        ({"memory_bytes": 0}, "--ray-memory must be > 0"),
        ({"max_retries": -1}, "max_retries must be >= 0"),
        ({"local_cpus": 0}, "local_cpus >= 1"),
    ],
)
def test_ray_settings_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RayConfig(**kwargs)  # type: ignore[arg-type]
