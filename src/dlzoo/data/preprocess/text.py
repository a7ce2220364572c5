"""Texts as token ids (:class:`TextPreprocessor`), with a text DataModule's fitted vocabulary."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from dlzoo.data.batching import Truncation, cut_ids, head_budget
from dlzoo.data.preprocess import Preprocessor
from dlzoo.data.tokenize import (
    HTML_BREAK,
    SIMPLE_TOKEN,
    TokenizerName,
    Vocabulary,
    pad_batch,
    tokenize,
)

# the logger of the DataModule, as before the move: users filter on its name
log = logging.getLogger("dlzoo.data.text")
#: the vocabulary file of an export bundle: the token of each index, in order
VOCABULARY_FILE = "vocab.json"
#: tokens a cut text must yield beyond those kept (a cut inside markup changes only its end)
CUT_MARGIN = 16
#: the most characters of one text tokenised when ``max_length`` is set (or 64 per kept token,
#: if more): bounds the work of any text, spaces or not (a long word or URL is far shorter)
MAX_CUT_CHARS = 65_536


def bounded_text(
    text: str, max_length: int | None, truncation: str, count: Callable[[str], int]
) -> str:
    """``text`` cut to a part that still yields the ``max_length`` tokens kept (``truncation``
    says which end; ``head+tail``: both ends), ``count`` giving a part's tokens: tokenising a
    10 MB text for 400 tokens costs as much as a short one. The cut is at a space where the
    window has one (else at the window's edge), and the part ends more than
    :data:`CUT_MARGIN` tokens past what is kept, so every kept token is what the whole text
    gives. Whatever the text, at most :data:`MAX_CUT_CHARS` characters (or 64 per kept token,
    if more) are tokenised."""
    if not max_length:
        return text
    if truncation == "head+tail":
        head = bounded_text(text, head_budget(max_length), "head", count)
        tail = bounded_text(text, max_length - head_budget(max_length), "tail", count)
        return text if len(head) + len(tail) >= len(text) else f"{head} {tail}"
    limit = max(MAX_CUT_CHARS, max_length * 64)
    size = min(max_length * 16, limit)  # characters; grown until enough tokens
    while size < len(text):
        if truncation == "tail":
            start = text.find(" ", len(text) - size)
            part = text[start:] if start >= 0 else text[-size:]
        else:
            end = text.rfind(" ", 0, size)
            part = text[:end] if end > 0 else text[:size]
        if size >= limit or count(part) > max_length + CUT_MARGIN:
            return part
        size = min(size * 4, limit)
    return text


#: what each truncation keeps, for people reading a bundle
TRUNCATION_WORDS = {
    "head": "the first",
    "tail": "the last",
    "head+tail": "the first quarter and the last three quarters",
}


class TokenIdsInput(Preprocessor):
    """What both text preprocessors share: raw texts to ids (validated, pre-cut by
    :meth:`bounded`, tokenised by :meth:`token_ids`, cut by :meth:`cut`), padded batches of
    ``(tokens, lengths)``, and examples of that shape. A subclass gives those three methods,
    ``pad_index`` and :meth:`id_range`."""

    kind = "text"
    input_names = ("tokens", "lengths")
    parity_lengths = (5, 23)
    #: the bundle argument naming the file :meth:`describe` writes (vocabulary, tokenizer);
    #: a subclass's ``read_file(path)`` turns that file into its constructor's first argument
    file_arg = ""

    @classmethod
    def from_bundle(cls, args: dict[str, Any], folder: Path) -> Any:
        """Rebuilt from a bundle's arguments and its file, which must lie in ``folder``."""
        args = dict(args)
        name = args.pop(cls.file_arg)
        if Path(name).name != name:
            what = cls.file_arg.replace("_", " ")
            raise ValueError(f"the {what} {name!r} is not a file of {folder}")
        return cls(cls.read_file(Path(folder) / name), **args)

    def measure(self, value: Any) -> dict[str, float]:
        return {"chars": len(value)} if isinstance(value, str) else {}

    def encode(self, inputs: Sequence[Any]) -> list[torch.Tensor]:
        """Raw texts as token ids, cut as the training texts were."""
        for number, text in enumerate(inputs):
            if not isinstance(text, str):
                raise ValueError(f"input {number}: a text is a string, got {type(text).__name__}")
        ids = self.token_ids([self.bounded(t) for t in inputs])
        return [torch.tensor(self.cut(i), dtype=torch.int64) for i in ids]

    def collate(self, items: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids as the model's input: ``(tokens (N, T) padded, lengths (N,))``."""
        return pad_batch(list(items), self.pad_index)

    def example(self, batch_size: int, length: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(batch_size * 1000 + length)
        low, high = self.id_range()
        items = []
        for row in range(batch_size):
            size = max(1, length - (row % 3) * (length // 4))  # rows of different lengths
            items.append(torch.randint(low, max(low + 1, high), (size,), generator=generator))
        return self.collate(items)


class TextPreprocessor(TokenIdsInput):
    """Texts as token ids with a fitted vocabulary: clean (HTML breaks), lower-case, tokenise,
    look up (unknown tokens: ``<unk>``), keep ``max_length`` tokens from the head or the tail.

    Args:
        vocabulary: a :class:`Vocabulary`, or its tokens in index order (``<unk>`` 0,
            ``<pad>`` 1).
        tokenizer: ``spacy`` or ``simple``.
        lower: lower-case before tokenising.
        max_length: most tokens kept (``None``: all).
        truncation: ``head`` keeps the first tokens, ``tail`` the last, ``head+tail`` a quarter
            from the head and the rest from the tail.
    """

    batch_encode = False

    def __init__(
        self,
        vocabulary: Sequence[str] | Vocabulary,
        tokenizer: TokenizerName = "spacy",
        lower: bool = True,
        max_length: int | None = None,
        truncation: Truncation = "head",
    ) -> None:
        is_vocab = isinstance(vocabulary, Vocabulary)
        self.vocab = vocabulary if is_vocab else Vocabulary(list(vocabulary))
        self.tokenizer, self.lower = tokenizer, lower
        self.max_length, self.truncation = max_length, truncation

    @property
    def pad_index(self) -> int:
        return self.vocab.pad_index

    def id_range(self) -> tuple[int, int]:
        """Ids of real tokens (past ``<unk>`` and ``<pad>``), for examples."""
        return 2, len(self.vocab)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Every text's token ids, uncut; an empty text is one ``<unk>`` (so it still gets a
        prediction; reported)."""
        vocab = self.vocab
        encoded = [vocab.encode(tokenize(t, self.tokenizer, self.lower)) for t in texts]
        empty = [i for i, ids in enumerate(encoded) if not ids]
        if empty:
            log.warning("%d empty texts (rows %s) are predicted from <unk>", len(empty), empty[:10])
        return [ids or [vocab.unk_index] for ids in encoded]

    def cut(self, ids: list[int]) -> list[int]:
        """``ids`` cut to ``max_length`` (``truncation`` says which end stays)."""
        return cut_ids(ids, self.max_length, self.truncation)

    def bounded(self, text: str) -> str:
        """``text`` cut to a part that still yields the ``max_length`` tokens kept (see
        :func:`bounded_text`)."""
        return bounded_text(
            text,
            self.max_length,
            self.truncation,
            lambda part: len(tokenize(part, self.tokenizer, self.lower)),
        )

    def bundle_args(self) -> dict[str, Any]:
        return {
            "vocabulary_file": VOCABULARY_FILE,  # written by describe()
            "tokenizer": self.tokenizer,
            "lower": self.lower,
            "max_length": self.max_length,
            "truncation": self.truncation,
        }

    file_arg = "vocabulary_file"

    @classmethod
    def read_file(cls, path: Path) -> list[str]:
        return json.loads(path.read_text())

    def describe(self, directory: Path) -> dict[str, Any]:
        """Tokenizer settings, and the vocabulary written beside the bundle (``vocab.json``:
        the token of each index, in order)."""
        vocab_file = Path(directory) / VOCABULARY_FILE
        vocab_file.write_text(json.dumps(self.vocab.itos, ensure_ascii=False))
        return {
            "kind": "text",
            "tokenizer": self.tokenizer,
            # how a text becomes tokens: clean_text, lower-case, then the tokenizer
            "steps": [
                f"replace the regular expression {HTML_BREAK.pattern!r} with a space",
                "lower-case" if self.lower else "keep the case",
                'spacy.blank("en").tokenizer, whitespace tokens dropped'
                if self.tokenizer == "spacy"
                else f"tokens = re.findall({SIMPLE_TOKEN.pattern!r}, text)",
                "token -> index in the vocabulary, unknown tokens -> unk_index",
                f"keep max_length tokens: {TRUNCATION_WORDS[self.truncation]}",
            ],
            "lower": self.lower,
            "max_length": self.max_length,
            "truncation": self.truncation,
            "pad_index": self.pad_index,
            "unk_index": self.vocab.unk_index,
            "vocabulary_file": vocab_file.name,
            "vocab_size": len(self.vocab),
            "empty_text": "one unk token",
        }
