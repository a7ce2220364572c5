"""ImageFolderDataModule and CatsDogsDataModule on small JPEG trees the tests write."""

from __future__ import annotations

import logging
import tarfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import write_image_tree, write_jpeg
from dlzoo.data import CatsDogsDataModule, ChecksumError, ImageFolderDataModule
from dlzoo.data.download import sha256sum


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DLZOO_DATA", str(tmp_path / "cache"))  # image checks are cached there


def _small(**kwargs) -> dict:
    return {"image_size": 32, "resize_size": 36, "batch_size": 4, "num_workers": 0, **kwargs}


def test_train_and_val_folders(tmp_path: Path) -> None:
    root = write_image_tree(tmp_path / "pets", {"train": 6, "val": 3})
    dm = ImageFolderDataModule(data_dir=str(root), **_small())
    assert (dm.classes, dm.num_classes, dm.input_shape) == (["cats", "dogs"], 2, (3, 32, 32))
    dm.setup("fit")
    images, labels = next(iter(dm.val_dataloader()))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
    assert labels.tolist() == [0, 1, 0, 1]  # the classes take turns: no single-class batch
    # ImageNet-normalised: the red "cats" have a high red channel
    assert images[0, 0].mean() > 1.0 > images[0, 2].mean()
    assert sum(len(b[1]) for b in dm.train_dataloader()) == 12


def test_one_folder_split_by_seed(tmp_path: Path) -> None:
    root = write_image_tree(tmp_path / "pets", {"train": 10}, classes=("a", "b", "c"))
    dm = ImageFolderDataModule(data_dir=str(root), val_dir=None, val_fraction=0.2, **_small())
    dm.setup("fit")
    train, val = dm._datasets["train"], dm._datasets["val"]
    assert (len(train), len(val), dm.num_classes) == (24, 6, 3)
    assert sorted(val.labels) == [0, 0, 1, 1, 2, 2]  # stratified
    assert not set(train.files) & set(val.files)
    again = ImageFolderDataModule(data_dir=str(root), val_dir=None, **_small())
    again.setup("fit")
    assert again._datasets["val"].files == val.files


def test_unreadable_images_are_skipped_and_reported(tmp_path: Path, caplog) -> None:
    root = write_image_tree(tmp_path / "pets", {"train": 5, "validation": 2})
    (root / "train" / "cats" / "empty.jpg").write_bytes(b"")
    (root / "train" / "dogs" / "text.jpg").write_text("not an image")
    good = (root / "train" / "dogs" / "dogs.0.jpg").read_bytes()
    (root / "train" / "dogs" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "train" / "cats" / "notes.txt").write_text("not an image extension: reported too")
    # a BMP saved under a .jpg name: used (PIL reads what torchvision's decoder does not)
    Image.open(root / "train" / "cats" / "cats.0.jpg").save(
        root / "train" / "cats" / "b.jpg", "BMP"
    )
    dm = ImageFolderDataModule(data_dir=str(root), val_dir="validation", **_small())
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert "skipped 3 unreadable images" in caplog.text
    assert "skipped 1 non-image files" in caplog.text
    assert {Path(p).name for p in dm.skipped} == {
        "empty.jpg",
        "text.jpg",
        "truncated.jpg",
        "notes.txt",
    }
    assert "0 bytes" in dm.skipped[str(root / "train" / "cats" / "empty.jpg")]
    assert "truncated" in dm.skipped[str(root / "train" / "dogs" / "truncated.jpg")]
    # the whole reason, not cut in the middle of a word
    assert dm.skipped[str(root / "train" / "dogs" / "text.jpg")].startswith(
        "cannot be decoded: cannot identify image file"
    )
    # a whole epoch runs over the readable ones
    assert sum(len(labels) for _, labels in dm.train_dataloader()) == 11
    # the checks are cached: a second DataModule finds the same without decoding again
    caches = (tmp_path / "cache" / "image_checks").glob("*.json")
    assert sum("truncated.jpg" in cache.read_text() for cache in caches) == 1
    again = ImageFolderDataModule(data_dir=str(root), val_dir="validation", **_small())
    again.setup("fit")
    assert again.skipped == dm.skipped


