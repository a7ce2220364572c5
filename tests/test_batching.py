"""Batch order: exact resumes, and DDP shards that score every row once."""

from __future__ import annotations

import pytest
import torch

from dlzoo.data.batching import ShardedBatchSampler


def _shards(size: int, world: int, **kwargs) -> list[list[list[int]]]:
    shards = []
    for rank in range(world):
        sampler = ShardedBatchSampler(size, **kwargs)
        sampler.num_replicas, sampler.rank = world, rank  # as a process of a DDP group sees it
        sampler.set_epoch(3)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        shards.append(batches)
    return shards


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("size", [19, 20, 64, 65])
@pytest.mark.parametrize("bucketed", [False, True])
def test_training_shards_are_even_and_use_every_row_once(
    world: int, size: int, bucketed: bool
) -> None:
    lengths = torch.randint(1, 50, (size,)) if bucketed else None
    shards = _shards(size, world, batch_size=8, shuffle=True, seed=1, lengths=lengths)
    assert len({len(batches) for batches in shards}) == 1  # DDP ranks step in lockstep
    rows = sorted(i for batches in shards for batch in batches for i in batch)
    assert rows == list(range(size))
    assert all(len(batch) > 0 for batches in shards for batch in batches)


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("size", [19, 20, 41])
def test_evaluation_shards_score_every_row_once(world: int, size: int) -> None:
    for lengths in (None, torch.randint(1, 50, (size,))):
        shards = _shards(size, world, batch_size=4, lengths=lengths)
        rows = sorted(i for batches in shards for batch in batches for i in batch)
        assert rows == list(range(size))  # no padding repeats: metrics equal one process


def test_one_process_sees_every_batch_in_an_order_fixed_by_seed_and_epoch() -> None:
    sampler = ShardedBatchSampler(50, batch_size=8, shuffle=True, seed=4)
    first = list(sampler)
    assert [len(b) for b in first] == [8] * 6 + [2]
    assert sorted(i for b in first for i in b) == list(range(50))
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first
    assert list(ShardedBatchSampler(10, batch_size=4)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
