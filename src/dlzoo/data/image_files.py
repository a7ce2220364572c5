"""Image files on disk: which a folder holds (by class), which decode (checked once, cached),
and the dataset that reads them. No Lightning."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from dlzoo.data.download import default_cache_dir
from dlzoo.data.preprocess import rows_text
from dlzoo.data.preprocess.images import read_image, why_unreadable

log = logging.getLogger(__name__)

#: what dlzoo reads from image folders: torchvision's list, and GIF
IMAGE_EXTENSIONS = (*IMG_EXTENSIONS, ".gif")


def find_unreadable(
    paths: Sequence[str], cache_file: Path | None = None, workers: int | None = None
) -> dict[str, str]:
    """Decode every file once; return ``{path: reason}`` for those that cannot be read.

    Results are kept in ``cache_file`` (JSON) keyed by path, size and modification time, so a
    second run re-checks only new or changed files.
    """
    cached: dict[str, list] = {}
    if cache_file is not None and cache_file.is_file():
        try:
            cached = json.loads(cache_file.read_text())
        except (OSError, json.JSONDecodeError):
            cached = {}
    stamps = {}
    for path in paths:
        stat = os.stat(path)
        stamps[path] = [stat.st_size, stat.st_mtime_ns]
    todo = [p for p in paths if cached.get(p, [None, None])[:2] != stamps[p]]
    if todo:
        workers = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers) as pool:
            for path, reason in zip(todo, pool.map(why_unreadable, todo), strict=True):
                cached[path] = [*stamps[path], reason]
    if cache_file is not None and todo:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        keep = {p: cached[p] for p in paths}
        # a temporary file per process: DDP ranks check the same folders at the same time
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(keep))
        tmp.replace(cache_file)
    return {p: cached[p][2] for p in paths if cached[p][2] is not None}


class ImageFiles(Dataset):
    """``(image, label)`` pairs (or ``(image,)`` without labels) from a list of files."""

    def __init__(
        self, files: Sequence[str], labels: Sequence[int] | None, transform: Callable
    ) -> None:
        self.files, self.labels, self.transform = list(files), labels, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple:
        try:
            image = self.transform(read_image(self.files[index]))
        except (RuntimeError, OSError) as err:  # changed on disk since the check
            raise RuntimeError(f"cannot read image {self.files[index]}: {err}") from None
        if self.labels is None:
            return (image,)
        return image, self.labels[index]


def csv_rows(index: Any) -> str:
    """``row(s) 2, 5`` of a labels CSV (pandas row i is line i + 2)."""
    return rows_text(index, "row(s)", 2)


def labelled_files(
    folder: Path, classes: list[str], skipped: dict[str, str]
) -> tuple[list[str], list[int]]:
    """The readable images of ``folder/<class>/`` and their class indices, classes taking turns;
    what is skipped (not an image, unreadable) is logged and added to ``skipped``."""
    found = find_classes(folder)[0]
    if found != classes:
        raise ValueError(
            f"{folder} has classes {found}, but the training folder has {classes}: "
            "every split needs the same class folders"
        )
    samples = make_dataset(
        str(folder), {c: i for i, c in enumerate(classes)}, extensions=IMAGE_EXTENSIONS
    )
    used = {p for p, _ in samples}
    other = {
        str(p): f"not an image file dlzoo reads (extension {p.suffix or 'none'!r})"
        for c in classes
        for p in sorted((folder / c).rglob("*"))
        if p.is_file() and str(p) not in used
    }
    if other:
        skipped.update(other)
        shown = ", ".join(Path(p).name for p in list(other)[:5])
        more = f" (and {len(other) - 5} more)" if len(other) > 5 else ""
        log.warning("skipped %d non-image files in %s: %s%s", len(other), folder, shown, more)
    files, labels = readable_files(
        [p for p, _ in samples], [label for _, label in samples], folder, skipped
    )
    # classes taking turns (not one folder after another): every evaluation batch, the
    # sanity check's included, holds each class, so no metric sees a single class
    seen: dict[int, int] = {}
    turns = [seen.__setitem__(label, seen.get(label, -1) + 1) or seen[label] for label in labels]
    order = sorted(range(len(files)), key=lambda i: (turns[i], labels[i]))
    return [files[i] for i in order], [labels[i] for i in order]


def readable_files(
    files: list[str], labels: list[int] | None, folder: Path, skipped: dict[str, str]
) -> tuple[list[str], list[int] | None]:
    """``files`` (and their ``labels``) without those that do not decode, checked once and
    cached under ``$DLZOO_DATA/image_checks``; the others are logged and added to ``skipped``."""
    digest = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:16]
    bad = find_unreadable(files, default_cache_dir() / "image_checks" / f"{digest}.json")
    if bad:
        skipped.update(bad)
        shown = "; ".join(f"{Path(p).name}: {why}" for p, why in list(bad.items())[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        log.warning("skipped %d unreadable images in %s: %s%s", len(bad), folder, shown, more)
    keep = [i for i, path in enumerate(files) if path not in bad]
    if not keep:
        raise ValueError(f"no readable images in {folder}")
    return [files[i] for i in keep], None if labels is None else [labels[i] for i in keep]


__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFiles",
    "csv_rows",
    "find_unreadable",
    "labelled_files",
    "readable_files",
]
