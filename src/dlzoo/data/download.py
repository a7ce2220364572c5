"""Fetch a file once, check it, and unpack archives safely.

Every dataset that can be downloaded goes through :func:`download_file` (official URL, sha256 check,
cache directory) and :func:`extract_archive` (no member may land outside the target directory). When a
file is missing and cannot be fetched (offline machine, dead URL), :class:`DownloadError` says which
file, where to put it, and where to get it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
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


def extract_archive(archive: str | Path, directory: str | Path) -> Path:
    """Extract a ``.tar``, ``.tar.gz``/``.tgz`` or ``.zip`` into ``directory`` and return it.

    Members with absolute paths, ``..`` components, or links pointing outside ``directory`` are refused
    before anything is written.
    """
    archive, root = Path(archive), Path(directory).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                _safe_target(root, name)
            zf.extractall(root)
        return root
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for member in members:
                _safe_target(root, member.name)
                if member.issym() or member.islnk():
                    # a symlink resolves from its own folder, a hard link from the archive root
                    base = (root / member.name).parent if member.issym() else root
                    _safe_target(root, os.path.relpath(base / member.linkname, root))
                if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                    raise ValueError(f"archive member {member.name!r} is a device or fifo: refused")
            # The "data" filter (Python >= 3.12, backported to 3.10.12/3.11.4) re-checks all of the
            # above inside the standard library; older interpreters rely on the checks we just made.
            if hasattr(tarfile, "data_filter"):
                tf.extractall(root, members=members, filter="data")
            else:  # pragma: no cover - only on old patch releases
                tf.extractall(root, members=members)
        return root
    raise ValueError(f"{archive} is not a tar or zip archive")
