"""Batches sliced from in-memory tensors, and a shuffle that a resumed run replays exactly."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler


class TensorBatchDataset(Dataset):
    """Like ``TensorDataset``, but a whole batch is one indexing operation.

    ``DataLoader`` hands ``__getitems__`` the batch's indices, so rows are never collated one by one;
    Lightning's ``DistributedSampler`` injection still works because batching stays the DataLoader's.
    """

    def __init__(self, *tensors: torch.Tensor) -> None:
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("TensorBatchDataset needs tensors of equal length")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return tuple(t[index] for t in self.tensors)

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return tuple(t[index] for t in self.tensors)


def keep_batch(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """``collate_fn`` for :class:`TensorBatchDataset`: the batch is already made."""
    return batch


class EpochShuffleSampler(RandomSampler):
    """A random permutation that depends only on ``seed`` and the epoch.

    Lightning calls ``set_epoch`` at the start of every epoch, so a run resumed from a checkpoint sees
    the same batches as one that never stopped. Subclassing ``RandomSampler`` tells Lightning the
    loader shuffles, so under DDP it swaps in a shuffling ``DistributedSampler``.
    """

    def __init__(self, data_source: Sequence, seed: int = 0) -> None:
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


def tensor_loader(
    dataset: TensorBatchDataset,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A loader over in-memory tensors: one indexing operation per batch."""
    return seeded_loader(dataset, batch_size, shuffle, seed, num_workers, pin_memory, keep_batch)


def seeded_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
    collate_fn: Callable | None = None,
    batch_sampler: Sampler | None = None,
) -> DataLoader:
    """A DataLoader whose shuffle and worker seeds depend only on ``seed`` and the epoch."""
    sampler = EpochShuffleSampler(dataset, seed) if shuffle and batch_sampler is None else None
    batching = (
        {"batch_sampler": batch_sampler}
        if batch_sampler is not None
        else {"batch_size": batch_size, "sampler": sampler}
    )
    return DataLoader(
        dataset,
        **batching,
        collate_fn=collate_fn,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        # An iterator draws its worker base seed from this generator rather than the global RNG:
        # Lightning creates iterators at different moments in a resumed run, and a draw from the
        # global RNG there would shift every dropout mask after it.
        generator=torch.Generator().manual_seed(seed),
    )
