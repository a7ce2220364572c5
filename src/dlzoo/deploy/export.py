"""``dlzoo export``: a trained model and its preprocessing as a self-describing bundle.

A bundle is a folder with the network (``model.onnx`` or ``model.pt``), the files its
preprocessing needs (``vocab.json`` for text) and ``dlzoo-bundle.json``: input and output names
and shapes, class names, every preprocessing parameter (scaler statistics, category maps,
tokenizer settings, image sizes and normalisation), versions, the parity measured at export
time and the sha256 of every file. The network takes *preprocessed* tensors (what
``datamodule.encode_inputs`` + ``collate_inputs`` make of raw inputs) and returns class
probabilities, so a caller in any language can score raw inputs with the JSON and ONNX Runtime.

Text models take ``tokens (N, T)`` and ``lengths (N,)``. A packed LSTM (ImprovedRNN) is exported
as :class:`~dlzoo.networks.rnn.PaddedLSTM`, the same computation on padded input, and the parity
check proves it. What is traced is ``model.predictor()``: a copy of the plain network and the
task's output head, with no LightningModule inside.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

from dlzoo.data.base import DataModule
from dlzoo.deploy.bundle import (
    BUNDLE_FILE,
    BUNDLE_VERSION,
    BundleError,
    load_bundle,
    package_version,
    read_bundle,
    seal,
    sha256_file,
)
from dlzoo.models.base import TaskModule
from dlzoo.onnx_io import ONNX_OPSET, ExportedModel, batch_axes, write_onnx
from dlzoo.registry import MODELS, load_builtins

log = logging.getLogger(__name__)

ExportFormat = Literal["onnx", "torchscript"]
#: largest difference of exported and eager outputs accepted at export time. float32 kernels of
#: ONNX Runtime and of torch sum in different orders: about 1e-7 on probabilities is typical.
PARITY_TOLERANCE = 1e-5


class ExportError(ValueError):
    """A model or DataModule that cannot be exported; the message says why."""


# --------------------------------------------------------------------------- the network
class InferenceNetwork(nn.Module):
    """What an exported model computes: preprocessed inputs in, probabilities out.

    Classifiers return ``probabilities (N, num_classes)`` (binary models: ``[1 - p, p]``);
    an AutoEncoder returns ``reconstruction``, ``latent`` and the per-row mean squared
    reconstruction ``error``, as ``dlzoo predict`` writes them.
    """

    def __init__(self, model: TaskModule) -> None:
        super().__init__()
        self.task = model.task
        # a plain module: a copy of the network and the task's output head, no LightningModule
        self.predictor = model.predictor().cpu().eval().requires_grad_(False)

    def forward(self, *inputs: torch.Tensor) -> Any:
        out = self.predictor(*inputs)
        values = tuple(v.float() for v in self.task.exported(out).values())
        return values if len(values) > 1 else values[0]

    @property
    def output_names(self) -> list[str]:
        return list(self.task.output_names)


def eager_outputs(model: pl.LightningModule, batch: Any) -> dict[str, np.ndarray]:
    """The Lightning model's own predictions (``predict_step``) on a preprocessed batch, named as
    the exported outputs: what every exported file is compared with."""
    model.eval()
    with torch.inference_mode():
        out = model.predict_step((batch,), 0)
    return {k: v.float().numpy() for k, v in model.task.exported(out).items()}


# ------------------------------------------------------------------------- example inputs
def input_names(datamodule: DataModule) -> list[str]:
    return list(datamodule.preprocessor.input_names)


def example_batch(datamodule: DataModule, batch_size: int, length: int = 9) -> Any:
    """A preprocessed batch of the shape raw inputs become (values are arbitrary but valid)."""
    return datamodule.preprocessor.example(batch_size, length)


def _as_tuple(batch: Any) -> tuple[torch.Tensor, ...]:
    return tuple(batch) if isinstance(batch, tuple | list) else (batch,)


# ------------------------------------------------------------------------------- checks
def check_exportable(model: pl.LightningModule, datamodule: pl.LightningDataModule) -> None:
    """Raise :class:`ExportError` with one line saying why, before anything is written."""
    if not isinstance(model, TaskModule):
        load_builtins()
        raise ExportError(
            f"cannot export {type(model).__name__}: only dlzoo models export "
            f"(registered: {', '.join(sorted(MODELS))})"
        )
    if not isinstance(datamodule, DataModule):
        raise ExportError(
            f"cannot export with {type(datamodule).__name__}: it does not describe its "
            "preprocessing; use a dlzoo DataModule (dlzoo.data.base.DataModule)"
        )
    example = _as_tuple(datamodule.preprocessor.example(1))
    if model.task.name == "reconstruction" and not torch.is_floating_point(example[0]):
        raise ExportError("cannot export an autoencoder of token ids: it has no float input")
    uninitialised = [
        name
        for name, p in model.named_parameters()
        if isinstance(p, nn.parameter.UninitializedParameter)
    ]
    if uninitialised:
        raise ExportError(
            f"cannot export {type(model).__name__}: parameters {uninitialised[:3]} are not "
            "initialised (lazy layers); load a checkpoint or run one batch first"
        )


def check_replaceable(output: Path) -> None:
    """Raise :class:`ExportError` unless ``output`` is missing, empty, or a bundle holding
    only the files its manifest lists (which export may replace)."""
    if not output.exists() or not any(output.iterdir()):
        return
    if not (output / BUNDLE_FILE).is_file():
        raise ExportError(f"{output} exists and is not a dlzoo bundle: choose an empty folder")
    try:
        bundle = json.loads((output / BUNDLE_FILE).read_text())
        listed = {*bundle["files"], BUNDLE_FILE}
    except (ValueError, KeyError, TypeError):
        raise ExportError(
            f"{output / BUNDLE_FILE} cannot be read: choose an empty folder"
        ) from None
    foreign = sorted(p.name for p in output.iterdir() if p.name not in listed)
    if foreign:
        raise ExportError(
            f"{output} holds files the bundle did not write ({', '.join(foreign[:5])}): "
            "move them or choose an empty folder; nothing was written"
        )


# ---------------------------------------------------------------------------- exporters
def _export_onnx(
    network: InferenceNetwork,
    example: tuple,
    names: list[str],
    path: Path,
    max_length: int | None,
    dynamo: bool,
) -> str:
    """Write ``path`` with the dynamo-based exporter or the TorchScript-based one; returns the
    exporter's name."""
    outputs = network.output_names
    limits = {"sequence": max_length} if max_length else None
    axes = batch_axes(names, outputs)
    return write_onnx(network, example, path, names, outputs, axes, dynamo, limits)


