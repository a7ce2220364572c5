"""Fitted preprocessing, one file per input kind: what turns a raw input (a row, a text, an image
file, a digit's pixels) into the model's input, with the state a DataModule fitted.

These modules import neither Lightning nor torchmetrics: ``dlzoo serve --bundle`` rebuilds a
preprocessor from a bundle and runs it beside ONNX Runtime, and starts in seconds. The DataModules
(:mod:`dlzoo.data`) fit them and re-export their names.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

#: class name -> module, for bundles and for the lazy names of this package
PREPROCESSORS = {
    "TabularPreprocessor": "dlzoo.data.preprocess.tabular",
    "ImagePreprocessor": "dlzoo.data.preprocess.images",
    "TextPreprocessor": "dlzoo.data.preprocess.text",
    "SubwordPreprocessor": "dlzoo.data.preprocess.subword",
    "DigitsPreprocessor": "dlzoo.data.preprocess.digits",
}


def rows_text(index: Sequence[Any], unit: str = "line(s)", offset: int = 0, limit: int = 5) -> str:
    """Where a problem is, for an error message: ``line(s) 5, 11 and 3 more``. ``offset`` turns
    positions into the numbers a person sees (a CSV's pandas row ``i`` is line ``i + 2``)."""
    items = list(index)
    shown = ", ".join(str(i + offset) for i in items[:limit])
    return f"{unit} {shown}" + (f" and {len(items) - limit} more" if len(items) > limit else "")


@runtime_checkable
class Preprocessor(Protocol):
    """Fitted preprocessing of one input family (tabular rows, texts, images, digits).

    It holds plain fitted state only (lists, numbers, strings), so it is rebuilt from a
    checkpoint and described in an export bundle without pickling anything. dlzoo's own
    preprocessors subclass this protocol for its defaults (the attributes' values, raw JSON
    values taken as they are, nothing to budget, rebuilt from their arguments); another
    object with these members serves as well.
    """

    #: the input family, for people reading a bundle (``tabular``, ``text``, ``image``, ``digits``)
    kind: str
    #: names of the model's input tensors, in order (``features``; ``tokens``, ``lengths``)
    input_names: tuple[str, ...]
    #: sequence lengths the export parity check tries (``(9,)`` where inputs have no length)
    parity_lengths: tuple[int, ...] = (9,)
    #: the longest sequence an encoded input can be (``None``: inputs have no length)
    max_length: int | None = None
    #: encoding inputs in one call costs much less than one by one (tabular rows: one pandas
    #: call), so a server encodes them with their batch; ``False``: per request, as they come
    batch_encode: bool = False
    #: raw inputs are files' bytes (images), so a server also takes them uploaded as files
    takes_files: bool = False

    def from_json(self, value: Any, number: int) -> Any:
        """A JSON request's value as a raw input (images: base64 text to bytes); raises
        ``ValueError`` naming input ``number``. By default the value itself, checked by
        :meth:`encode`."""
        return value

    def measure(self, value: Any) -> dict[str, float]:
        """What encoding a raw input (``from_json``'s value) will cost, read cheaply (an image's
        header: ``pixels``, ``aspect``; a text: ``chars``), for serving budgets; ``{}`` (the
        default): nothing to budget beyond the request's size."""
        return {}

    def encode(self, inputs: Sequence[Any]) -> list[Any]:
        """Raw inputs as model-ready items, one per input; ``ValueError`` names a bad one."""

    def collate(self, items: Sequence[Any]) -> Any:
        """Encoded items as one model input batch (a tensor, or a tuple of tensors)."""

    def example(self, batch_size: int, length: int = 9) -> Any:
        """A collated batch of the shape raw inputs become (values arbitrary but valid)."""

    def describe(self, directory: Path) -> dict[str, Any]:
        """What a caller outside dlzoo needs to do the same (a bundle's JSON); files it needs
        (a vocabulary) are written to ``directory``."""

    def bundle_args(self) -> dict[str, Any]:
        """Plain (JSON) arguments that :meth:`from_bundle` rebuilds this object from; files they
        name were written by :meth:`describe`."""

    @classmethod
    def from_bundle(cls, args: dict[str, Any], folder: Path) -> Preprocessor:
        """The object :meth:`bundle_args` describes, reading files from the bundle ``folder``;
        by default ``cls(**args)`` (no files)."""
        return cls(**args)


def __getattr__(name: str) -> Any:
    if name in PREPROCESSORS:  # imported on first use: a tabular server needs no torchvision
        return getattr(importlib.import_module(PREPROCESSORS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["PREPROCESSORS", "Preprocessor", *PREPROCESSORS]
