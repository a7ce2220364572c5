"""What the text DataModules do to their sources, as plain functions: read a CSV of texts,
skip empty texts, tokenise with a pretrained subword tokenizer, align word vectors to a built
vocabulary, cache a frozen encoder's features, and report texts cut to ``max_length``."""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from dlzoo.data.batching import FeatureDataset, TokenDataset, check_truncation
from dlzoo.data.download import check_sha256
from dlzoo.data.preprocess.subword import SubwordTokenizer
from dlzoo.data.tokenize import TokenizedCorpus, Vocabulary, aligned_vectors, clean_text

log = logging.getLogger("dlzoo.data.text")  # the text DataModules' log, as the preprocessors'


def check_text_options(
    tokenizer: str,
    vectors: str | None,
    val_fraction: float,
    truncation: str,
    max_length: int | None,
) -> None:
    """Refuse a text DataModule's options that cannot work together, before any file is read."""
    if not tokenizer or not isinstance(tokenizer, str):
        raise ValueError(
            f"tokenizer must be 'spacy', 'simple', 'model' or a path, got {tokenizer!r}"
        )
    if tokenizer not in ("spacy", "simple") and vectors:
        raise ValueError("vectors are aligned to a built vocabulary: not with a subword tokenizer")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    check_truncation(truncation)
    if max_length is not None and max_length < 1:
        raise ValueError(f"max_length must be positive, got {max_length}")


def read_text_csv(
    path: Path, text_column: str, label_column: str, require_label: bool = True
) -> pd.DataFrame:
    """A CSV's texts (column ``text``), labels (``label``, stripped; an empty one is refused
    naming its line), file lines (``line``) and file (``source``)."""
    if not path.is_file():
        raise FileNotFoundError(f"text CSV not found: {path}")
    try:
        frame = pd.read_csv(
            path, dtype={text_column: str}, keep_default_na=False, skip_blank_lines=False
        )
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        raise ValueError(f"{path} is not a readable CSV: {err}") from None
    needed = [text_column] + ([label_column] if require_label else [])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{path} has no column {missing[0]!r} (columns: {', '.join(frame.columns)}); "
            "set text_column / label_column"
        )
    frame = frame.rename(columns={text_column: "text", label_column: "label"})
    if "label" in frame:
        frame["label"] = frame["label"].astype(str).str.strip()
        empty = frame.index[frame["label"] == ""]
        if len(empty):
            lines = ", ".join(str(i + 2) for i in empty[:5])
            raise ValueError(f"{path}: empty label on line(s) {lines}")
    frame["line"] = frame.index + 2
    frame["source"] = str(path)
    return frame


def corpus_documents(frame: pd.DataFrame) -> tuple[list[str], dict]:
    """The texts of ``frame`` (``read_text_csv``'s columns and ``split``) and their labels and
    splits, for :meth:`TokenizedCorpus.cached`; empty texts are left out, and logged."""
    text = frame["text"].fillna("").astype(str)
    empty = text.map(lambda t: not clean_text(t).strip())
    if empty.any():
        where = frame[empty]
        shown = ", ".join(
            f"{Path(s).name}:{n}" for s, n in zip(where["source"], where["line"], strict=True)
        )
        log.warning("skipped %d empty texts (%s)", int(empty.sum()), shown[:300])
        frame, text = frame[~empty], text[~empty]
    return text.tolist(), {
        "label": frame["label"].astype(str).tolist(),
        "split": frame["split"].astype(str).tolist(),
    }


def subword_corpus(subword: SubwordTokenizer, texts: list[str]) -> TokenizedCorpus:
    """``texts`` as a pretrained tokenizer's ids (no special tokens), with a progress bar."""
    chunk, documents = 2000, []
    bar = tqdm(total=len(texts), desc="tokenising", unit="doc", disable=len(texts) < chunk)
    for start in range(0, len(texts), chunk):
        documents += subword.content_ids(texts[start : start + chunk])
        bar.update(min(chunk, len(texts) - start))
    bar.close()
    return TokenizedCorpus.from_ids(documents)


def restored_subword(
    json_text: str, configured: SubwordTokenizer | None, source: str
) -> SubwordTokenizer:
    """A checkpoint's tokenizer; a different one configured (``configured``, or read from
    ``source`` where that can be read) is refused."""
    saved = SubwordTokenizer(json_text)
    if configured is None and source != "model":
        try:
            configured = SubwordTokenizer.from_source(source)
        except FileNotFoundError:
            configured = None  # the encoder's folder is gone: the checkpoint's is the one
    if configured is not None and configured.digest != saved.digest:
        raise ValueError(
            f"the checkpoint's model was trained with another tokenizer than {source!r} "
            f"(sha256 {saved.digest[:12]}, not {configured.digest[:12]}): use the run's own "
            "tokenizer (the checkpoint carries it)"
        )
    return saved


def downloaded_vectors(url: str, cache_dir: Path) -> Path:
    """Where ``prepare_data`` puts the word vectors of ``url``."""
    return cache_dir / "vectors" / Path(urllib.parse.urlparse(url).path).name


def aligned_embeddings(vectors: str, sha256: str | None, vocab: Vocabulary, cache_dir: Path) -> str:
    """A ``.pt`` file of the word vectors ``vectors`` (a file, or a URL already downloaded)
    aligned to ``vocab``, cached per vocabulary and vectors file."""
    source = vectors
    if "://" in source:
        source = str(downloaded_vectors(vectors, cache_dir))
        if not Path(source).is_file():
            raise FileNotFoundError(
                f"word vectors {vectors} are not downloaded yet ({source}): call "
                "prepare_data() (the dlzoo command and Lightning's Trainer do)"
            )
    elif sha256:
        check_sha256(source, sha256)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"word vectors not found: {path}")
    return aligned_vectors(path, vocab, cache_dir / "vectors", sha256)


def token_features(
    dataset: TokenDataset,
    collate: Callable[[list[tuple]], tuple],
    extractor: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    device: torch.device | str,
    batch_size: int,
) -> FeatureDataset:
    """``extractor`` (a frozen encoder: ``(tokens, lengths)`` to features) run once over
    ``dataset`` in longest-first batches of similar length: its features and targets."""
    order = torch.argsort(dataset.lengths, descending=True, stable=True)
    features: torch.Tensor | None = None
    with torch.inference_mode():
        for chunk in torch.split(order, batch_size):
            (tokens, lengths), _ = collate([dataset[int(i)] for i in chunk])
            batch = extractor(tokens.to(device), lengths.to(device)).float().cpu()
            if features is None:
                features = torch.zeros(len(dataset), batch.shape[1])
            features[chunk] = batch
    return FeatureDataset(features, dataset.labels)


def report_cut(lengths: torch.Tensor, max_length: int | None, truncation: str, what: str) -> None:
    """Log how many texts are longer than ``max_length`` and which part of them is kept."""
    if max_length is None:
        return
    cut = int((lengths > max_length).sum())
    if cut:
        kept = {"head": "beginning", "tail": "end"}.get(truncation, "beginning and end")
        log.info(
            "%d of %d %s texts are longer than max_length=%d tokens: their %s is kept",
            cut, len(lengths), what, max_length, kept,
        )  # fmt: skip
