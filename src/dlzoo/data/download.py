"""Fetch a file once, check it, and unpack archives safely.

Every dataset that can be downloaded goes through :func:`download_file` (official URL, sha256 check,
cache directory) and :func:`extract_archive` (no member may land outside the target directory). When a
file is missing and cannot be fetched (offline machine, dead URL), :class:`DownloadError` says which
file, where to put it, and where to get it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A dataset file is missing and could not be fetched."""


class ChecksumError(RuntimeError):
    """A file's sha256 is not the one expected: a corrupt or wrong download."""


def default_cache_dir() -> Path:
    """``$DLZOO_DATA`` if set, else ``$XDG_CACHE_HOME/dlzoo`` (``~/.cache/dlzoo``)."""
    env = os.environ.get("DLZOO_DATA")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "dlzoo"


def sha256sum(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(path: str | Path, expected: str) -> None:
    actual = sha256sum(path)
    if actual != expected.lower():
        raise ChecksumError(
            f"{path} has sha256 {actual}, expected {expected}. The file is corrupt or not the "
            "expected one (an HTML error page saved under the right name looks like this): delete it "
            "and download it again."
        )


def download_file(
    url: str,
    directory: str | Path | None = None,
    filename: str | None = None,
    sha256: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Return ``directory/filename``, downloading it from ``url`` first if it is not there.

    An existing file is checked against ``sha256`` too. The download goes to a temporary file in the
    same directory and is renamed only once its checksum matches, so an interrupted or wrong download
    never leaves a file that looks complete.
    """
    directory = Path(directory) if directory is not None else default_cache_dir()
    filename = filename or Path(urllib.request.urlparse(url).path).name
    if not filename:
        raise ValueError(f"cannot tell a file name from {url!r}: pass filename=")
    target = directory / filename
    if target.is_file():
        if sha256:
            check_sha256(target, sha256)
        return target

    directory.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s to %s", url, target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out, _CHUNK)
        if sha256:
            check_sha256(tmp, sha256)
        tmp.replace(target)
    except ChecksumError:
        tmp.unlink(missing_ok=True)
        raise
    except OSError as err:  # URLError, HTTPError, timeouts and socket errors are all OSErrors
        tmp.unlink(missing_ok=True)
        raise DownloadError(
            f"{filename} is not in {directory} and could not be downloaded from {url} ({err}). "
            f"On an offline machine, get it from {url} elsewhere and place it at {target}"
            + (f" (sha256 {sha256})." if sha256 else ".")
        ) from err
    return target


def _safe_target(root: Path, name: str) -> Path:
    target = (root / name).resolve()
    if target != root and root not in target.parents:
        raise ValueError(f"archive member {name!r} would be written outside {root}: refused")
    return target


#: the most an archive may expand to unless told otherwise (aclImdb: 0.5 GB; full Cats vs Dogs: 0.8 GB)
MAX_EXTRACT_BYTES = 8 << 30


def _size(count: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift:
            return f"{count / (1 << shift):.1f} {unit} ({count:,} bytes)"
    return f"{count:,} bytes"


class ArchiveTooLargeError(ValueError):
    """An archive would expand to more bytes than allowed (a zip bomb, or a larger data set)."""


def _checked_members(archive: Path, root: Path) -> int:
    """Refuse unsafe members before anything is written; return the bytes the archive expands to."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _safe_target(root, info.filename)
            # zipfile never writes more than a member's declared size (it stops there and checks
            # the CRC), so the declared sizes bound what extraction writes
            return sum(info.file_size for info in zf.infolist())
    if tarfile.is_tarfile(archive):
        total = 0
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                _safe_target(root, member.name)
                if member.issym() or member.islnk():
                    # a symlink resolves from its own folder, a hard link from the archive root
                    base = (root / member.name).parent if member.issym() else root
                    _safe_target(root, os.path.relpath(base / member.linkname, root))
                if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                    raise ValueError(f"archive member {member.name!r} is a device or fifo: refused")
                total += member.size if member.isfile() else 0
        return total
    raise ValueError(f"{archive} is not a tar or zip archive")


def _unpack(archive: Path, root: Path) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(root)
        return
    with tarfile.open(archive) as tf:
        # The "data" filter (Python >= 3.12, backported to 3.10.12/3.11.4) re-checks the member
        # checks inside the standard library; older interpreters rely on _checked_members.
        if hasattr(tarfile, "data_filter"):
            tf.extractall(root, filter="data")
        else:  # pragma: no cover - only on old patch releases
            tf.extractall(root)


def extraction_marker(archive: str | Path, directory: str | Path) -> Path:
    """The file :func:`extract_archive` writes once every member of ``archive`` is in place."""
    return Path(directory) / f".{Path(archive).name}.extracted"


def _undo_interrupted(root: Path, archive: Path, journal: Path) -> None:
    """Remove what a killed extraction of ``archive`` left: its staging folders, and top-level
    entries it had started moving into place (listed in the journal before the first move)."""
    for staging in root.glob(f".partial-{archive.name}-*"):
        shutil.rmtree(staging, ignore_errors=True)
    if journal.is_file():
        for name in json.loads(journal.read_text() or "[]"):
            target = root / name
            log.warning("removing %s, left incomplete by an interrupted extraction", target)
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
        journal.unlink()


def extract_archive(
    archive: str | Path, directory: str | Path, max_bytes: int | None = MAX_EXTRACT_BYTES
) -> Path:
    """Extract a ``.tar``, ``.tar.gz``/``.tgz`` or ``.zip`` into ``directory`` and return it.

    Atomic: members are unpacked into a staging folder beside their destination and moved into
    place only when all of them are out, so a run killed midway leaves nothing that looks like
    data (the next call cleans up and starts again); :func:`extraction_marker` then records it.
    Members with absolute paths, ``..`` components, links pointing outside ``directory``,
    devices, or a total size above ``max_bytes`` (``None``: no limit) are refused before
    anything is written.
    """
    archive, root = Path(archive), Path(directory).resolve()
    root.mkdir(parents=True, exist_ok=True)
    with locked(root / f".{archive.name}.lock"):  # DDP ranks and parallel runs take turns
        marker = extraction_marker(archive, root)
        if marker.is_file():
            entries = json.loads(marker.read_text()).get("entries", [])
            if all((root / name).exists() for name in entries):
                return root  # extracted by another process meanwhile
            marker.unlink()
        _extract(archive, root, max_bytes)
    return root


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on the file ``path`` (created if missing) for the ``with`` block: the
    processes of this machine that take it take turns (``filelock``; every platform)."""
    from filelock import FileLock

    with FileLock(str(path)):
        yield


def _extract(archive: Path, root: Path, max_bytes: int | None) -> None:
    journal = root / f".{archive.name}.extracting"
    _undo_interrupted(root, archive, journal)
    total = _checked_members(archive, root)
    if max_bytes is not None and total > max_bytes:
        raise ArchiveTooLargeError(
            f"{archive} would expand to {_size(total)}, more than the limit of {_size(max_bytes)}: "
            "a damaged or malicious archive (a zip bomb), or a larger data set than expected. "
            "If you trust it, raise the limit (max_extract_bytes, or null for none)."
        )
    free = shutil.disk_usage(root).free
    if total > free:
        raise OSError(
            f"{archive} expands to {_size(total)} but {root} has {_size(free)} free: make room "
            "or extract elsewhere"
        )
    staging = Path(tempfile.mkdtemp(prefix=f".partial-{archive.name}-", dir=root))
    try:
        _unpack(archive, staging)
        entries = sorted(p.name for p in staging.iterdir())
        taken = [name for name in entries if (root / name).exists()]
        if taken:
            raise FileExistsError(
                f"extracting {archive} into {root}: {', '.join(taken)} already there and not "
                "written by a complete extraction of this archive. Delete it (or use another "
                "folder) and run again."
            )
        journal.write_text(json.dumps(entries))
        for name in entries:  # one rename per top-level entry (usually a single folder)
            (staging / name).rename(root / name)
        info = {"archive": str(archive), "bytes": total, "entries": entries}
        extraction_marker(archive, root).write_text(json.dumps(info))
        journal.unlink()
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def file_key(path: Path) -> str:
    """A cache key of a file: its resolved path, size and modification time."""
    if not path.is_file():
        raise FileNotFoundError(f"text CSV not found: {path}")
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