def test_augmentation_and_mismatched_classes(tmp_path: Path) -> None:
    root = write_image_tree(tmp_path / "pets", {"train": 4, "val": 2})
    dm = ImageFolderDataModule(data_dir=str(root), augment=True, **_small())
    dm.setup("fit")
    image = dm._datasets["train"][0][0]
    torch.manual_seed(0)
    views = [dm._datasets["train"][0][0] for _ in range(3)]
    assert image.shape == (3, 32, 32) and not torch.equal(views[0], views[1])
    assert torch.equal(dm._datasets["val"][0][0], dm._datasets["val"][0][0])
    write_jpeg(root / "val" / "birds" / "b.jpg", (0, 0, 0), (40, 40), 0)
    with pytest.raises(ValueError, match=r"has classes .*birds.*every split needs the same"):
        ImageFolderDataModule(data_dir=str(root), **_small()).setup("fit")


def test_predict_dir_names_each_file(tmp_path: Path) -> None:
    root = write_image_tree(tmp_path / "pets", {"train": 3, "val": 1})
    new = tmp_path / "new"
    write_jpeg(new / "a.jpg", (200, 60, 50), (50, 40), 1)
    write_jpeg(new / "sub" / "b.png", (50, 80, 200), (30, 60), 2)
    dm = ImageFolderDataModule(data_dir=str(root), predict_dir=str(new), **_small())
    dm.setup("predict")
    (images,) = next(iter(dm.predict_dataloader()))
    assert images.shape == (2, 3, 32, 32)
    assert dm.predict_row_ids == ["a.jpg", "sub/b.png"]


def test_weights_preprocessing_by_name(tmp_path: Path) -> None:
    root = write_image_tree(tmp_path / "pets", {"train": 2, "val": 1})
    dm = ImageFolderDataModule(
        data_dir=str(root), preprocessing="ResNet18_Weights.IMAGENET1K_V1", batch_size=2
    )
    dm.setup("fit")
    assert dm._datasets["val"][0][0].shape == (3, 224, 224)
    with pytest.raises(ValueError, match="unknown pretrained weights 'Nope'"):
        ImageFolderDataModule(data_dir=str(root), preprocessing="Nope")


def test_cats_dogs_from_an_archive_with_checksum(tmp_path: Path) -> None:
    tree = write_image_tree(tmp_path / "src" / "cats_and_dogs", {"train": 3, "validation": 2})
    archive = tmp_path / "cats_and_dogs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tree, arcname="cats_and_dogs")
    target = tmp_path / "data"
    with pytest.raises(ChecksumError):
        CatsDogsDataModule(
            data_dir=str(target), archive=str(archive), sha256="0" * 64
        ).prepare_data()
    assert not (target / "cats_and_dogs").exists()
    dm = CatsDogsDataModule(
        data_dir=str(target), archive=str(archive), sha256=sha256sum(archive), **_small()
    )
    with pytest.raises(FileNotFoundError, match="call prepare_data"):
        dm.classes  # a size the CLI links reads nothing from the network, extracts nothing
    dm.prepare_data()
    assert dm.classes == ["cats", "dogs"]  # extracted, top folder found
    dm.setup("fit")
    assert (len(dm._datasets["train"]), len(dm._datasets["val"])) == (6, 4)


