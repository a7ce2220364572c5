"""Text DataModules on tiny review corpora the tests write: CSV, Kaggle files, aclImdb folders."""

from __future__ import annotations

import logging
import tarfile
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import make_reviews, write_acl_imdb
from dlzoo.data import IMDBDataModule, TextClassificationDataModule
from dlzoo.data.download import sha256sum
from dlzoo.data.tokenize import PAD, UNK


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DLZOO_DATA", str(tmp_path / "cache"))


def _csv(tmp_path: Path, n: int = 200, name: str = "reviews.csv", seed: int = 0) -> Path:
    path = tmp_path / name
    make_reviews(n, seed).to_csv(path, index=False)
    return path


def test_csv_module_sizes_batches_and_vocabulary(tmp_path: Path) -> None:
    dm = TextClassificationDataModule(
        train_file=str(_csv(tmp_path)), batch_size=16, max_vocab_size=12
    )
    assert dm.vocab_size == 14 and dm.pad_index == 1 and dm.classes == ["0", "1"]
    assert dm.vocab.itos[:2] == [UNK, PAD]
    assert "br" not in dm.vocab and "<" not in dm.vocab  # HTML breaks are not tokens
    dm.setup("fit")
    (tokens, lengths), labels = next(iter(dm.train_dataloader()))
    assert tokens.shape[0] == 16 == len(lengths) == len(labels)
    assert tokens.shape[1] == int(lengths.max())  # padded to this batch's longest
    for row, length in zip(tokens, lengths, strict=True):
        assert (row[:length] != dm.pad_index).all() and (row[length:] == dm.pad_index).all()
    sizes = (
        sum(len(b[1]) for b in dm.train_dataloader()),
        sum(len(b[1]) for b in dm.val_dataloader()),
    )
    assert sizes == (180, 20)


def test_max_length_truncates(tmp_path: Path) -> None:
    dm = TextClassificationDataModule(train_file=str(_csv(tmp_path)), max_length=5, batch_size=50)
    dm.setup("fit")
    (tokens, lengths), _ = next(iter(dm.train_dataloader()))
    assert tokens.shape[1] == 5 and int(lengths.max()) == 5
    texts = ["awful boring film and the plot was great"]
    head = dm.encode_texts(texts)[0][0]
    tail_dm = TextClassificationDataModule(
        train_file=str(tmp_path / "reviews.csv"), max_length=3, truncation="tail"
    )
    assert dm.vocab.decode(head.tolist()) == ["awful", "boring", "film", "and", "the"]
    assert tail_dm.vocab.decode(tail_dm.encode_texts(texts)[0][0].tolist()) == [
        "plot",
        "was",
        "great",
    ]


def test_empty_and_whitespace_texts_are_skipped_in_training_and_predicted(
    tmp_path: Path, caplog
) -> None:
    frame = make_reviews(60)
    frame.loc[3, "text"] = ""
    frame.loc[7, "text"] = "   \n  "
    frame.loc[9, "text"] = "<br /><br />"
    frame.to_csv(tmp_path / "r.csv", index=False)
    pd.DataFrame({"text": ["great film", "", "  "]}).to_csv(tmp_path / "new.csv", index=False)
    dm = TextClassificationDataModule(
        train_file=str(tmp_path / "r.csv"), predict_file=str(tmp_path / "new.csv")
    )
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert "skipped 3 empty texts (r.csv:5, r.csv:9, r.csv:11)" in caplog.text
    assert len(dm._datasets["train"]) + len(dm._datasets["val"]) == 57
    ((tokens, lengths),) = next(iter(dm.predict_dataloader()))
    assert lengths.tolist() == [2, 1, 1] and tokens[1, 0] == dm.vocab.unk_index
    assert dm.predict_row_ids == [0, 1, 2]


def test_bad_files_get_clear_errors(tmp_path: Path) -> None:
    make_reviews(20).rename(columns={"text": "review"}).to_csv(tmp_path / "r.csv", index=False)
    with pytest.raises(ValueError, match=r"has no column 'text' .*set text_column"):
        TextClassificationDataModule(train_file=str(tmp_path / "r.csv")).vocab_size
    assert (
        TextClassificationDataModule(
            train_file=str(tmp_path / "r.csv"), text_column="review"
        ).num_classes
        == 2
    )
    with pytest.raises(FileNotFoundError, match="text CSV not found"):
        TextClassificationDataModule(train_file=str(tmp_path / "none.csv")).vocab_size


def test_second_run_reads_the_token_cache(tmp_path: Path, monkeypatch) -> None:
    path = _csv(tmp_path)
    first = TextClassificationDataModule(train_file=str(path))
    first.setup("fit")
    cache = list((tmp_path / "cache" / "text").glob("tokens-*.pt"))
    assert len(cache) == 1

    def no_tokenising(*args, **kwargs):
        raise AssertionError("tokenised again")

    monkeypatch.setattr("dlzoo.data.tokenize.TokenizedCorpus.build", no_tokenising)
    second = TextClassificationDataModule(train_file=str(path))
    second.setup("fit")
    assert second.vocab.itos == first.vocab.itos
    path.write_text(path.read_text() + '"one more great review",1\n')  # new data: new key
    with pytest.raises(AssertionError, match="tokenised again"):
        TextClassificationDataModule(train_file=str(path)).vocab_size


