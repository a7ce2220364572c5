"""Reading a checkpoint file: the one ``torch.load`` of dlzoo, safe by default, with one-line
errors. Low on purpose (torch only): DataModules, models and the command all read here."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """A file that is not a readable dlzoo checkpoint, or one of another model; says which."""


def read_checkpoint(path: str | Path, weights_only: bool = True) -> dict[str, Any]:
    """``torch.load`` of a checkpoint on the CPU, with one-line errors: a missing file, an empty
    or truncated one, a file that is no checkpoint at all. An unsafe pickle raises
    :class:`pickle.UnpicklingError` (``weights_only`` refused it)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(
            f"{path} is a folder, not a checkpoint: name a file in it, e.g. {path / 'last.ckpt'}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty: not a checkpoint (was its writing interrupted?)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as err:
        if "weights_only" in str(err) and _is_torch_archive(path):
            raise  # a real checkpoint with objects weights_only refuses: torch's message says so
        raise CheckpointError(
            f"{path} is not a readable checkpoint (not a torch.save file)"
        ) from None
    except Exception as err:
        # torch's readers raise many types on garbage (KeyError 101 for a text file
        # starting with 'e', IndexError, EOFError, BadZipFile ...)
        detail = " ".join(str(err).split())[:120]
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt: {detail})"
        ) from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint")
    return checkpoint


def _is_torch_archive(path: Path) -> bool:
    return zipfile.is_zipfile(path)


__all__ = ["CheckpointError", "read_checkpoint"]
