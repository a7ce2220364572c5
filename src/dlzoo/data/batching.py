"""Batches sliced from in-memory tensors, and a batch order that resumes exactly and shards under DDP.

Every train, val and test loader of dlzoo is a :class:`ShardedBatchSampler` (a ``DistributedSampler``
subclass, so Lightning leaves it alone) yielding whole batches of indices. One process sees every
batch; under DDP each rank takes its share of the same batches:

- training: every rank gets the same number of batches (DDP steps in lockstep) and every row is
  used exactly once per epoch: the batches that do not divide by the world size are merged and
  cut into one smaller batch per rank;
- evaluation: every row is scored on exactly one rank, nothing is repeated, so metrics synced
  across ranks equal a single-process computation (Lightning's own ``DistributedSampler`` repeats
  rows to even the ranks up, which skews validation metrics and the "best" checkpoint).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from dlzoo.networks.layers import BackboneFeatures


def world() -> tuple[int, int]:
    """``(world_size, rank)`` of the running process group, ``(1, 0)`` without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class TensorBatchDataset(Dataset):
    """Like ``TensorDataset``, but a whole batch is one indexing operation (``dataset[[i, j, ...]]``)."""

    def __init__(self, *tensors: torch.Tensor) -> None:
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("TensorBatchDataset needs tensors of equal length")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: int | Sequence[int]) -> tuple[torch.Tensor, ...]:
        if not isinstance(index, int):
            index = torch.as_tensor(index, dtype=torch.long)
        return tuple(t[index] for t in self.tensors)

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
        return self[list(indices)]


class FeatureDataset(TensorBatchDataset):
    """A frozen backbone's ``features`` of each row and its ``targets``, computed once: a batch
    is ``(BackboneFeatures, targets)``, which a backbone-and-head network runs its head on."""

    def __init__(self, features: torch.Tensor, targets: torch.Tensor) -> None:
        super().__init__(features, targets)

    def __getitem__(self, index: int | Sequence[int]) -> tuple[BackboneFeatures, torch.Tensor]:
        features, targets = super().__getitem__(index)
        return BackboneFeatures(features), targets


def keep_batch(batch: Any) -> Any:
    """``collate_fn`` of loaders whose dataset returns whole batches."""
    return batch


class Batched(Dataset):
    """``dataset[indices]`` is the collated batch of those items (item datasets, e.g. images)."""

    def __init__(self, dataset: Dataset, collate_fn: Callable[[list], Any]) -> None:
        self.dataset, self.collate_fn = dataset, collate_fn

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: Sequence[int]) -> Any:
        return self.collate_fn([self.dataset[i] for i in indices])


