"""The pieces of distributed training and Ray prediction that need no second process."""

from __future__ import annotations

import itertools

import pytest
import torch
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
    interleave,
    main_first,
    training_shard,
    validation_shard,
)
from medimg.training.losses import segmentation_loss


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 40), world=st.integers(1, 6), seed=st.integers(0, 3))
def test_training_shards_cover_every_case_in_equal_parts(n: int, world: int, seed: int) -> None:
    items = list(range(n))
    shards = [training_shard(items, seed=seed, ctx=Distributed(r, world)) for r in range(world)]
    if n == 0:
        assert shards == [[]] * world
        return
    assert {len(s) for s in shards} == {-(-n // world)}  # ceil(n / N) each: equal steps
    assert set(itertools.chain(*shards)) == set(items)
    repeats = sum(map(len, shards)) - n
    assert 0 <= repeats < world  # padding repeats fewer than N cases
    assert all(s == sorted(s) for s in shards)  # the input order, within a shard
    again = [training_shard(items, seed=seed, ctx=Distributed(r, world)) for r in range(world)]
    assert again == shards  # the seed alone decides (the same shard every epoch)


def test_one_process_keeps_every_case_in_order() -> None:
    items = list("edcba")
    assert training_shard(items, seed=5, ctx=Distributed()) == items
    assert validation_shard(items, Distributed()) == items


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 30), world=st.integers(1, 6))
def test_gathered_validation_shards_come_back_in_case_order(n: int, world: int) -> None:
    items = list(range(n))
    shards = [validation_shard(items, Distributed(r, world)) for r in range(world)]
    assert sum(map(len, shards)) == n  # unpadded: each case scored once
    assert interleave(shards) == items


def test_the_global_dice_loss_equals_monais_in_one_process() -> None:
    """GlobalDiceCE (the DDP form of dice_ce) against MONAI's DiceCELoss: float rounding only."""
    from medimg.training._global_dice import GlobalDiceCE

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 3, 6, 5, 4, generator=gen, requires_grad=True)
    label = torch.randint(0, 3, (3, 1, 6, 5, 4), generator=gen)
    for kind in ("dice_ce", "dice"):
        monai = segmentation_loss(kind, distributed=False)
        ours = segmentation_loss(kind, distributed=True)
        assert isinstance(ours, GlobalDiceCE)
        a, b = monai(logits, label), ours(logits, label)
        (ga,) = torch.autograd.grad(a, logits)
        (gb,) = torch.autograd.grad(b, logits)
        assert b.item() == pytest.approx(a.item(), rel=1e-6)
        assert torch.allclose(ga, gb, rtol=1e-5, atol=1e-8)
    assert not isinstance(segmentation_loss("dice_ce"), GlobalDiceCE)  # one process: MONAI's
    assert not isinstance(segmentation_loss("ce", distributed=True), GlobalDiceCE)


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
