"""The Cats-vs-Dogs preset of the image folders (book chapter 6): its layout, archive and URL."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from dlzoo.data.download import (
    MAX_EXTRACT_BYTES,
    check_sha256,
    default_cache_dir,
    download_file,
    extract_archive,
)
from dlzoo.data.images import ImageFolderDataModule
from dlzoo.registry import register_datamodule

log = logging.getLogger(__name__)


#: Google's cats_and_dogs_filtered (2,000 train + 1,000 validation Kaggle images)
CATS_DOGS_URL = "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip"


@register_datamodule("cats_dogs")
class CatsDogsDataModule(ImageFolderDataModule):
    """Cats vs Dogs (book chapter 6): ``train/{cats,dogs}`` and ``validation/{cats,dogs}``.

    Point ``data_dir`` at an extracted copy, or give ``archive`` (a local ``.zip``/``.tar``) or
    ``url`` and it is extracted into ``data_dir`` on first use. The default URL is Google's
    ``cats_and_dogs_filtered.zip``; its sha256 is not pinned here (it could not be fetched to
    compute one), so pass ``sha256`` to have the download checked.

    Args:
        data_dir: where the images are, or are extracted to (default ``$DLZOO_DATA/cats_dogs``).
        archive: a local archive of the images to extract when ``data_dir`` has none.
        url: where to download the archive from when neither is there.
        sha256: checksum of the archive (local or downloaded).
        val_dir: the validation folder's name (``validation`` in the Kaggle-derived archives). It
            must exist unless set to ``None`` (then ``val_fraction`` of ``train`` is held out).
        max_extract_bytes: refuse an archive that expands to more than this (``None``: no limit).
        **kwargs: image size, augmentation, batch size ... of :class:`ImageFolderDataModule`.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        archive: str | None = None,
        url: str | None = CATS_DOGS_URL,
        sha256: str | None = None,
        val_dir: str | None = "validation",
        max_extract_bytes: int | None = MAX_EXTRACT_BYTES,
        **kwargs: Any,
    ) -> None:
        data_dir = data_dir or str(default_cache_dir() / "cats_dogs")
        super().__init__(data_dir=data_dir, val_dir=val_dir, **kwargs)
        self.archive, self.url, self.sha256 = archive, url, sha256
        self.max_extract_bytes = max_extract_bytes

    def _has_images(self) -> bool:
        try:
            self._root()
        except FileNotFoundError:
            return False
        return True

    def prepare_data(self) -> None:
        if self._has_images():
            return
        if self.archive:
            archive = Path(self.archive)
            if not archive.is_file():
                raise FileNotFoundError(f"Cats-vs-Dogs archive not found: {archive}")
            if self.sha256:
                check_sha256(archive, self.sha256)
        elif self.url:
            if not self.sha256:
                log.warning("downloading %s without a sha256 to check it against", self.url)
            archive = download_file(self.url, self.data_dir, sha256=self.sha256)
        else:
            raise FileNotFoundError(
                f"no Cats-vs-Dogs images in {self.data_dir} (expected {self.train_dir}/cats, "
                f"{self.train_dir}/dogs): pass archive or url, or extract {CATS_DOGS_URL} there"
            )
        extract_archive(archive, self.data_dir, self.max_extract_bytes)
        self._root()  # the archive must hold the expected layout

    def _val_folder(self, root: Path) -> Path | None:
        if self.val_dir and not (root / self.val_dir).is_dir():
            # never a silent fallback split: a missing validation folder means damaged data
            raise FileNotFoundError(
                f"Cats-vs-Dogs data in {root} is incomplete: {root / self.val_dir} is missing "
                f"(found {self.train_dir}). Delete {root} and run again to re-extract it, or set "
                "val_dir: null to hold out val_fraction of the training images instead."
            )
        return super()._val_folder(root)

    @property
    def classes(self) -> list[str]:
        if self._classes is None and not self._has_images():
            source = self.archive or self.url or CATS_DOGS_URL
            raise FileNotFoundError(
                f"no Cats-vs-Dogs images in {self.data_dir} yet: call prepare_data() to extract "
                f"{source} there (the dlzoo command and Lightning's Trainer do)"
            )
        return super().classes


__all__ = ["CATS_DOGS_URL", "CatsDogsDataModule"]
