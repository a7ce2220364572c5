"""IMDB movie reviews (book chapter 7): the Kaggle CSVs the book used, or the Stanford aclImdb
archive (downloaded, checked and extracted when missing)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from dlzoo.data.base import seeded_split
from dlzoo.data.download import (
    MAX_EXTRACT_BYTES,
    default_cache_dir,
    download_file,
    extract_archive,
    file_key,
)
from dlzoo.data.text import TextClassificationDataModule
from dlzoo.registry import register_datamodule

log = logging.getLogger(__name__)


ACLIMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
ACLIMDB_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
KAGGLE_FILES = ("Train.csv", "Valid.csv", "Test.csv")


@register_datamodule("imdb")
class IMDBDataModule(TextClassificationDataModule):
    """IMDB movie reviews, positive (1) or negative (0).

    Reads, in ``data_dir``: the Kaggle CSVs the book used (``Train.csv``, ``Valid.csv``,
    ``Test.csv``; used as given), or the Stanford ``aclImdb/{train,test}/{pos,neg}/*.txt`` folders
    (downloaded from ``url`` and extracted there when missing, checked against ``sha256``).

    Args:
        data_dir: where the data is (default ``$DLZOO_DATA/imdb``).
        split: for aclImdb, ``book`` re-splits all 50,000 reviews 40k/5k/5k (seeded, stratified),
            as the book's Kaggle files did; ``official`` keeps the 25k test reviews for test and
            holds ``val_fraction`` of the 25k train reviews out for validation.
        max_train_reviews: use only this many training reviews (stratified, seeded): the
            CPU-sized configs.
        url: the aclImdb archive.
        sha256: its checksum.
        max_extract_bytes: refuse an archive that expands to more than this (``None``: no limit).
        label: ``sentiment`` (0 negative, 1 positive) or ``rating``: the 1-10 stars in each
            aclImdb file name ``ID_RATING.txt`` (a number: set ``task: regression``, or
            ``multiclass`` for ten classes). The Kaggle CSVs have no ratings.
        **kwargs: tokenizer, vocabulary, vectors, batching ... of
            :class:`TextClassificationDataModule`.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        split: Literal["book", "official"] = "book",
        max_train_reviews: int | None = None,
        url: str | None = ACLIMDB_URL,
        sha256: str | None = ACLIMDB_SHA256,
        max_extract_bytes: int | None = MAX_EXTRACT_BYTES,
        label: Literal["sentiment", "rating"] = "sentiment",
        **kwargs: Any,
    ) -> None:
        data_dir = data_dir or str(default_cache_dir() / "imdb")
        super().__init__(data_dir=data_dir, **kwargs)
        if split not in ("book", "official"):
            raise ValueError(f"split must be 'book' or 'official', got {split!r}")
        if label not in ("sentiment", "rating"):
            raise ValueError(f"label must be 'sentiment' or 'rating', got {label!r}")
        self.label = label
        self.split, self.max_train_reviews = split, max_train_reviews
        self.url, self.sha256 = url, sha256
        self.max_extract_bytes = max_extract_bytes

    def _acl_folders(self) -> list[Path]:
        root = self.data_dir / "aclImdb"
        return [root / part / label for part in ("train", "test") for label in ("neg", "pos")]

    def _has_acl_imdb(self) -> bool:
        folders = self._acl_folders()
        found = [f for f in folders if f.is_dir() and any(f.glob("*.txt"))]
        if found and len(found) < len(folders):
            # never train on what is left of a damaged copy
            missing = [str(f.relative_to(self.data_dir)) for f in folders if f not in found]
            raise FileNotFoundError(
                f"IMDB in {self.data_dir / 'aclImdb'} is incomplete: no reviews in "
                f"{', '.join(missing)}. Delete {self.data_dir / 'aclImdb'} and run again to "
                f"extract it anew (or extract {ACLIMDB_URL} there yourself)."
            )
        return bool(found)

    def _layout(self, download: bool = False) -> str:
        """``csv`` or ``aclimdb``: the files in ``data_dir``. Only ``prepare_data`` downloads
        (``download=True``): sizes read by the CLI's links never do."""
        if all((self.data_dir / name).is_file() for name in KAGGLE_FILES):
            return "csv"
        if self._has_acl_imdb():
            return "aclimdb"
        if self.url and not download:
            raise FileNotFoundError(
                f"no IMDB reviews in {self.data_dir} yet: call prepare_data() to download and "
                f"extract {self.url} there (the dlzoo command and Lightning's Trainer do)"
            )
        if self.url:
            archive = download_file(self.url, self.data_dir, sha256=self.sha256)
            extract_archive(archive, self.data_dir, self.max_extract_bytes)
            if self._has_acl_imdb():
                return "aclimdb"
        raise FileNotFoundError(
            f"no IMDB reviews in {self.data_dir}: expected aclImdb/{{train,test}}/{{pos,neg}}/*.txt "
            f"or {', '.join(KAGGLE_FILES)}. Get {ACLIMDB_URL} (sha256 {ACLIMDB_SHA256}) and "
            "extract it there, or pass --data.init_args.data_dir"
        )

    def prepare_data(self) -> None:
        super().prepare_data()  # word vectors from a URL
        self._layout(download=True)

    def source_key(self) -> str:
        if self._layout() == "csv":
            if self.label == "rating":
                raise ValueError(
                    f"label='rating' needs the aclImdb folders (ratings are in their file "
                    f"names); {self.data_dir} has the Kaggle CSVs. Get {ACLIMDB_URL}"
                )
            return "|".join(file_key(self.data_dir / name) for name in KAGGLE_FILES)
        folders = self._acl_folders()
        counts = [sum(1 for _ in os.scandir(f)) for f in folders]
        return "|".join(
            [
                f"{f.resolve()}:{f.stat().st_mtime_ns}:{n}"
                for f, n in zip(folders, counts, strict=True)
            ]
            + ([self.label] if self.label != "sentiment" else [])  # another label: another cache
        )

    def read_documents(self) -> pd.DataFrame:
        if self._layout() == "csv":
            frames = [
                self._read_csv(str(self.data_dir / name)).assign(split=split)
                for name, split in zip(KAGGLE_FILES, ("train", "val", "test"), strict=True)
            ]
            return pd.concat(frames, ignore_index=True)
        rows = []
        for part in ("train", "test"):
            for label, folder in (("0", "neg"), ("1", "pos")):
                for path in sorted((self.data_dir / "aclImdb" / part / folder).glob("*.txt")):
                    text = path.read_text(encoding="utf-8", errors="replace")
                    if self.label == "rating":  # ID_RATING.txt
                        label = path.stem.rpartition("_")[2]
                    rows.append((text, label, part, str(path), 1))
        return pd.DataFrame(rows, columns=["text", "label", "split", "source", "line"])

    def assign_splits(self, split: np.ndarray, labels: np.ndarray) -> np.ndarray:
        split = split.copy()
        if self.split == "book" and "val" not in split:  # aclImdb: 50k pooled, 40k/5k/5k
            train, rest = seeded_split(len(split), 0.2, self.seed, labels)
            val, test = (rest[i] for i in seeded_split(len(rest), 0.5, self.seed, labels[rest]))
            split[train], split[val], split[test] = "train", "val", "test"
        elif "val" not in split:  # official: val from the 25k train reviews
            split[split == "train"] = "pool"
            split = super().assign_splits(split, labels)
        if self.max_train_reviews:
            train = np.flatnonzero(split == "train")
            if self.max_train_reviews < len(train):
                held_out = len(train) - self.max_train_reviews
                keep = train[seeded_split(len(train), held_out, self.seed, labels[train])[0]]
                split[np.setdiff1d(train, keep)] = "unused"
        return split
