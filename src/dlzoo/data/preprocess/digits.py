"""Handwritten digits as the model's input images (:class:`DigitsPreprocessor`): 784 pixel
values 0-255, checked and scaled as the MNIST DataModule's batches are."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlzoo.data.preprocess import Preprocessor

#: pixel mean and standard deviation of the MNIST training images, in [0, 1] units
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
PIXELS = 28 * 28


def pixels_to_images(values: np.ndarray, where: Callable[[int], str]) -> torch.Tensor:
    """Rows of 784 pixel values 0-255 as ``(N, 1, 28, 28)`` uint8 images; ``where(row)`` names a
    bad row in the error."""
    try:
        numbers = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    except (TypeError, ValueError):
        raise ValueError(f"{where(0)}: pixel values must be numbers 0-255") from None
    if numbers.shape[1] != PIXELS:
        raise ValueError(f"{where(0)}: a 28x28 digit has {PIXELS} pixels, got {numbers.shape[1]}")
    bad = ~np.isfinite(numbers) | (numbers < 0) | (numbers > 255)
    if bad.any():
        raise ValueError(f"{where(int(np.argwhere(bad)[0][0]))}: pixel values must be 0-255")
    return torch.from_numpy(numbers.astype(np.uint8)).reshape(-1, 1, 28, 28)


class DigitsPreprocessor(Preprocessor):
    """Digits as the model's input images ``(1, 28, 28)``: 784 pixel values 0-255 (a flat list,
    or 28 rows of 28) checked as a digits CSV's, scaled as every batch is."""

    kind = "digits"
    input_names = ("images",)

    def __init__(self, normalize: bool = True) -> None:
        self.normalize = normalize

    def scale(self, images: torch.Tensor, augment: Callable | None = None) -> torch.Tensor:
        """uint8 digits as the model's input: [0, 1], ``augment``-ed (training), normalised."""
        images = images.float().div_(255)
        if augment is not None:
            images = augment(images)
        return (images - MNIST_MEAN) / MNIST_STD if self.normalize else images

    def encode(self, inputs: Sequence[Any]) -> list[torch.Tensor]:
        images = [
            pixels_to_images(np.asarray([pixels], dtype=object), lambda _, n=n: f"input {n}")
            for n, pixels in enumerate(inputs)
        ]
        return list(self.scale(torch.cat(images))) if images else []

    def collate(self, items: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(items))

    def example(self, batch_size: int, length: int = 9) -> torch.Tensor:
        generator = torch.Generator().manual_seed(batch_size * 1000 + length)
        return torch.randn(batch_size, 1, 28, 28, generator=generator)

    def bundle_args(self) -> dict[str, Any]:
        return {"normalize": self.normalize}

    def describe(self, directory: Path) -> dict[str, Any]:
        return {
            "kind": "digits",
            "shape": [1, 28, 28],
            "steps": ["784 pixel values 0-255, row by row", "divide by 255"]
            + (["subtract mean, divide by std"] if self.normalize else []),
            "mean": MNIST_MEAN if self.normalize else 0.0,
            "std": MNIST_STD if self.normalize else 1.0,
        }
