"""Text DataModules: any CSV of texts and labels (the IMDB preset is in ``imdb.py``).

Tokenised corpora are cached in ``cache_dir`` (default ``$DLZOO_DATA/text``) keyed by the data
files and tokenizer settings, so only the first run tokenises. The vocabulary is built from the
training split and saved in checkpoints (``state_dict``), so ``dlzoo predict`` on raw text works
after a reload. Sizes reach the model through the CLI's links: ``vocab_size``, ``pad_index``,
``num_classes`` and ``pretrained_embeddings`` (a file of vectors aligned to the vocabulary).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from dlzoo.data import text_corpus
from dlzoo.data.base import DataModule, check_restored_task, check_task_option, seeded_split
from dlzoo.data.batching import (
    FeatureDataset,
    TokenDataset,
    Truncation,
    batch_loader,
    ordered_loader,
)
from dlzoo.data.download import default_cache_dir, download_file, file_key
from dlzoo.data.preprocess import rows_text
from dlzoo.data.preprocess.subword import SubwordPreprocessor, SubwordTokenizer
from dlzoo.data.preprocess.text import TextPreprocessor
from dlzoo.data.targets import decide_task, encode_targets, fit_targets
from dlzoo.data.tokenize import TokenizedCorpus, TokenizerName, Vocabulary, pad_batch
from dlzoo.registry import register_datamodule
from dlzoo.tasks import TASKS, TaskName, classification_task

log = logging.getLogger(__name__)


def _documents(index: pd.Index) -> str:
    return rows_text(index, "document(s)")


@register_datamodule("text_csv")
class TextClassificationDataModule(DataModule):
    """Classification of the texts in a CSV (a text and a label column).

    Args:
        train_file: the labelled CSV, relative to ``data_dir`` (or absolute).
        text_column: the column holding the text.
        label_column: the column holding the target: a class (sorted values become the
            classes), a number (regression) or a label list (multi-label).
        task: ``binary``, ``multiclass``, ``multilabel`` or ``regression``; default: inferred
            from the labels (see :mod:`dlzoo.data.targets`).
        label_delimiter: what separates labels in a label list (``drama|comedy``).
        log_target: regression on ``log1p`` of the target, inverted at every output.
        data_dir: where the files are (default: the current directory).
        val_file: a labelled CSV for validation; without it ``val_fraction`` of ``train_file``
            is held out, stratified and seeded.
        test_file: a labelled CSV for ``dlzoo test``.
        predict_file: a CSV of raw texts (label optional) for ``dlzoo predict``; default: the
            validation split.
        val_fraction: see ``val_file``.
        tokenizer: ``spacy`` (rule-based English, ``spacy.blank("en")``) or ``simple`` (a
            regular expression, faster), with a vocabulary built on the training split; or a
            pretrained encoder's own subword tokenizer: ``model`` (the model's ``backbone``'s:
            the dlzoo command hands it over), or an encoder folder, a ``tokenizer.json`` or a
            hub id. A subword tokenizer's JSON travels in checkpoints and bundles.
        lower: lower-case before tokenising (a subword tokenizer normalises as it was trained).
        max_vocab_size: most frequent training tokens kept (besides ``<unk>`` and ``<pad>``).
        min_freq: least count for a token to enter the vocabulary.
        max_length: cut texts to ``max_length`` tokens (the count of texts cut is logged); a
            bound on the time and memory one text can take. ``None``: never cut.
        truncation: keep the ``head`` (first tokens) or the ``tail`` (last tokens) of long texts.
        vectors: a fastText ``.vec`` / GloVe ``.txt`` file (or URL) of pretrained word vectors,
            aligned to the vocabulary for the model's embedding.
        vectors_sha256: checksum of the vectors file (local or downloaded).
        batch_size: texts per batch.
        bucket: batch texts of similar length (less padding); otherwise shuffle freely.
        num_workers: DataLoader workers (0 is fine: batches are slices of one tensor).
        cache_dir: where tokenised corpora and aligned vectors are cached.
        seed: seed of splits and per-epoch batch order.
    """

    def __init__(
        self,
        train_file: str | None = None,
        text_column: str = "text",
        label_column: str = "label",
        task: TaskName | None = None,
        label_delimiter: str = "|",
        log_target: bool = False,
        data_dir: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        predict_file: str | None = None,
        val_fraction: float = 0.1,
        tokenizer: TokenizerName | str = "spacy",
        lower: bool = True,
        max_vocab_size: int | None = 25_000,
        min_freq: int = 1,
        max_length: int | None = 2000,
        truncation: Truncation = "head",
        vectors: str | None = None,
        vectors_sha256: str | None = None,
        batch_size: int = 64,
        bucket: bool = True,
        num_workers: int = 0,
        cache_dir: str | None = None,
        seed: int = 2020,
    ) -> None:
        super().__init__()  # saves the hyperparameters
        text_corpus.check_text_options(tokenizer, vectors, val_fraction, truncation, max_length)
        # settings as attributes: a preset's hparams hold only its own arguments
        self.train_file, self.val_file, self.test_file = train_file, val_file, test_file
        self.predict_file = predict_file
        self.text_column, self.label_column = text_column, label_column
        check_task_option(task)
        self.task_option, self.label_delimiter, self.log_target = task, label_delimiter, log_target
        self._task: str | None = None
        self._targets: dict[str, Any] | None = None
        self.data_dir = Path(data_dir) if data_dir else Path.cwd()
        self.val_fraction, self.tokenizer, self.lower = val_fraction, tokenizer, lower
        self.max_vocab_size, self.min_freq, self.max_length = max_vocab_size, min_freq, max_length
        self.truncation = truncation
        self.vectors, self.vectors_sha256 = vectors, vectors_sha256
        self.batch_size, self.bucket, self.num_workers = batch_size, bucket, num_workers
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir() / "text"
        self.seed = seed
        self._vocab: Vocabulary | None = None
        self._embeddings_file: str | None = None
        self._corpus: TokenizedCorpus | None = None
        self._numbers: torch.Tensor | None = None
        self._splits: dict[str, torch.Tensor] = {}
        self._datasets: dict[str, TokenDataset] = {}
        self._features: dict[str, FeatureDataset] = {}  # cached encoder features
        self._preprocessor: tuple[Any, TextPreprocessor | SubwordPreprocessor] | None = None
        self._subword: SubwordTokenizer | None = None

    # ----------------------------------------------------------------------- reading sources
    def _path(self, name: str) -> Path:
        path = Path(name)
        return path if path.is_absolute() else self.data_dir / path

    def _read_csv(self, name: str, require_label: bool = True) -> pd.DataFrame:
        return text_corpus.read_text_csv(
            self._path(name), self.text_column, self.label_column, require_label
        )

    def source_key(self) -> str:
        """What identifies the labelled data (files, sizes, times): the token cache's key."""
        files = [f for f in (self.train_file, self.val_file, self.test_file) if f]
        if not files:
            raise ValueError("TextClassificationDataModule needs train_file")
        return "|".join(
            [file_key(self._path(f)) for f in files] + [self.text_column, self.label_column]
        )

    def read_documents(self) -> pd.DataFrame:
        """All labelled texts with columns ``text``, ``label`` and ``split`` (or ``pool``)."""
        frames = [
            self._read_csv(self.train_file).assign(split="pool" if not self.val_file else "train")
        ]
        if self.val_file:
            frames.append(self._read_csv(self.val_file).assign(split="val"))
        if self.test_file:
            frames.append(self._read_csv(self.test_file).assign(split="test"))
        return pd.concat(frames, ignore_index=True)

    def assign_splits(self, split: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Turn ``pool`` documents into train/val by a stratified, seeded split."""
        pool = np.flatnonzero(split == "pool")
        if len(pool):
            stratify = labels[pool] if TASKS[self._task or "binary"].classification else None
            train, val = (
                pool[i] for i in seeded_split(len(pool), self.val_fraction, self.seed, stratify)
            )
            split = split.copy()
            split[train], split[val] = "train", "val"
        return split

    # ---------------------------------------------------------------------------- the corpus
    def _read_for_cache(self) -> tuple[list[str], dict]:
        return text_corpus.corpus_documents(self.read_documents())

    # -------------------------------------------------------------- a pretrained tokenizer
    @property
    def is_subword(self) -> bool:
        """Texts become a pretrained encoder's subword ids (no vocabulary is built)."""
        return self.tokenizer not in ("spacy", "simple")

    def adopt_tokenizer(self, source: str) -> None:
        """Take the model's own tokenizer (``tokenizer='model'``) from its encoder ``source``
        (a folder or hub id); a checkpoint's tokenizer, once restored, is kept."""
        if self.tokenizer == "model" and self._subword is None:
            self._subword = SubwordTokenizer.from_source(source)

    @property
    def subword(self) -> SubwordTokenizer:
        """The pretrained subword tokenizer (``tokenizer`` is not ``spacy`` or ``simple``)."""
        if self._subword is None:
            if not self.is_subword:
                raise ValueError(f"tokenizer={self.tokenizer!r} is not a pretrained tokenizer")
            if self.tokenizer == "model":
                raise ValueError(
                    "tokenizer='model' is the model's own tokenizer, which the dlzoo command "
                    "hands over from --model.init_args.backbone; from Python pass the encoder's "
                    "folder (or its tokenizer.json) as tokenizer=..."
                )
            self._subword = SubwordTokenizer.from_source(self.tokenizer)
        return self._subword

    @property
    def tokenizer_sha256(self) -> str | None:
        """The pretrained tokenizer's digest (``None`` with a built vocabulary)."""
        return self.subword.digest if self.is_subword else None

    def _ensure_corpus(self) -> None:
        if self._corpus is not None:
            return
        subword = self.is_subword  # the key names a pretrained tokenizer by its digest
        corpus = TokenizedCorpus.cached(
            self._read_for_cache,
            self.source_key(),
            self.cache_dir,
            f"subword-{self.subword.digest}" if subword else self.tokenizer,
            self.lower and not subword,
            build=(lambda texts: text_corpus.subword_corpus(self.subword, texts))
            if subword
            else None,
        )
        labels = np.array(corpus.extra["label"])
        self._task = decide_task(
            self.task_option,
            pd.DataFrame({"label": labels}),
            ["label"],
            self.label_delimiter,
            f"the labels ({self.label_column!r})",
            log,
        )
        split = self.assign_splits(np.array(corpus.extra["split"], dtype=object), labels)
        # documents with no tokens at all (punctuation the tokenizer drops) are left out too
        nonempty = (corpus.lengths > 0).numpy()
        self._splits = {
            name: torch.from_numpy(np.flatnonzero((split == name) & nonempty))
            for name in ("train", "val", "test")
        }
        if not len(self._splits["train"]) or not len(self._splits["val"]):
            raise ValueError("no training or validation texts left after reading the data")
        self._corpus, self._labels = corpus, labels

    def _ensure_state(self) -> None:
        if self._targets is not None:
            return
        self._ensure_corpus()
        train = self._splits["train"]
        if not self.is_subword:
            counts = self._corpus.counts(train)
            self._vocab = Vocabulary.from_counts(
                self._corpus.tokens, counts.tolist(), self.max_vocab_size, self.min_freq
            )
        train_labels = self._labels[train.numpy()]
        if TASKS[self._task].classification and len(set(train_labels.tolist())) < 2:
            raise ValueError(f"the training texts have one class only: {sorted(set(train_labels))}")
        self._targets = fit_targets(
            pd.DataFrame({"label": train_labels}),
            ["label"],
            self._task,
            self.label_delimiter,
            self.log_target,
            "training texts",
            _documents,
        )

    # --------------------------------------------------------------------- sizes for the model
    @property
    def vocab(self) -> Vocabulary:
        if self.is_subword:
            raise ValueError(f"tokenizer={self.tokenizer!r} has its own vocabulary, none is built")
        self._ensure_state()
        return self._vocab

    @property
    def vocab_size(self) -> int:
        return self.subword.vocab_size if self.is_subword else len(self.vocab)

    @property
    def pad_index(self) -> int:
        return self.subword.pad_index if self.is_subword else self.vocab.pad_index

    @property
    def _specials(self) -> dict[str, list[int]]:
        """The special tokens around every text (a pretrained tokenizer's), for TokenDataset."""
        if not self.is_subword:
            return {}
        return {"prefix": self.subword.prefix, "suffix": self.subword.suffix}

    @property
    def fitted_targets(self) -> dict[str, Any]:
        """The fitted target state: task, classes or labels, regression scaling."""
        self._ensure_state()
        return self._targets

    targets = fitted_targets  # its name before every DataModule was described from it

    @property
    def target_names(self) -> list[str] | None:
        return [self.label_column] if self.task == "regression" else None

    @property
    def pretrained_embeddings(self) -> str | None:
        """A ``.pt`` file of the vectors aligned to the vocabulary (None without ``vectors``)."""
        if not self.vectors:
            return None
        if self._embeddings_file is not None:  # the link reads it; don't hash 2 GB twice
            return self._embeddings_file
        # cached per vocabulary and vectors file: the second run reads a small tensor
        self._embeddings_file = text_corpus.aligned_embeddings(
            self.vectors, self.vectors_sha256, self.vocab, self.cache_dir
        )
        return self._embeddings_file

    def prepare_data(self) -> None:
        """Download word vectors given as a URL (the only download of this DataModule)."""
        if self.vectors and "://" in self.vectors:
            download_file(self.vectors, self.cache_dir / "vectors", sha256=self.vectors_sha256)

    # ---------------------------------------------------------------------------------- setup
    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            return  # predict_dataloader encodes, after Lightning restored a checkpoint's vocabulary
        self._build_datasets()

    def _build_datasets(self) -> None:
        """The labelled splits as ids of the current vocabulary (built, or restored from a
        checkpoint: Lightning restores after ``setup()``, so loaders call this again)."""
        if self._datasets:
            return
        self._ensure_state()
        self._ensure_corpus()
        if self._numbers is None:
            self._numbers = (
                self._corpus.ids.long()
                if self.is_subword
                else self._corpus.numericalize(self._vocab)
            )
        for name, documents in self._splits.items():
            if not len(documents):
                continue
            labels = pd.DataFrame({"label": self._labels[documents.numpy()]})
            targets = encode_targets(labels, self._targets, f"{name} texts", _documents)
            self._datasets[name] = TokenDataset(
                self._numbers,
                self._corpus.offsets,
                documents,
                targets,
                self.max_length,
                self.truncation,
                **self._specials,
            )
        self._report_cut(torch.cat([d.full_lengths for d in self._datasets.values()]), "labelled")

    def _report_cut(self, lengths: torch.Tensor, what: str) -> None:
        text_corpus.report_cut(lengths, self.max_length, self.truncation, what)

    def encode_texts(self, frame: pd.DataFrame | list[str]) -> TokenDataset:
        """Raw texts (a list, or a frame with a ``text`` column) as a dataset for prediction.

        An empty text still gets a prediction (from a single ``<unk>`` token), so every row of
        the file has one; it is reported.
        """
        texts = frame if isinstance(frame, list) else frame["text"].fillna("").astype(str).tolist()
        encoded = self.preprocessor.token_ids(texts)
        self.predict_row_ids = list(range(len(encoded)))
        dataset = TokenDataset.of_lists(encoded, self.max_length, self.truncation, **self._specials)
        self._report_cut(dataset.full_lengths, "predict")
        return dataset

    @property
    def preprocessor(self) -> TextPreprocessor | SubwordPreprocessor:
        """Raw texts as token ids, with the vocabulary (built on the training split if needed)
        or the pretrained tokenizer."""
        source = self.subword if self.is_subword else self.vocab
        if self._preprocessor is None or self._preprocessor[0] is not source:
            made = (
                SubwordPreprocessor(source, self.max_length, self.truncation)
                if self.is_subword
                else TextPreprocessor(
                    source, self.tokenizer, self.lower, self.max_length, self.truncation
                )
            )
            self._preprocessor = (source, made)  # made again for another vocabulary
        return self._preprocessor[1]

    # -------------------------------------------------------------------------------- loaders
    def _collate(self, items: list[tuple]) -> tuple:
        tokens, lengths = pad_batch([item[0] for item in items], self.pad_index)
        if len(items[0]) == 1:
            return ((tokens, lengths),)
        return (tokens, lengths), torch.stack([torch.as_tensor(item[1]) for item in items])

    def check_feature_caching(self) -> None:
        """Any text DataModule can cache a frozen encoder's features."""

    def cache_features(
        self,
        extractor: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        device: torch.device | str = "cpu",
        batch_size: int | None = None,
    ) -> None:
        """Run ``extractor`` (a frozen encoder: ``(tokens, lengths)`` to features) over the train
        and val texts once, longest-first batches of similar length; from then on their loaders
        yield ``(BackboneFeatures, target)`` batches."""
        self._build_datasets()
        for split in ("train", "val"):
            dataset = self._datasets[split]
            self._features[split] = text_corpus.token_features(
                dataset, self._collate, extractor, device, batch_size or self.batch_size
            )
            log.info("cached %s features of %d texts", split, len(dataset))

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        if split in self._features:
            return batch_loader(self._features[split], self.batch_size, shuffle, self.seed)
        self._build_datasets()
        if split not in self._datasets:
            raise ValueError(f"no {split} texts: pass {split}_file")
        dataset = self._datasets[split]
        return batch_loader(
            dataset,
            self.batch_size,
            shuffle=shuffle,
            seed=self.seed,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            collate_fn=self._collate,
            lengths=dataset.lengths if self.bucket else None,
        )

    def predict_dataloader(self) -> DataLoader:
        if not self.predict_file:  # as every dlzoo DataModule: the validation split
            self._build_datasets()
            val = self._datasets["val"]
            dataset = val.unlabelled()
            self.predict_row_ids = val.documents.tolist()  # document numbers of the corpus
            return ordered_loader(dataset, self.batch_size, collate_fn=self._collate)
        dataset = self.encode_texts(self._read_csv(self.predict_file, require_label=False))
        # in file order (bucketing would reorder the rows of predictions.csv)
        return ordered_loader(dataset, self.batch_size, collate_fn=self._collate)

    # --------------------------------------------------------------------------- checkpoints
    #: options that decide the model's input: fixed by a checkpoint's vocabulary
    input_options = ("tokenizer", "lower", "label_delimiter", "log_target")

    def state_dict(self) -> dict[str, Any]:
        if self.is_subword:  # the tokenizer's JSON: plain text
            return {
                "tokenizer": self.subword.json,
                "classes": self.classes,
                "targets": self.targets,
            }
        return {"vocab": self.vocab.itos, "classes": self.classes, "targets": self.targets}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "tokenizer" in state_dict:
            if not self.is_subword:
                raise ValueError(
                    "the checkpoint's model reads a pretrained encoder's subwords: leave "
                    "tokenizer as it was (model)"
                )
            self._subword = text_corpus.restored_subword(
                state_dict["tokenizer"], self._subword, self.tokenizer
            )
            targets = state_dict["targets"]
            check_restored_task(self.task_option, targets["task"])
            self._targets, self._task = targets, targets["task"]
            self._numbers, self._datasets, self._preprocessor = None, {}, None
            self._features = {}
            return
        vocab, classes = list(state_dict["vocab"]), list(state_dict["classes"])
        targets = state_dict.get("targets") or {  # checkpoints of 0.1.0.dev0: classes only
            "task": classification_task(len(classes)),
            "columns": ["label"],
            "classes": classes,
        }
        check_restored_task(self.task_option, targets["task"])
        if self._vocab is not None and self._vocab.itos == vocab and self._targets == targets:
            return  # what setup() built already (a resumed fit): keep the encoded splits
        self._vocab = Vocabulary(vocab)
        self._embeddings_file = None  # aligned to the previous vocabulary
        self._targets, self._task = targets, targets["task"]
        self._numbers = None  # the splits are encoded again, with this vocabulary, when next used
        self._datasets = {}
