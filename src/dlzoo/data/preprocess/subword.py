"""Texts as a pretrained encoder's subword ids (:class:`SubwordPreprocessor`), with the encoder's
own fast tokenizer (a Hugging Face ``tokenizers`` ``tokenizer.json``).

The tokenizer is kept as its JSON text: plain data, so it travels in checkpoints (loaded with
``weights_only=True``) and bundles, and ``dlzoo serve`` tokenises with the ``tokenizers``
library alone (no ``transformers``, no Lightning).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlzoo.data.batching import Truncation, check_truncation, cut_ids
from dlzoo.data.preprocess.text import TRUNCATION_WORDS, TokenIdsInput, bounded_text
from dlzoo.data.tokenize import HTML_BREAK, clean_text

log = logging.getLogger("dlzoo.data.text")
#: the tokenizer file of a bundle (and of an encoder's folder)
TOKENIZER_FILE = "tokenizer.json"
_PAD_TOKENS = ("[PAD]", "<pad>", "<|padding|>")


class SubwordTokenizer:
    """A fast tokenizer's JSON (``tokenizer.json``) as dlzoo's text layer uses it: the content
    ids of texts (HTML breaks cleaned, the tokenizer's own normalisation), and the special
    tokens its template puts around one text (BERT: ``[CLS] ... [SEP]``).

    Args:
        json_text: the tokenizer's JSON, as ``tokenizers.Tokenizer.to_str()`` writes it.
    """

    def __init__(self, json_text: str) -> None:
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_str(json_text)
        except Exception as err:  # the library raises a plain Exception
            raise ValueError(f"not a tokenizers JSON: {' '.join(str(err).split())[:200]}") from None
        padding = tokenizer.padding
        tokenizer.no_truncation()  # dlzoo cuts (head, tail, head+tail) and pads per batch
        tokenizer.no_padding()
        self.json, self.tokenizer = json_text, tokenizer
        #: what identifies the tokenizer (checkpoints refuse another)
        self.digest = hashlib.sha256(json_text.encode()).hexdigest()
        full = tokenizer.encode("a").ids
        content = tokenizer.encode("a", add_special_tokens=False).ids
        at = next((i for i in range(len(full)) if full[i : i + len(content)] == content), len(full))
        self.prefix, self.suffix = full[:at], full[at + len(content) :]
        if padding is not None:
            self.pad_index = int(padding["pad_id"])
        else:
            ids = [tokenizer.token_to_id(t) for t in _PAD_TOKENS]
            self.pad_index = next((i for i in ids if i is not None), 0)

    @classmethod
    def from_source(cls, source: str | Path) -> SubwordTokenizer:
        """The tokenizer of an encoder: a ``tokenizer.json`` file, a folder holding one, or a
        hub id in the Hugging Face cache (see :func:`dlzoo.hub.pretrained_folder`)."""
        path = Path(source).expanduser()
        if path.is_file():
            return cls(path.read_text(encoding="utf-8"))
        from dlzoo.hub import pretrained_folder

        folder = pretrained_folder(str(source), TOKENIZER_FILE)
        return cls((folder / TOKENIZER_FILE).read_text(encoding="utf-8"))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def special_count(self) -> int:
        return len(self.prefix) + len(self.suffix)

    def content_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Every text's subword ids without special tokens, uncut (both cores: the library
        batches in Rust threads)."""
        cleaned = [clean_text(t) for t in texts]
        return [e.ids for e in self.tokenizer.encode_batch(cleaned, add_special_tokens=False)]

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(clean_text(text), add_special_tokens=False).ids)


class SubwordPreprocessor(TokenIdsInput):
    """Texts as a pretrained encoder's ids: clean HTML breaks, the tokenizer's normalisation
    and subwords, cut to ``max_length`` tokens (special tokens included) from the ``head``, the
    ``tail`` or both (``head+tail``), wrapped in the tokenizer's special tokens.

    Args:
        tokenizer: a :class:`SubwordTokenizer`, or its JSON text.
        max_length: most tokens of one text, special tokens included (``None``: all; an
            encoder takes at most its ``max_position_embeddings``).
        truncation: ``head``, ``tail`` or ``head+tail`` (a quarter from the head).
    """

    batch_encode = True  # one call tokenises a batch on every core

    def __init__(
        self,
        tokenizer: SubwordTokenizer | str,
        max_length: int | None = 512,
        truncation: Truncation = "head",
    ) -> None:
        check_truncation(truncation)
        self.subwords = tokenizer if isinstance(tokenizer, SubwordTokenizer) else None
        self.subwords = self.subwords or SubwordTokenizer(tokenizer)
        if max_length is not None and max_length <= self.subwords.special_count:
            raise ValueError(
                f"max_length ({max_length}) must exceed the tokenizer's "
                f"{self.subwords.special_count} special tokens"
            )
        self.max_length, self.truncation = max_length, truncation

    @property
    def pad_index(self) -> int:
        return self.subwords.pad_index

    def id_range(self) -> tuple[int, int]:
        return 0, self.subwords.vocab_size

    @property
    def budget(self) -> int | None:
        """Content tokens kept of one text (``max_length`` less the special tokens)."""
        return self.max_length - self.subwords.special_count if self.max_length else None

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Every text's content ids, uncut (an empty text has none: its prediction comes from
        the special tokens alone; reported)."""
        encoded = self.subwords.content_ids(texts)
        empty = [i for i, ids in enumerate(encoded) if not ids]
        if empty:
            log.warning(
                "%d empty texts (rows %s) are predicted from no tokens", len(empty), empty[:10]
            )
        return encoded

    def cut(self, ids: list[int]) -> list[int]:
        """Content ids cut to the budget and wrapped in the special tokens."""
        kept = list(cut_ids(ids, self.budget, self.truncation))
        return self.subwords.prefix + kept + self.subwords.suffix

    def bounded(self, text: str) -> str:
        """``text`` cut to a part that still yields every kept token (:func:`bounded_text`)."""
        return bounded_text(text, self.budget, self.truncation, self.subwords.count)

    def bundle_args(self) -> dict[str, Any]:
        return {
            "tokenizer_file": TOKENIZER_FILE,  # written by describe()
            "max_length": self.max_length,
            "truncation": self.truncation,
        }

    file_arg = "tokenizer_file"

    @classmethod
    def read_file(cls, path: Path) -> str:
        return path.read_text(encoding="utf-8")

    def describe(self, directory: Path) -> dict[str, Any]:
        """The tokenizer file written beside the bundle, and how a text becomes ids."""
        path = Path(directory) / TOKENIZER_FILE
        path.write_text(self.subwords.json, encoding="utf-8")
        words = TRUNCATION_WORDS[self.truncation]
        return {
            "kind": "text",
            "tokenizer": "subword",
            "steps": [
                f"replace the regular expression {HTML_BREAK.pattern!r} with a space",
                "tokenizers.Tokenizer.from_file(tokenizer_file).encode(text, "
                "add_special_tokens=False).ids (its own normalisation, e.g. lower-case)",
                f"keep max_length - {self.subwords.special_count} ids: {words}",
                "put prefix_ids before and suffix_ids after",
            ],
            "prefix_ids": self.subwords.prefix,
            "suffix_ids": self.subwords.suffix,
            "max_length": self.max_length,
            "truncation": self.truncation,
            "pad_index": self.pad_index,
            "tokenizer_file": path.name,
            "tokenizer_sha256": self.subwords.digest,
            "vocab_size": self.subwords.vocab_size,
            "empty_text": "the special tokens alone",
        }


__all__ = ["TOKENIZER_FILE", "SubwordPreprocessor", "SubwordTokenizer"]
