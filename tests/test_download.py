"""Download helper: checksums, cache directory, offline errors, and safe extraction."""

from __future__ import annotations

import hashlib
import io
import os
import random
import signal
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from dlzoo.data.download import (
    ArchiveTooLargeError,
    ChecksumError,
    DownloadError,
    default_cache_dir,
    download_file,
    extract_archive,
    extraction_marker,
)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "remote" / "data.csv"
    path.parent.mkdir()
    path.write_text("a,b\n1,2\n")
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_checks_sha256_and_caches(source: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    got = download_file(source.as_uri(), cache, sha256=sha(source))
    assert got == cache / "data.csv" and got.read_text() == source.read_text()
    source.unlink()  # a second call must not go to the network
    assert download_file(source.as_uri(), cache, sha256=sha(got)) == got


def test_wrong_sha256_is_refused_and_leaves_nothing(source: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match="expected 0000"):
        download_file(source.as_uri(), cache, sha256="0" * 64)
    assert list(cache.iterdir()) == []  # no partial or wrong file that looks complete


def test_existing_file_with_wrong_sha256_is_refused(source: Path) -> None:
    with pytest.raises(ChecksumError, match="corrupt"):
        download_file("file:///nowhere/data.csv", source.parent, sha256="f" * 64)


def test_offline_error_names_file_place_and_url(tmp_path: Path) -> None:
    url = (tmp_path / "missing" / "weights.pth").as_uri()
    with pytest.raises(DownloadError) as err:
        download_file(url, tmp_path / "cache", sha256="a" * 64)
    message = str(err.value)
    assert "weights.pth" in message and url in message
    assert str(tmp_path / "cache" / "weights.pth") in message


def test_cache_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DLZOO_DATA", str(tmp_path / "d"))
    assert default_cache_dir() == tmp_path / "d"
    monkeypatch.delenv("DLZOO_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "dlzoo"


def _tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return path


def test_extract_tar(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "ok.tar.gz", {"aclImdb/train/pos/0_9.txt": b"great"})
    out = extract_archive(archive, tmp_path / "out")
    assert (out / "aclImdb/train/pos/0_9.txt").read_bytes() == b"great"


@pytest.mark.parametrize("name", ["../evil.txt", "ok/../../evil.txt", "/tmp/dlzoo-evil.txt"])
def test_tar_member_outside_target_is_refused(tmp_path: Path, name: str) -> None:
    archive = _tar(tmp_path / "bad.tar.gz", {"fine.txt": b"x", name: b"owned"})
    with pytest.raises(ValueError, match="outside"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out" / "fine.txt").exists()  # refused before anything is written


def test_tar_symlink_escaping_is_refused(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "link.tar.gz", {}, links={"data/passwd": "../../../etc/passwd"})
    with pytest.raises(ValueError, match="outside"):
        extract_archive(archive, tmp_path / "out")


def test_zip_member_outside_target_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../evil.txt", "owned")
    with pytest.raises(ValueError, match="outside"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_not_an_archive(tmp_path: Path) -> None:
    path = tmp_path / "page.tar.gz"
    path.write_text("<html>404 Not Found</html>")
    with pytest.raises(ValueError, match="not a tar or zip"):
        extract_archive(path, tmp_path / "out")


def _zip_of_zeros(path: Path, size: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", b"\0" * size)
    return path


def test_archive_expanding_past_the_limit_is_refused_before_writing(tmp_path: Path) -> None:
    bomb = _zip_of_zeros(tmp_path / "bomb.zip", 4 << 20)  # 4 MB of zeros: a few kB zipped
    assert bomb.stat().st_size < 50_000
    out = tmp_path / "out"
    with pytest.raises(
        ArchiveTooLargeError, match=r"would expand to 4.0 MiB .*limit of 1.0 MiB.*max_extract_bytes"
    ):
        extract_archive(bomb, out, max_bytes=1 << 20)
    assert [p.name for p in out.iterdir()] == [".bomb.zip.lock"]  # nothing extracted
    extract_archive(bomb, out, max_bytes=None)  # the override
    assert (out / "zeros.bin").stat().st_size == 4 << 20


def _archive_of_tree(tmp_path: Path, files: int = 300) -> Path:
    """A tar with two top-level folders of many small files (slow enough to be killed midway)."""
    src = tmp_path / "src"
    for split in ("train", "validation"):
        for i in range(files):
            path = src / split / "x" / f"{i}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(2048))
    archive = tmp_path / "tree.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for split in ("train", "validation"):
            tar.add(src / split, arcname=split)
    return archive


def test_extraction_killed_at_random_points_is_redone_never_used_half_done(
    tmp_path: Path,
) -> None:
    archive = _archive_of_tree(tmp_path)
    rng = random.Random(0)
    for attempt in range(5):
        out = tmp_path / f"out{attempt}"
        pid = os.fork()
        if pid == 0:  # the child extracts until it is killed (no cleanup, like a real crash)
            try:
                extract_archive(archive, out)
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.0, 0.25))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        # whatever the kill left, nothing of it looks like data: no top-level entry is there
        # unless the extraction finished (its marker written)
        if not extraction_marker(archive, out).exists():
            # a child killed before it made the folder (a busy machine) left nothing at all
            found = out.iterdir() if out.exists() else []
            leftovers = [p for p in found if p.name in ("train", "validation")]
            journal = out / ".tree.tar.gz.extracting"
            assert not leftovers or journal.exists(), (attempt, leftovers)
        extract_archive(archive, out)  # the next run completes the extraction
        for split in ("train", "validation"):
            assert len(list((out / split / "x").iterdir())) == 300
        assert not list(out.glob(".partial-*"))
        assert extraction_marker(archive, out).is_file()


def test_leftover_of_an_old_unfinished_extraction_is_named(tmp_path: Path) -> None:
    archive = _archive_of_tree(tmp_path, files=3)
    out = tmp_path / "out"
    (out / "train").mkdir(parents=True)  # written by something else, not a complete extraction
    with pytest.raises(FileExistsError, match=r"train already there .* Delete it"):
        extract_archive(archive, out)
