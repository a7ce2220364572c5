"""Export bundles on disk: the folder's ``dlzoo-bundle.json`` with the sha256 of every file and
of its own content, and its model file run as a caller outside dlzoo would
(:class:`~dlzoo.onnx_io.ExportedModel`: ONNX Runtime or ``torch.jit.load``).

A bundle is sealed: :func:`load_bundle` refuses a folder whose JSON was edited (its ``sha256``
covers every other field), whose files differ from their digests, that holds files the manifest
does not list, or whose manifest names a path outside the folder.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from dlzoo.onnx_io import ExportedModel

BUNDLE_FILE = "dlzoo-bundle.json"
#: 2: the JSON's own ``sha256`` and the ``preprocessor`` block (1: files' digests only)
BUNDLE_VERSION = 2


class BundleError(ValueError):
    """A bundle folder that cannot be trusted or read; the message names the file."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def content_sha256(bundle: dict[str, Any]) -> str:
    """The digest of a bundle JSON's content: every field but ``sha256``, canonical JSON."""
    fields = {k: v for k, v in bundle.items() if k != "sha256"}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def seal(bundle: dict[str, Any]) -> dict[str, Any]:
    """``bundle`` with its ``sha256`` field set (written last, over everything else)."""
    return {**bundle, "sha256": content_sha256(bundle)}


def package_version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def default_threads() -> int:
    """The CPU cores this process may use (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _inside(folder: Path, name: Any) -> Path:
    """``folder / name``, refused unless it is a plain file name inside ``folder``."""
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise BundleError(f"{folder / BUNDLE_FILE} names {name!r}: not a file of the bundle folder")
    path = folder / name
    if path.is_symlink() or not path.resolve().is_relative_to(folder.resolve()):
        raise BundleError(f"{folder / BUNDLE_FILE} names {name!r}, which points outside {folder}")
    return path


def read_bundle(path: str | Path) -> tuple[dict[str, Any], Path]:
    """A bundle's JSON and folder, after checking the JSON's own digest, every file's digest
    and that the folder holds nothing else. Raises :class:`BundleError`."""
    folder = Path(path)
    folder = folder.parent if folder.name == BUNDLE_FILE else folder
    json_file = folder / BUNDLE_FILE
    if not json_file.is_file():
        raise BundleError(
            f"{folder} is not a dlzoo bundle: it has no {BUNDLE_FILE} (write one with "
            "dlzoo export --ckpt_path ... --output DIR)"
        )
    try:
        bundle = json.loads(json_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"{json_file} is not valid JSON: {err}") from None
    if not isinstance(bundle, dict) or bundle.get("format") != "dlzoo-bundle":
        raise BundleError(f"{json_file} is not a dlzoo bundle JSON")
    version = bundle.get("bundle_version")
    if type(version) is not int or not 1 <= version <= BUNDLE_VERSION:
        raise BundleError(
            f"{json_file}: bundle_version {version!r} is not one this dlzoo reads (1 to "
            f"{BUNDLE_VERSION}, a whole number)"
        )
    if version == 1 and ("preprocessor" in bundle or "sha256" in bundle):
        # version 1 (0.1.0.dev0 before the seal) wrote neither: a JSON that says 1 but has one
        # was edited, e.g. to skip the seal
        raise BundleError(
            f"{json_file} says bundle_version 1 but carries a preprocessor block or a sha256, "
            "and version 1 bundles had none: it was edited after export"
        )
    if version >= 2 and bundle.get("sha256") != content_sha256(bundle):
        raise BundleError(f"{json_file} was changed after export: its sha256 does not match")
    files = bundle.get("files")
    if not isinstance(files, dict) or bundle.get("model_file") not in files:
        raise BundleError(f"{json_file}: its file list does not name the model file")
    for name, digest in files.items():
        file = _inside(folder, name)
        if not file.is_file():
            raise BundleError(f"{file} is missing from the bundle")
        if sha256_file(file) != digest:
            raise BundleError(f"{file} does not match the sha256 in {BUNDLE_FILE}")
    extra = sorted(p.name for p in folder.iterdir() if p.name not in {*files, BUNDLE_FILE})
    if extra:
        raise BundleError(f"{folder} holds files the bundle does not list: {extra[:5]}")
    return bundle, folder


def load_bundle(
    path: str | Path, threads: int | None = None
) -> tuple[dict[str, Any], ExportedModel]:
    """A bundle's JSON and its model, after :func:`read_bundle`'s checks."""
    bundle, folder = read_bundle(path)
    names = [o["name"] for o in bundle["outputs"]]
    return bundle, ExportedModel(_inside(folder, bundle["model_file"]), names, threads)


def load_preprocessor(bundle: dict[str, Any], folder: Path) -> Any:
    """The bundle's preprocessor object (``encode`` / ``collate``), rebuilt from its
    ``preprocessor`` block: a dlzoo class and its plain arguments."""
    block = bundle.get("preprocessor")
    if not isinstance(block, dict):
        raise BundleError(
            f"{folder / BUNDLE_FILE} (bundle_version {bundle.get('bundle_version', 1)}) does not "
            "carry its preprocessor: export it again with this dlzoo"
        )
    from dlzoo.data.preprocess import PREPROCESSORS

    # only dlzoo's preprocessors, from their light module: a bundle names no module to import
    # (bundles of 0.1.0.dev0 name the DataModule's file, which imports Lightning)
    module, _, name = str(block.get("class", "")).rpartition(".")
    if not module.startswith("dlzoo.") or name not in PREPROCESSORS:
        raise BundleError(f"{folder / BUNDLE_FILE}: no dlzoo preprocessor {block.get('class')!r}")
    cls = getattr(importlib.import_module(PREPROCESSORS[name]), name)
    return cls.from_bundle(block.get("init_args", {}), folder)


__all__ = [
    "BUNDLE_FILE",
    "BUNDLE_VERSION",
    "BundleError",
    "ExportedModel",
    "content_sha256",
    "default_threads",
    "load_bundle",
    "load_preprocessor",
    "package_version",
    "read_bundle",
    "seal",
    "sha256_file",
]
