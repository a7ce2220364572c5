"""The small text layer torchtext used to provide: tokenizer, vocabulary, vectors, bucketing.

- :func:`get_tokenizer`: spaCy's rule-based English tokenizer (``spacy.blank("en")``, no model
  download) or a fast regular expression; lower-cased; HTML line breaks become spaces.
- :class:`TokenizedCorpus`: every document tokenised once (both cores, a progress bar), stored as
  one flat tensor of ids into the corpus's own token list, cached on disk; any vocabulary then
  numericalises it with one indexing operation.
- :class:`Vocabulary`: ``<unk>`` = 0, ``<pad>`` = 1, then tokens by frequency; a plain list, so it
  is saved in checkpoints and loads with ``weights_only=True``.
- :func:`load_vectors`: rows of a fastText ``.vec`` or GloVe ``.txt`` file (plain or ``.gz``),
  streamed line by line, aligned to a vocabulary; unknown words and padding stay zero.
- :class:`BucketBatchSampler` and :func:`pad_batch`: batches of similar length, padded per batch.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Literal

import torch
from torch.nn.utils.rnn import pad_sequence
from tqdm.auto import tqdm

from dlzoo.data.batching import ShardedBatchSampler

log = logging.getLogger(__name__)

TokenizerName = Literal["spacy", "simple"]
UNK, PAD = "<unk>", "<pad>"
HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
SIMPLE_TOKEN = re.compile(r"[\w]+(?:'[\w]+)?|[^\w\s]")
#: bump when tokenisation changes, so old caches are not reused
TOKENIZER_VERSION = 1


def clean_text(text: str) -> str:
    """HTML line breaks (``<br />``, common in IMDB reviews) become spaces."""
    return HTML_BREAK.sub(" ", text)


_SPACY = {}


def _spacy_tokenizer() -> Callable[[str], object]:
    if "en" not in _SPACY:  # one blank pipeline per process; building it takes ~0.1 s
        import spacy

        _SPACY["en"] = spacy.blank("en").tokenizer
    return _SPACY["en"]


def tokenize(text: str, tokenizer: TokenizerName = "spacy", lower: bool = True) -> list[str]:
    """Tokens of one text: ``spacy`` (rule-based English) or ``simple`` (words and punctuation)."""
    text = clean_text(text)
    if lower:
        text = text.lower()
    if tokenizer == "spacy":
        return [t.text for t in _spacy_tokenizer()(text) if not t.is_space]
    if tokenizer == "simple":
        return SIMPLE_TOKEN.findall(text)
    raise ValueError(f"tokenizer must be 'spacy' or 'simple', got {tokenizer!r}")


def get_tokenizer(tokenizer: TokenizerName = "spacy", lower: bool = True) -> Callable[[str], list]:
    if tokenizer not in ("spacy", "simple"):
        raise ValueError(f"tokenizer must be 'spacy' or 'simple', got {tokenizer!r}")
    return partial(tokenize, tokenizer=tokenizer, lower=lower)


def _tokenize_chunk(texts: list[str], tokenizer: TokenizerName, lower: bool) -> list[list[str]]:
    return [tokenize(t, tokenizer, lower) for t in texts]


class TokenizedCorpus:
    """Documents as ids into ``tokens`` (the corpus's distinct tokens, in first-seen order).

    ``ids`` is one flat ``int32`` tensor; document ``i`` is ``ids[offsets[i]:offsets[i + 1]]``.
    """

    def __init__(
        self, tokens: list[str], ids: torch.Tensor, offsets: torch.Tensor, extra: dict | None = None
    ) -> None:
        self.tokens, self.ids, self.offsets = tokens, ids, offsets
        self.extra = extra or {}  # per-document metadata cached with it (labels, splits)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        tokenizer: TokenizerName = "spacy",
        lower: bool = True,
        workers: int | None = None,
        progress: bool = True,
    ) -> TokenizedCorpus:
        """Tokenise ``texts`` in ``workers`` processes (default: every core), with a progress bar."""
        workers = workers or os.cpu_count() or 1
        chunk = 2000
        chunks = [list(texts[i : i + chunk]) for i in range(0, len(texts), chunk)]
        work = partial(_tokenize_chunk, tokenizer=tokenizer, lower=lower)
        bar = tqdm(total=len(texts), desc="tokenising", unit="doc", disable=not progress)
        index: dict[str, int] = {}
        flat: list[int] = []
        offsets = [0]

        def add(docs: list[list[str]]) -> None:
            for doc in docs:
                flat.extend(index.setdefault(token, len(index)) for token in doc)
                offsets.append(len(flat))
            bar.update(len(docs))

        if workers > 1 and len(chunks) > 1:
            with ProcessPoolExecutor(workers) as pool:
                for docs in pool.map(work, chunks):
                    add(docs)
        else:
            for texts_chunk in chunks:
                add(work(texts_chunk))
        bar.close()
        return cls(
            list(index),
            torch.tensor(flat, dtype=torch.int32),
            torch.tensor(offsets, dtype=torch.int64),
        )

    @classmethod
    def from_ids(cls, documents: Sequence[Sequence[int]]) -> TokenizedCorpus:
        """Documents already as final ids (a pretrained encoder's subwords): ``tokens`` is empty
        and ``ids`` are the ids themselves."""
        lengths = torch.tensor([0, *(len(d) for d in documents)], dtype=torch.int64)
        flat = [i for document in documents for i in document]
        return cls([], torch.tensor(flat, dtype=torch.int32), lengths.cumsum(0))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # one per process (DDP ranks)
        state = {
            "tokens": self.tokens,
            "ids": self.ids,
            "offsets": self.offsets,
            "extra": self.extra,
        }
        torch.save(state, tmp)
        tmp.replace(path)  # never a half-written cache

    @classmethod
    def load(cls, path: Path) -> TokenizedCorpus:
        state = torch.load(path, weights_only=True)
        return cls(state["tokens"], state["ids"], state["offsets"], state.get("extra"))

    @classmethod
    def cached(
        cls,
        read: Callable[[], tuple[Sequence[str], dict]],
        key: str,
        cache_dir: Path | None,
        tokenizer: TokenizerName = "spacy",
        lower: bool = True,
        workers: int | None = None,
        build: Callable[[Sequence[str]], TokenizedCorpus] | None = None,
    ) -> TokenizedCorpus:
        """The corpus cached under ``key`` (data identity and settings), or ``read()`` it, tokenise
        and cache it. ``read`` returns the texts and per-document metadata to keep with them.
        ``build`` tokenises instead of :meth:`build` (``tokenizer`` then only names it in the
        key: a pretrained tokenizer's digest)."""
        digest = hashlib.sha256(
            f"{key}|{tokenizer}|{lower}|v{TOKENIZER_VERSION}".encode()
        ).hexdigest()[:24]
        path = cache_dir / f"tokens-{digest}.pt" if cache_dir is not None else None
        if path is not None and path.is_file():
            try:
                corpus = cls.load(path)
                log.info("tokenised corpus read from cache %s", path)
                return corpus
            except (OSError, RuntimeError, KeyError) as err:
                log.warning("ignoring unreadable token cache %s (%s)", path, err)
        texts, extra = read()
        corpus = build(texts) if build else cls.build(texts, tokenizer, lower, workers)
        corpus.extra = extra
        if path is not None:
            corpus.save(path)
        return corpus

    def counts(self, documents: torch.Tensor) -> torch.Tensor:
        """How often each of ``tokens`` occurs in the given documents."""
        starts, ends = self.offsets[documents], self.offsets[documents + 1]
        mask = torch.zeros(len(self.ids) + 1, dtype=torch.int32)
        mask.index_add_(0, starts, torch.ones_like(starts, dtype=torch.int32))
        mask.index_add_(0, ends, -torch.ones_like(ends, dtype=torch.int32))
        keep = mask.cumsum(0)[:-1] > 0
        return torch.bincount(self.ids[keep].long(), minlength=len(self.tokens))

    def numericalize(self, vocab: Vocabulary) -> torch.Tensor:
        """All documents' vocabulary indices (flat, aligned with ``offsets``)."""
        table = torch.tensor([vocab.index(t) for t in self.tokens], dtype=torch.int64)
        return table[self.ids.long()] if len(self.ids) else torch.zeros(0, dtype=torch.int64)


class Vocabulary:
    """Token <-> index. ``<unk>`` is 0 and ``<pad>`` is 1 (torchtext's order), then the tokens."""

    def __init__(self, itos: Sequence[str]) -> None:
        if list(itos[:2]) != [UNK, PAD]:
            raise ValueError(f"a vocabulary starts with {UNK!r}, {PAD!r}")
        self.itos = list(itos)
        self.stoi = {token: i for i, token in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary tokens must be unique")

    unk_index, pad_index = 0, 1

    @classmethod
    def from_counts(
        cls, tokens: Sequence[str], counts: Sequence[int], max_size: int | None, min_freq: int = 1
    ) -> Vocabulary:
        """The ``max_size`` most frequent tokens seen at least ``min_freq`` times (ties: A-Z)."""
        if min_freq < 1:
            raise ValueError(f"min_freq must be at least 1, got {min_freq}")
        ranked = sorted((-int(c), t) for t, c in zip(tokens, counts, strict=True) if c >= min_freq)
        ranked = [t for _, t in ranked if t not in (UNK, PAD)]
        if max_size is not None:
            ranked = ranked[:max_size]
        return cls([UNK, PAD, *ranked])

    @classmethod
    def build(
        cls, documents: Sequence[Sequence[str]], max_size: int | None = None, min_freq: int = 1
    ) -> Vocabulary:
        from collections import Counter

        counter = Counter(token for doc in documents for token in doc)
        return cls.from_counts(list(counter), list(counter.values()), max_size, min_freq)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def index(self, token: str) -> int:
        return self.stoi.get(token, self.unk_index)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.stoi.get(t, self.unk_index) for t in tokens]

    def decode(self, indices: Sequence[int]) -> list[str]:
        return [self.itos[i] for i in indices]


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def load_vectors(path: str | Path, vocab: Vocabulary, progress: bool = True) -> torch.Tensor:
    """A ``(len(vocab), dim)`` matrix of the file's vectors for the vocabulary's tokens.

    Reads fastText ``.vec`` (a ``count dim`` header line) and GloVe ``.txt`` (no header), plain or
    gzipped, one line at a time: a 2 GB file never sits in memory. Tokens the file lacks, and the
    ``<unk>``/``<pad>`` rows, stay zero (the book zeroes them too). A file that is an HTML page
    (what some mirrors serve instead of a 404) is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"word vectors not found: {path}")
    matrix: torch.Tensor | None = None
    dim, found = None, 0
    with _open_text(path) as f:
        bar = tqdm(desc=f"reading {path.name}", unit=" lines", disable=not progress)
        for number, line in enumerate(f, start=1):
            bar.update()
            if number == 1 and line.lstrip().startswith("<"):
                raise ValueError(f"{path} is an HTML page, not word vectors: re-download it")
            parts = line.rstrip().split(" ")
            if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # fastText header: count and dimension
            if len(parts) < 2:
                continue
            if dim is None:
                dim = len(parts) - 1
                matrix = torch.zeros(len(vocab), dim)
            if len(parts) - 1 != dim:
                raise ValueError(
                    f"{path} line {number}: {len(parts) - 1} values, expected {dim} (the first "
                    "vector's width)"
                )
            row = vocab.stoi.get(parts[0])
            if row is not None and row > vocab.pad_index:
                matrix[row] = torch.tensor([float(v) for v in parts[1:]])
                found += 1
        bar.close()
    if matrix is None:
        raise ValueError(f"{path} holds no vectors")
    log.info("%s: vectors for %d of %d vocabulary tokens", path.name, found, len(vocab) - 2)
    return matrix


class BucketBatchSampler(ShardedBatchSampler):
    """Batches of documents of similar length (see :class:`ShardedBatchSampler`, ``lengths``)."""

    def __init__(
        self,
        lengths: Sequence[int] | torch.Tensor,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        pool_batches: int = 50,
        drop_last: bool = False,
    ) -> None:
        super().__init__(
            len(lengths), batch_size, shuffle, seed, lengths, pool_batches, drop_last=drop_last
        )


def pad_batch(
    sequences: Sequence[torch.Tensor], pad_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tokens (B, T), lengths (B,))``: padded to the longest sequence of this batch."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.int64)
    if not len(sequences) or int(lengths.max()) == 0:  # one pad step: no empty time axis
        return torch.full((len(sequences), 1), pad_index, dtype=torch.int64), lengths
    tokens = pad_sequence(
        [torch.as_tensor(s, dtype=torch.int64) for s in sequences],
        batch_first=True,
        padding_value=pad_index,
    )
    return tokens, lengths


def aligned_vectors(path: Path, vocab: Vocabulary, folder: Path, sha256: str | None = None) -> str:
    """The ``.pt`` file of ``path``'s word vectors aligned to ``vocab`` (written once in
    ``folder``, keyed by the vocabulary and the vectors file: its checksum, else its path, size
    and modification time), so a second run reads a small tensor, not 400,000 lines of text."""
    # cached per vocabulary and vectors file (its path, size and modification time, or its
    # checksum): the second run reads a small tensor, not 400,000 lines of text
    stat = path.stat()
    identity = sha256 or f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    key = hashlib.sha256("\n".join([identity, *vocab.itos]).encode()).hexdigest()[:16]
    out = folder / f"{path.name.split('.')[0]}-{key}.pt"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")  # one per process (DDP ranks)
        torch.save(load_vectors(path, vocab), tmp)
        tmp.replace(out)
    return str(out)
