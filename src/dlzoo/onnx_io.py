"""Exported networks: the one call that writes ONNX, and an exported file run as a caller would
(ONNX Runtime, or ``torch.jit.load`` for TorchScript). Plain torch and ONNX Runtime, no
Lightning: ``dlzoo export`` writes its bundles with :func:`write_onnx`, and a frozen backbone's
cached features are computed on ONNX Runtime through the same function."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

#: the ONNX opset written (ONNX Runtime 1.18 and later run it)
ONNX_OPSET = 18
#: the largest size of a dynamic axis, unless the caller gives one (``axis_limits``)
MAX_AXIS = 65536


@contextlib.contextmanager
def without_attention_fastpath() -> Iterator[None]:
    """``nn.TransformerEncoderLayer``'s fused eval-mode kernel off while exporting: neither
    exporter of torch 2.6 can write ``aten::_transformer_encoder_layer_fwd`` (the same math
    unfused is what ONNX gets; a parity check compares it with the fused eager outputs)."""
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def batch_axes(
    input_names: Sequence[str], output_names: Sequence[str]
) -> dict[str, dict[int, str]]:
    """The dynamic axes of dlzoo's graphs: the batch axis of every input and output, and the
    sequence axis of ``tokens`` (text networks take ``tokens (N, T)`` and ``lengths (N,)``)."""
    axes = {name: {0: "batch"} for name in [*input_names, *output_names]}
    if "tokens" in input_names:
        axes["tokens"][1] = "sequence"
    return axes


def write_onnx(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    path: str | Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
    dynamo: bool = False,
    axis_limits: Mapping[str, int] | None = None,
) -> str:
    """Write ``module`` to ``path`` as ONNX (opset :data:`ONNX_OPSET`); returns the exporter's
    name.

    ``example`` holds one tensor per input name; ``dynamic_axes`` names the dynamic axes of
    inputs and outputs (``{"tokens": {0: "batch", 1: "sequence"}}``: axes of one name have one
    size). ``dynamo``: the dynamo-based exporter, for a module whose ``forward`` takes
    ``*inputs`` (an axis is at most ``axis_limits[name]``, else :data:`MAX_AXIS`); otherwise the
    TorchScript-based one.
    """
    with warnings.catch_warnings(), without_attention_fastpath(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporters' own progress and advice
        if dynamo:
            limits, dims = axis_limits or {}, {}
            shapes = tuple(
                {
                    axis: dims.setdefault(
                        label, torch.export.Dim(label, min=1, max=limits.get(label, MAX_AXIS))
                    )
                    for axis, label in dynamic_axes.get(name, {}).items()
                }
                for name in input_names
            )
            program = torch.onnx.export(
                module,
                example,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_shapes=(shapes,),  # forward(*inputs)
                opset_version=ONNX_OPSET,
                dynamo=True,
                verbose=False,
            )
            program.save(str(path))
            return "torch.onnx.export(dynamo=True)"
        torch.onnx.export(
            module,
            example,
            str(path),
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes={name: dict(axes) for name, axes in dynamic_axes.items()},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    return "torch.onnx.export(dynamo=False)"


class ExportedModel:
    """An exported model file run as a caller would: ONNX Runtime or ``torch.jit.load``.

    ``run(inputs)`` takes numpy arrays by input name and returns numpy arrays by output name.
    ``threads`` caps the intra-op threads (default: ONNX Runtime's, one per core).
    """

    def __init__(
        self, path: str | Path, output_names: Sequence[str], threads: int | None = None
    ) -> None:
        self.path, self.output_names = Path(path), list(output_names)
        if self.path.suffix == ".onnx":
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            if threads:  # serving: a fixed share of the cores, and no busy-waiting
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                # idle intra-op threads spin by default, taking the CPU the HTTP side needs
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
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


__all__ = [
    "MAX_AXIS",
    "ONNX_OPSET",
    "ExportedModel",
    "batch_axes",
    "without_attention_fastpath",
    "write_onnx",
]
