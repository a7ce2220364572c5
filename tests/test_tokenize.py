"""The text layer: tokenizer, vocabulary, vectors, token cache, bucketing and padding."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from dlzoo.data.tokenize import (
    PAD,
    UNK,
    BucketBatchSampler,
    TokenizedCorpus,
    Vocabulary,
    load_vectors,
    pad_batch,
    tokenize,
)


def test_spacy_and_simple_tokenizers_lower_case_and_drop_html_breaks() -> None:
    text = "A GREAT film!<br /><br />Didn't like   the ending."
    assert tokenize(text) == ["a", "great", "film", "!", "did", "n't", "like", "the", "ending", "."]
    assert tokenize(text, "simple") == [
        "a",
        "great",
        "film",
        "!",
        "didn't",
        "like",
        "the",
        "ending",
        ".",
    ]
    assert tokenize(text, lower=False)[:2] == ["A", "GREAT"]
    assert tokenize("   \n ") == [] and tokenize("") == []
    with pytest.raises(ValueError, match="tokenizer must be 'spacy' or 'simple'"):
        tokenize("x", "bpe")


def test_vocabulary_specials_max_size_min_freq_and_unknowns() -> None:
    docs = [["b", "a", "a"], ["c", "a", "b"], ["d"]]
    vocab = Vocabulary.build(docs)
    assert vocab.itos == [UNK, PAD, "a", "b", "c", "d"]  # by count, ties alphabetical
    assert (vocab.unk_index, vocab.pad_index) == (0, 1)
    assert vocab.encode(["a", "zebra", "d"]) == [2, 0, 5]
    assert vocab.decode([2, 3]) == ["a", "b"]
    assert Vocabulary.build(docs, max_size=2).itos == [UNK, PAD, "a", "b"]
    assert Vocabulary.build(docs, min_freq=2).itos == [UNK, PAD, "a", "b"]
    with pytest.raises(ValueError, match="starts with"):
        Vocabulary(["a", "b"])


def test_corpus_counts_numericalizes_and_is_cached(tmp_path: Path) -> None:
    texts = ["the cat sat", "the dog", "a cat, a dog!"]
    calls = []

    def read():
        calls.append(1)
        return texts, {"label": ["1", "0", "1"]}

    corpus = TokenizedCorpus.cached(read, "key", tmp_path, "spacy", workers=1)
    assert corpus.lengths.tolist() == [3, 2, 6] and corpus.extra["label"] == ["1", "0", "1"]
    counts = dict(zip(corpus.tokens, corpus.counts(torch.tensor([0, 2])).tolist(), strict=True))
    assert counts["cat"] == 2 and counts["the"] == 1 and counts["dog"] == 1 and counts["a"] == 2
    vocab = Vocabulary.build([["the", "cat"]])
    ids = corpus.numericalize(vocab)
    assert vocab.decode(ids[:3].tolist()) == ["the", "cat", UNK]
    again = TokenizedCorpus.cached(read, "key", tmp_path, "spacy", workers=1)
    assert len(calls) == 1  # the second run read the cache, not the texts
    assert torch.equal(again.ids, corpus.ids) and again.tokens == corpus.tokens
    TokenizedCorpus.cached(read, "other data", tmp_path, "spacy", workers=1)
    TokenizedCorpus.cached(read, "key", tmp_path, "simple", workers=1)
    assert len(calls) == 3  # a new key or tokenizer tokenises again


def test_tokenising_in_two_processes_gives_the_same_corpus() -> None:
    texts = [f"review number {i} is {'good' if i % 2 else 'bad'}." for i in range(4500)]
    one = TokenizedCorpus.build(texts, workers=1, progress=False)
    two = TokenizedCorpus.build(texts, workers=2, progress=False)
    assert one.tokens == two.tokens and torch.equal(one.ids, two.ids)


def _write_vec(path: Path, header: bool = True) -> None:
    lines = ["the 0.1 0.2 0.3", "cat 1 2 3", "zebra 9 9 9", f"{UNK} 5 5 5"]
    text = ("4 3\n" if header else "") + "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)


@pytest.mark.parametrize(
    ("name", "header"), [("v.vec", True), ("glove.txt", False), ("v.vec.gz", True)]
)
def test_vectors_land_on_the_right_rows(tmp_path: Path, name: str, header: bool) -> None:
    _write_vec(tmp_path / name, header)
    vocab = Vocabulary([UNK, PAD, "cat", "dog", "the"])
    matrix = load_vectors(tmp_path / name, vocab, progress=False)
    assert matrix.shape == (5, 3)
    torch.testing.assert_close(matrix[vocab.index("cat")], torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(matrix[vocab.index("the")], torch.tensor([0.1, 0.2, 0.3]))
    assert not matrix[vocab.index("dog")].any()  # not in the file: zero
    assert not matrix[0].any() and not matrix[1].any()  # <unk> and <pad> stay zero


def test_html_page_and_ragged_vectors_are_refused(tmp_path: Path) -> None:
    (tmp_path / "page.txt").write_text("<!DOCTYPE html><html>404 Not Found</html>\n")
    vocab = Vocabulary([UNK, PAD, "cat"])
    with pytest.raises(ValueError, match="is an HTML page, not word vectors"):
        load_vectors(tmp_path / "page.txt", vocab, progress=False)
    (tmp_path / "bad.vec").write_text("cat 1 2 3\ndog 1 2\n")
    with pytest.raises(ValueError, match="line 2: 2 values, expected 3"):
        load_vectors(tmp_path / "bad.vec", vocab, progress=False)


def test_bucketing_keeps_every_index_once_and_batches_similar_lengths() -> None:
    lengths = torch.randint(1, 400, (1000,), generator=torch.Generator().manual_seed(0))
    sampler = BucketBatchSampler(lengths, batch_size=32, shuffle=True, seed=1, pool_batches=10)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 32
    assert sorted(i for b in batches for i in b) == list(range(1000))
    spread = sum(int(lengths[b].max() - lengths[b].min()) for b in batches) / len(batches)
    assert spread < 80  # random batches of 32 would span ~370
    sampler.set_epoch(1)
    assert list(sampler) != batches  # a new order each epoch ...
    sampler.set_epoch(0)
    assert list(sampler) == batches  # ... that depends only on seed and epoch
    ordered = list(BucketBatchSampler(lengths, 100, shuffle=False))
    flat = [int(lengths[i]) for b in ordered for i in b]
    assert flat == sorted(flat)


def test_pad_batch_returns_lengths_and_pads_to_the_longest() -> None:
    tokens, lengths = pad_batch([torch.tensor([5, 6, 7]), torch.tensor([8])], pad_index=1)
    assert tokens.tolist() == [[5, 6, 7], [8, 1, 1]] and lengths.tolist() == [3, 1]