def _export_torchscript(network: InferenceNetwork, example: tuple, path: Path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shapes read as Python numbers
        traced = torch.jit.trace(network, example, check_trace=False)
    traced.save(str(path))
    return "torch.jit.trace"


def _parity(
    exported: ExportedModel,
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    names: list[str],
) -> dict[str, Any]:
    """Largest difference between the exported file and the Lightning model, at two batch sizes
    (and, for text, two sequence lengths)."""
    lengths = datamodule.preprocessor.parity_lengths
    worst, checked = 0.0, []
    for batch_size in (1, 7):
        for length in lengths:
            batch = example_batch(datamodule, batch_size, length)
            feed = {n: t.numpy() for n, t in zip(names, _as_tuple(batch), strict=True)}
            expected = eager_outputs(model, batch)
            got = exported.run(feed)
            for name, value in expected.items():
                worst = max(worst, float(np.abs(got[name] - value).max()))
            checked.append([batch_size, length] if len(lengths) > 1 else batch_size)
    return {"max_abs_diff": worst, "tolerance": PARITY_TOLERANCE, "checked": checked}


def refuse_non_finite_outputs(model: TaskModule, datamodule: DataModule) -> None:
    """Raise :class:`ExportError` where the model's outputs on the parity batches are not all
    finite: broken weights (a diverged run) would export with a parity of 0 (NaN equals
    nothing) and serve null answers."""
    for length in datamodule.preprocessor.parity_lengths:
        for name, value in eager_outputs(model, example_batch(datamodule, 7, length)).items():
            if not np.isfinite(value).all():
                raise ExportError(
                    f"cannot export {type(model).__name__}: the network gives non-finite outputs "
                    f"(NaN or inf) in {name!r} on the parity batch; its weights are broken (a "
                    "diverged run?). Nothing was written."
                )


def _tensor_spec(name: str, array: np.ndarray, dynamic: dict[int, str]) -> dict[str, Any]:
    shape: list[Any] = list(array.shape)
    for axis, label in dynamic.items():
        shape[axis] = label
    return {"name": name, "dtype": str(array.dtype), "shape": shape}


def _registered_name(model: pl.LightningModule) -> str | None:
    return next((n for n, cls in MODELS.items() if cls is type(model)), None)


def _hyperparameters(model: pl.LightningModule) -> dict[str, Any]:
    return {
        k: v
        for k, v in dict(model.hparams).items()
        if not k.startswith("_") and isinstance(v, str | int | float | bool | list | type(None))
    }


def export_model(
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    output: str | Path,
    format: ExportFormat = "onnx",
    checkpoint: str | Path | None = None,
) -> Path:
    """Export ``model`` and ``datamodule``'s fitted preprocessing to the bundle folder ``output``.

    The model's weights and the DataModule's state must be the trained ones (see
    :func:`restore_checkpoint`). Nothing is written unless the export succeeds and its outputs
    equal the model's within :data:`PARITY_TOLERANCE`; a previous bundle in ``output`` is
    replaced only if it holds nothing but its own files (export never deletes a file it did not
    write); any other non-empty folder is refused. Returns the path of the bundle's JSON.
    """
    if format not in ("onnx", "torchscript"):
        raise ExportError(f"format must be 'onnx' or 'torchscript', got {format!r}")
    check_exportable(model, datamodule)
    output = Path(output)
    check_replaceable(output)
    model = model.cpu().eval()
    refuse_non_finite_outputs(model, datamodule)
    names = input_names(datamodule)
    network = InferenceNetwork(model).eval()
    example = _as_tuple(example_batch(datamodule, 3))
    max_length = datamodule.preprocessor.max_length
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    try:
        model_file = staging / ("model.onnx" if format == "onnx" else "model.pt")
        # ONNX: the dynamo-based exporter first; the TorchScript-based one where dynamo cannot
        # express the network or its graph lost a dynamic axis (seen with nn.RNN)
        attempts = ("dynamo", "torchscript") if format == "onnx" else ("trace",)
        failures = []
        for attempt in attempts:
            try:
                with torch.no_grad():
                    if attempt == "trace":
                        exporter = _export_torchscript(network, example, model_file)
                    else:
                        exporter = _export_onnx(
                            network, example, names, model_file, max_length, attempt == "dynamo"
                        )
                exported = ExportedModel(model_file, network.output_names)
                parity = _parity(exported, model, datamodule, names)
            except Exception as err:  # exporters and runtimes raise many types
                failures.append(f"{attempt}: {' '.join(str(err).split())[:300]}")
                continue
            if parity["max_abs_diff"] <= PARITY_TOLERANCE:
                break
            failures.append(f"{attempt}: outputs differ by {parity['max_abs_diff']:.3g}")
        else:
            raise ExportError(
                f"cannot export {type(model).__name__} to {format}: {'; '.join(failures)}. "
                "Nothing was written."
            )
        if failures:
            log.info("used %s after %s", exporter, "; ".join(failures))
        preprocessor = datamodule.preprocessor
        preprocessing = preprocessor.describe(staging)
        outputs = eager_outputs(model, example_batch(datamodule, 3))
        dynamic_inputs = {"tokens": {0: "batch", 1: "sequence"}}
        bundle = {
            "format": "dlzoo-bundle",
            "bundle_version": BUNDLE_VERSION,
            "model_file": model_file.name,
            "model_format": format,
            "exporter": exporter,
            "opset": ONNX_OPSET if format == "onnx" else None,
            "task": model.task.name,
            "target_transform": model.hparams.get("target_transform"),
            "model": {
                "name": _registered_name(model),
                "class": f"{type(model).__module__}.{type(model).__qualname__}",
                "hyperparameters": _hyperparameters(model),
            },
            "inputs": [
                _tensor_spec(n, t.numpy(), dynamic_inputs.get(n, {0: "batch"}))
                for n, t in zip(names, example, strict=True)
            ],
            "outputs": [_tensor_spec(n, v, {0: "batch"}) for n, v in outputs.items()],
            "classes": [str(c) for c in datamodule.classes],
            "preprocessing": preprocessing,
            # how dlzoo itself rebuilds the preprocessing (dlzoo serve --bundle)
            "preprocessor": {
                "class": f"{type(preprocessor).__module__}.{type(preprocessor).__qualname__}",
                "init_args": preprocessor.bundle_args(),
            },
            "parity": parity,
            "versions": {
                p: package_version(p)
                for p in ("dlzoo", "torch", "lightning", "onnx", "onnxruntime")
            },
            "checkpoint": (
                {"file": Path(checkpoint).name, "sha256": sha256_file(Path(checkpoint))}
                if checkpoint and Path(checkpoint).is_file()
                else None
            ),
            "files": {
                p.name: sha256_file(p) for p in sorted(staging.iterdir()) if p.name != BUNDLE_FILE
            },
        }
        (staging / BUNDLE_FILE).write_text(json.dumps(seal(bundle), indent=2) + "\n")
        # mkdtemp made the folder 0700: give it the permissions of any folder the user makes
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)
        if output.exists():
            check_replaceable(output)  # again: nothing was added meanwhile
            shutil.rmtree(output)  # a previous bundle holding only its own files
        staging.rename(output)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log.info(
        "exported %s to %s (%s, parity %.1e)",
        type(model).__name__,
        output,
        exporter,
        parity["max_abs_diff"],
    )
    return output / BUNDLE_FILE


__all__ = [
    "BUNDLE_FILE",
    "BundleError",
    "ExportError",
    "ExportedModel",
    "InferenceNetwork",
    "eager_outputs",
    "example_batch",
    "export_model",
    "load_bundle",
    "read_bundle",
]
