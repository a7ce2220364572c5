"""Export bundles on disk: the folder's ``dlzoo-bundle.json`` with the sha256 of every file, and
the model file run as a caller outside dlzoo would (ONNX Runtime or ``torch.jit.load``)."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

BUNDLE_FILE = "dlzoo-bundle.json"
BUNDLE_VERSION = 1


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def package_version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


class ExportedModel:
    """An exported model file run as a caller would: ONNX Runtime or ``torch.jit.load``.

    ``run(inputs)`` takes numpy arrays by input name and returns numpy arrays by output name.
    """

    def __init__(self, path: str | Path, output_names: Sequence[str]) -> None:
        self.path, self.output_names = Path(path), list(output_names)
        if self.path.suffix == ".onnx":
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            self._session = onnxruntime.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
            self.input_names = [i.name for i in self._session.get_inputs()]
        else:
            with warnings.catch_warnings():
                # TorchScript is deprecated in favour of torch.export; the user chose the format
                warnings.filterwarnings("ignore", message=".*torch.jit.load.* is deprecated")
                self._module = torch.jit.load(str(self.path), map_location="cpu").eval()

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.path.suffix == ".onnx":
            # an input the graph does not read (a vanilla RNN ignores lengths) was dropped
            feed = {name: inputs[name] for name in self.input_names}
            return dict(zip(self.output_names, self._session.run(None, feed), strict=True))
        with torch.inference_mode():
            out = self._module(*(torch.from_numpy(np.asarray(v)) for v in inputs.values()))
        out = out if isinstance(out, tuple) else (out,)
        return {n: o.numpy() for n, o in zip(self.output_names, out, strict=True)}


def load_bundle(path: str | Path) -> tuple[dict[str, Any], ExportedModel]:
    """A bundle's JSON and its model, after checking every file's sha256."""
    folder = Path(path)
    folder = folder.parent if folder.name == BUNDLE_FILE else folder
    bundle = json.loads((folder / BUNDLE_FILE).read_text())
    for name, digest in bundle["files"].items():
        if sha256_file(folder / name) != digest:
            raise ValueError(f"{folder / name} does not match the sha256 in {BUNDLE_FILE}")
    names = [o["name"] for o in bundle["outputs"]]
    return bundle, ExportedModel(folder / bundle["model_file"], names)


__all__ = [
    "BUNDLE_FILE",
    "BUNDLE_VERSION",
    "ExportedModel",
    "load_bundle",
    "package_version",
    "sha256_file",
]