class ShardedBatchSampler(DistributedSampler):
    """Batches of indices in an order that depends only on ``seed`` and the epoch; this rank's share.

    ``shuffle`` draws a new permutation each epoch (Lightning calls ``set_epoch``), so a resumed run
    sees the batches an uninterrupted one would. With ``lengths`` (texts), shuffled indices are cut
    into pools of ``batch_size * pool_batches``, each pool sorted by length and cut into batches,
    and the batches shuffled: little padding, yet new batches every epoch; without shuffling all
    documents are sorted by length. ``even`` (training) gives every rank the same number of batches
    with each row used once (see the module docstring); otherwise ranks may differ by one batch.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        lengths: Sequence[int] | torch.Tensor | None = None,
        pool_batches: int = 50,
        even: bool | None = None,
        drop_last: bool = False,
    ) -> None:
        replicas, rank = world()
        # the base class only needs len(dataset); it keeps seed, epoch, rank and num_replicas
        super().__init__(range(size), num_replicas=replicas, rank=rank, shuffle=shuffle, seed=seed)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.size, self.batch_size, self.batch_drop_last = size, batch_size, drop_last
        self.lengths = None if lengths is None else torch.as_tensor(lengths)
        if self.lengths is not None and len(self.lengths) != size:
            raise ValueError(f"{len(self.lengths)} lengths for {size} items")
        self.pool_batches = pool_batches
        self.even = shuffle if even is None else even

    def all_batches(self) -> list[torch.Tensor]:
        """Every batch of this epoch, in order, before sharding across ranks."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.lengths is None:
            order = (
                torch.randperm(self.size, generator=generator)
                if self.shuffle
                else torch.arange(self.size)
            )
            batches = list(torch.split(order, self.batch_size))
        elif not self.shuffle:
            order = torch.argsort(self.lengths, stable=True)
            batches = list(torch.split(order, self.batch_size))
        else:
            order = torch.randperm(self.size, generator=generator)
            pool = self.batch_size * self.pool_batches
            batches = []
            for start in range(0, self.size, pool):
                chunk = order[start : start + pool]
                chunk = chunk[torch.argsort(self.lengths[chunk], stable=True)]
                batches += list(torch.split(chunk, self.batch_size))
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
        if self.batch_drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        return batches

    def _shard(self, batches: list[torch.Tensor]) -> list[torch.Tensor]:
        replicas = self.num_replicas
        if replicas == 1:
            return batches
        if not self.even:
            return batches[self.rank :: replicas]
        whole = len(batches) // replicas * replicas
        if whole < len(batches) and sum(len(b) for b in batches[whole:]) < replicas and whole:
            whole -= replicas  # too few rows left for every rank: re-cut the last round too
        mine = batches[:whole][self.rank :: replicas]
        if whole < len(batches):
            rest = torch.cat(batches[whole:])
            if len(rest) < replicas:  # fewer rows than ranks in all: the only repeats
                rest = rest.repeat(replicas // len(rest) + 1)[:replicas]
            mine.append(torch.tensor_split(rest, replicas)[self.rank])
        return mine

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._shard(self.all_batches()):
            yield batch.tolist()

    def __len__(self) -> int:
        if self.lengths is None and not self.batch_drop_last:
            count = -(-self.size // self.batch_size)
        else:
            count = len(self.all_batches())
        if self.num_replicas == 1:
            return count
        if self.even:
            return len(self._shard(self.all_batches()))
        return len(range(self.rank, count, self.num_replicas))


def batch_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
    collate_fn: Callable[[list], Any] | None = None,
    lengths: Sequence[int] | torch.Tensor | None = None,
) -> DataLoader:
    """A train/val/test loader: :class:`ShardedBatchSampler` batches, shuffled per epoch if asked.

    ``dataset[list_of_indices]`` must return a batch (:class:`TensorBatchDataset`); otherwise give
    ``collate_fn`` and items are collated. ``lengths`` buckets texts by length.
    """
    sampler = ShardedBatchSampler(len(dataset), batch_size, shuffle, seed, lengths=lengths)
    if collate_fn is not None:
        dataset = Batched(dataset, collate_fn)
    return DataLoader(
        dataset,
        sampler=sampler,
        batch_size=None,  # the sampler yields whole batches; the dataset makes them
        collate_fn=keep_batch,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        # An iterator draws its worker base seed from this generator rather than the global RNG:
        # Lightning creates iterators at different moments in a resumed run, and a draw from the
        # global RNG there would shift every dropout mask after it.
        generator=torch.Generator().manual_seed(seed),
    )


def ordered_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int = 0,
    pin_memory: bool = False,
    collate_fn: Callable[[list], Any] | None = None,
) -> DataLoader:
    """A predict loader: rows in file order, plain batching (Lightning tracks the indices, and
    under DDP gives each rank its rows without repeats)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        collate_fn=collate_fn or (keep_batch if isinstance(dataset, TensorBatchDataset) else None),
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(0),
    )


Truncation = Literal["head", "tail", "head+tail"]
#: truncation ``head+tail`` keeps this share of the kept tokens from the head, the rest from
#: the tail (Sun et al. 2019, "How to Fine-Tune BERT for Text Classification?": 128 + 382 of
#: 510 was best on IMDB)
HEAD_SHARE = 0.25
TRUNCATIONS = ("head", "tail", "head+tail")


def check_truncation(truncation: str) -> None:
    if truncation not in TRUNCATIONS:
        raise ValueError(f"truncation must be one of {TRUNCATIONS}, got {truncation!r}")


def head_budget(budget: int) -> int:
    """Tokens ``head+tail`` keeps from the head, of ``budget``."""
    return max(1, round(budget * HEAD_SHARE)) if budget > 1 else budget


def cut_ids(ids: Sequence[int] | torch.Tensor, budget: int | None, truncation: str = "head") -> Any:
    """``ids`` cut to ``budget`` tokens: the first (``head``), the last (``tail``), or a
    quarter from the head and the rest from the tail (``head+tail``)."""
    if not budget or len(ids) <= budget:
        return ids
    if truncation == "tail":  # reviews often end with the verdict
        return ids[len(ids) - budget :]
    if truncation == "head+tail":
        head = head_budget(budget)
        tail = ids[len(ids) - (budget - head) :]
        if isinstance(ids, torch.Tensor):
            return torch.cat([ids[:head], tail])
        return list(ids[:head]) + list(tail)
    return ids[:budget]


class TokenDataset(Dataset):
    """Documents as slices of one flat id tensor; ``(ids, label)`` or ``(ids,)`` items.

    ``prefix`` and ``suffix`` are special tokens around every document (a pretrained
    encoder's ``[CLS]`` and ``[SEP]``), counted in ``max_length``."""

    def __init__(
        self,
        ids: torch.Tensor,
        offsets: torch.Tensor,
        documents: torch.Tensor,
        labels: torch.Tensor | None,
        max_length: int | None,
        truncation: str = "head",
        prefix: Sequence[int] = (),
        suffix: Sequence[int] = (),
    ) -> None:
        self.ids, self.offsets, self.documents = ids, offsets, documents
        self.labels, self.max_length, self.truncation = labels, max_length, truncation
        self.prefix = torch.tensor(list(prefix), dtype=ids.dtype)
        self.suffix = torch.tensor(list(suffix), dtype=ids.dtype)
        special = len(self.prefix) + len(self.suffix)
        if max_length is not None and max_length <= special:
            raise ValueError(f"max_length ({max_length}) must exceed the {special} special tokens")
        self.budget = max_length - special if max_length else None

    @classmethod
    def of_lists(
        cls,
        encoded: Sequence[Sequence[int]],
        max_length: int | None,
        truncation: str = "head",
        **specials: Sequence[int],
    ) -> TokenDataset:
        """Documents given as lists of ids (texts to predict), without targets."""
        offsets = torch.tensor([0, *itertools.accumulate(len(e) for e in encoded)])
        flat = torch.tensor([i for ids in encoded for i in ids], dtype=torch.int64)
        return cls(
            flat, offsets, torch.arange(len(encoded)), None, max_length, truncation, **specials
        )

    def unlabelled(self) -> TokenDataset:
        """The same documents without their targets (what predict loaders yield)."""
        return TokenDataset(
            self.ids,
            self.offsets,
            self.documents,
            None,
            self.max_length,
            self.truncation,
            self.prefix.tolist(),
            self.suffix.tolist(),
        )

    def __len__(self) -> int:
        return len(self.documents)

    @property
    def full_lengths(self) -> torch.Tensor:
        """Token counts of the documents before ``max_length`` cuts them."""
        doc = self.documents
        return self.offsets[doc + 1] - self.offsets[doc]

    @property
    def lengths(self) -> torch.Tensor:
        lengths = self.full_lengths
        lengths = lengths.clamp(max=self.budget) if self.budget else lengths
        return lengths + len(self.prefix) + len(self.suffix)

    def __getitem__(self, index: int) -> tuple:
        doc = int(self.documents[index])
        start, end = int(self.offsets[doc]), int(self.offsets[doc + 1])
        tokens = cut_ids(self.ids[start:end], self.budget, self.truncation)
        if len(self.prefix) or len(self.suffix):
            tokens = torch.cat([self.prefix, tokens, self.suffix])
        return (tokens,) if self.labels is None else (tokens, self.labels[index])