def test_vectors_become_an_aligned_embedding_file(tmp_path: Path) -> None:
    (tmp_path / "tiny.vec").write_text("3 2\ngreat 1 2\nawful -1 -2\nunseenword 7 7\n")
    dm = TextClassificationDataModule(
        train_file=str(_csv(tmp_path)), vectors=str(tmp_path / "tiny.vec")
    )
    matrix = torch.load(dm.pretrained_embeddings, weights_only=True)
    assert matrix.shape == (dm.vocab_size, 2)
    assert matrix[dm.vocab.index("great")].tolist() == [1.0, 2.0]
    assert not matrix[dm.vocab.index("film")].any() and not matrix[dm.pad_index].any()


def test_aclimdb_folders_book_and_official_splits(tmp_path: Path) -> None:
    write_acl_imdb(tmp_path / "imdb", per_class=40)  # 160 reviews
    book = IMDBDataModule(data_dir=str(tmp_path / "imdb"), batch_size=8)
    book.setup("fit")
    sizes = {k: len(v) for k, v in book._datasets.items()}
    assert sizes == {"train": 128, "val": 16, "test": 16}  # 80/10/10 of all reviews
    assert book.classes == ["0", "1"]
    official = IMDBDataModule(data_dir=str(tmp_path / "imdb"), split="official", val_fraction=0.25)
    official.setup("fit")
    assert {k: len(v) for k, v in official._datasets.items()} == {
        "train": 60,
        "val": 20,
        "test": 80,
    }
    small = IMDBDataModule(data_dir=str(tmp_path / "imdb"), max_train_reviews=30)
    small.setup("fit")
    assert len(small._datasets["train"]) == 30 and len(small._datasets["val"]) == 16


def test_kaggle_csv_files_are_used_as_given(tmp_path: Path) -> None:
    for name, n in (("Train.csv", 80), ("Valid.csv", 20), ("Test.csv", 10)):
        _csv(tmp_path, n, name, seed=n)
    dm = IMDBDataModule(data_dir=str(tmp_path))
    dm.setup("fit")
    assert {k: len(v) for k, v in dm._datasets.items()} == {"train": 80, "val": 20, "test": 10}


def test_aclimdb_archive_is_downloaded_checked_and_extracted(tmp_path: Path) -> None:
    write_acl_imdb(tmp_path / "src", per_class=5)
    archive = tmp_path / "aclImdb_v1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "aclImdb", arcname="aclImdb")
    target = tmp_path / "data"
    dm = IMDBDataModule(data_dir=str(target), url=archive.as_uri(), sha256=sha256sum(archive))
    with pytest.raises(FileNotFoundError, match="call prepare_data"):
        dm.num_classes  # a size the CLI links downloads nothing
    dm.prepare_data()
    assert dm.num_classes == 2 and (target / "aclImdb" / "test" / "neg").is_dir()
    with pytest.raises(FileNotFoundError, match=r"no IMDB reviews in .*aclImdb_v1\.tar\.gz"):
        IMDBDataModule(data_dir=str(tmp_path / "empty"), url=None).prepare_data()


def test_texts_are_cut_at_2000_tokens_by_default_and_it_is_logged(tmp_path: Path, caplog) -> None:
    frame = make_reviews(60)
    frame.loc[0, "text"] = "great " * 5000  # one huge review: bounded time and memory
    frame.to_csv(tmp_path / "long.csv", index=False)
    dm = TextClassificationDataModule(train_file=str(tmp_path / "long.csv"), tokenizer="simple")
    with caplog.at_level(logging.INFO, logger="dlzoo.data.text"):
        dm.setup("fit")
    assert dm.max_length == 2000
    assert "1 of 60 labelled texts are longer than max_length=2000" in caplog.text
    longest = max(int(d.lengths.max()) for d in dm._datasets.values())
    assert longest == 2000


def test_restored_vocabulary_rebuilds_the_splits(tmp_path: Path) -> None:
    # Lightning restores a checkpoint's DataModule state after setup(): validate, test and a
    # resumed fit must still find their texts, encoded with the restored vocabulary
    dm = TextClassificationDataModule(train_file=str(_csv(tmp_path)), batch_size=50)
    dm.setup("fit")
    before = next(iter(dm.val_dataloader()))
    dm.load_state_dict(dm.state_dict())  # the same vocabulary: nothing to redo
    torch.testing.assert_close(next(iter(dm.val_dataloader())), before)
    other = dm.state_dict()
    other["vocab"] = [UNK, PAD, *reversed(other["vocab"][2:])]
    dm.load_state_dict(other)
    (tokens, lengths), labels = next(iter(dm.val_dataloader()))
    torch.testing.assert_close(lengths, before[0][1])
    torch.testing.assert_close(labels, before[1])
    assert not torch.equal(tokens, before[0][0])  # the ids of the restored vocabulary