def test_cats_dogs_missing_everywhere_says_where(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no Cats-vs-Dogs images in .*empty.*train/cats"):
        CatsDogsDataModule(data_dir=str(tmp_path / "empty"), url=None).prepare_data()
    with pytest.raises(FileNotFoundError, match="archive not found"):
        CatsDogsDataModule(
            data_dir=str(tmp_path / "e2"), archive=str(tmp_path / "x.zip")
        ).prepare_data()


def test_images_over_the_decompression_bomb_limit_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    root = write_image_tree(tmp_path / "imgs", {"train": 4, "val": 2})
    huge = root / "train" / "cats" / "huge.png"
    Image.new("RGB", (120, 100)).save(huge)
    # PIL's limit, scaled down: a 12,000-pixel image stands for a 20000x20000 one
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    dm = ImageFolderDataModule(data_dir=str(root), val_dir="val", **_small())
    dm.setup("fit")
    assert str(huge) in dm.skipped
    assert "too large to decode: 120x100 pixels" in dm.skipped[str(huge)]
    assert len(dm._datasets["train"]) == 8


def test_checking_images_in_threads_leaves_the_warning_filters_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder scan checks images in threads. Python's ``warnings.catch_warnings`` is not
    thread-safe: a check that silenced PIL's DecompressionBombWarning with it showed the warning
    now and then (a thread's filters undone by another's) and could leave them changed. The
    size check reads the header without warning at all."""
    import sys
    import warnings

    from dlzoo.data.image_files import find_unreadable

    for i in range(300):  # 12,000 pixels: over the scaled-down limit, under twice it
        Image.new("RGB", (120, 100)).save(tmp_path / f"big{i}.png")
        Image.new("RGB", (20, 10)).save(tmp_path / f"small{i}.bmp")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    interval = sys.getswitchinterval()
    paths = sorted(str(p) for p in tmp_path.iterdir())
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        filters = list(warnings.filters)
        sys.setswitchinterval(1e-6)  # threads switch often: the race shows at once
        try:
            reasons = find_unreadable(paths, cache_file=None, workers=8)
        finally:
            sys.setswitchinterval(interval)
        assert warnings.filters == filters
    assert [w for w in shown if issubclass(w.category, Image.DecompressionBombWarning)] == []
    assert sorted(reasons) == sorted(p for p in paths if "big" in p)
    assert all("too large to decode: 120x100 pixels" in r for r in reasons.values())


def test_cats_dogs_without_its_validation_folder_is_an_error_not_a_split(tmp_path: Path) -> None:
    # what an extraction killed before its validation folder was written used to leave behind
    write_image_tree(tmp_path / "cd" / "cats_and_dogs", {"train": 3})
    dm = CatsDogsDataModule(data_dir=str(tmp_path / "cd"), url=None, **_small())
    with pytest.raises(FileNotFoundError, match=r"incomplete: .*validation is missing"):
        dm.setup("fit")
    split = CatsDogsDataModule(data_dir=str(tmp_path / "cd"), url=None, val_dir=None, **_small())
    split.setup("fit")  # asked for explicitly: hold out part of train
    assert len(split._datasets["val"]) > 0


def test_plain_image_folder_without_val_folder_says_it_splits(tmp_path: Path, caplog) -> None:
    root = write_image_tree(tmp_path / "imgs", {"train": 5})
    dm = ImageFolderDataModule(data_dir=str(root), **_small())
    with caplog.at_level(logging.WARNING, logger="dlzoo.data"):
        dm.setup("fit")
    assert "no validation folder" in caplog.text and "holding out 20%" in caplog.text


def test_gif_palette_and_alpha_images_are_used_other_files_reported(tmp_path: Path) -> None:
    from PIL import Image

    root = write_image_tree(tmp_path / "imgs", {"train": 4, "val": 2})
    cats = root / "train" / "cats"
    Image.new("P", (30, 20), color=3).save(cats / "palette.gif")
    Image.new("RGBA", (30, 20), (200, 60, 50, 128)).save(cats / "alpha.png")
    Image.new("RGB", (30, 20), (200, 60, 50)).save(cats / "plain.bmp")
    Image.new("RGB", (30, 20), (200, 60, 50)).save(cats / "photo.webp")
    (cats / "notes.txt").write_text("not an image")
    dm = ImageFolderDataModule(data_dir=str(root), val_dir="val", **_small())
    dm.setup("fit")
    used = set(dm._datasets["train"].files)
    for name in ("palette.gif", "alpha.png", "plain.bmp", "photo.webp"):
        assert str(cats / name) in used
    assert "not an image file dlzoo reads" in dm.skipped[str(cats / "notes.txt")]
    images, _ = next(iter(dm.train_dataloader()))
    assert images.shape[1:] == (3, 32, 32)
