"""``dlzoo serve``: a trained model behind an HTTP API.

``POST /predict`` takes raw inputs as a user has them, ``{"inputs": [...]}``: tabular rows as
objects (column -> value), texts as strings, images as base64 strings (or files uploaded as
``multipart/form-data``, or one image as the body, ``Content-Type: image/jpeg``), MNIST digits
as 784 pixel values. Each input becomes the model's input through the DataModule's preprocessor
(``encode`` / ``collate``), the code ``dlzoo predict`` uses, with the fitted state restored from
the checkpoint or the export bundle. The answer is ``{"predictions": [...]}``, one row per input
as the task decodes it.

:class:`PredictionAPI` is a LitServe ``LitAPI`` over a *runtime*: the Lightning model in torch
(:class:`TorchRuntime`), or the exported network in ONNX Runtime (:class:`OnnxRuntime`).
Two hosts run it: dlzoo's own (:mod:`dlzoo.deploy.host`: uvicorn worker processes, inference
in-process; the default) and LitServe's (``server="litserve"``: a process per inference worker,
for GPUs).

Every request is checked on its own before it joins a batch: its shape, then its budgets
(:class:`Limits`: inputs, bytes, decoded pixels, aspect ratio, text characters), read from
headers without decoding anything; a request over a budget gets a 413 (422 for an aspect ratio)
naming the limit and the flag that raises it. Encoding a batch that fails is retried request by
request, so a bad request gets its own 4xx (a 500 for a dlzoo bug) and never disturbs the
requests batched with it.
"""

# no `from __future__ import annotations`: LitServe reads decode_request's annotation as a type

import dataclasses
import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import litserve as ls
from starlette.responses import JSONResponse

from dlzoo.deploy import RuntimeName, die_with_parent
from dlzoo.deploy.bundle import load_bundle, load_preprocessor
from dlzoo.deploy.requests import (
    Limits,
    RequestChecks,
    RequestError,
    _Encoded,
    _Raw,
    _Rejected,
    file_inputs,
    request_inputs,
)
from dlzoo.deploy.runtime import OnnxRuntime, TorchRuntime, export_runtime

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- the LitAPI
class PredictionAPI(ls.LitAPI):
    """The LitServe API of a dlzoo model: a runtime, its preprocessor and output names.

    Build it with :meth:`for_model` (a Lightning model and its DataModule) or
    :meth:`for_bundle` (an export bundle); ``PredictionAPI(model, datamodule)`` still works.

    Args:
        runtime: a :class:`TorchRuntime` or :class:`OnnxRuntime` (or, for compatibility, a
            dlzoo Lightning model, then ``preprocessor`` is its DataModule).
        preprocessor: the fitted preprocessor (``encode`` / ``collate``).
        names: class, label or target names of the outputs.
        max_batch_size: inputs of up to this many requests are run as one batch.
        batch_timeout: seconds to wait for more requests to fill a batch.
        limits: the budgets of one request.
    """

    def __init__(
        self,
        runtime: Any,
        preprocessor: Any,
        names: Sequence[str] | None = None,
        max_batch_size: int = 64,
        batch_timeout: float = 0.005,
        limits: Limits | None = None,
        max_inputs: int | None = None,
    ) -> None:
        with warnings.catch_warnings():
            # LitServe's "max_batch_size was not set" at 1: how a user turns batching off
            warnings.filterwarnings("ignore", "The LitServer has both batch and unbatch")
            super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        if not isinstance(runtime, TorchRuntime | OnnxRuntime):  # (model, datamodule)
            from dlzoo.data.base import output_names

            names = output_names(preprocessor, runtime)
            runtime, preprocessor = TorchRuntime(runtime), _preprocessor_of(preprocessor)
        self.runtime, self.preprocessor = runtime, preprocessor
        self.names = list(names) if names else None
        limits = limits or Limits()
        from PIL import Image

        if Image.MAX_IMAGE_PIXELS is not None and limits.max_image_pixels > Image.MAX_IMAGE_PIXELS:
            # the server's own budget decides (its 413 names the flag): PIL's default guard would
            # refuse images the user allowed with --max_image_pixels
            Image.MAX_IMAGE_PIXELS = limits.max_image_pixels
        if max_inputs is not None:
            limits = dataclasses.replace(limits, max_inputs=max_inputs)
        self.limits = limits
        self.max_inputs = limits.max_inputs
        #: set by a host whose worker processes must not outlive it (LitServe's: it spawns them)
        self.die_with_parent = False

    @classmethod
    def for_model(
        cls,
        model: Any,
        datamodule: Any,
        runtime: RuntimeName = "auto",
        threads: int | None = None,
        instances: int | None = None,
        **kwargs: Any,
    ) -> "PredictionAPI":
        """The API of a Lightning model with trained weights and its DataModule (fitted state).
        ``runtime="onnxruntime"`` (and ``auto`` on CPU) exports the network to a temporary
        folder first; ``auto`` falls back to torch, saying why, where that export fails."""
        from dlzoo.data.base import output_names

        preprocessor = _preprocessor_of(datamodule)
        names = output_names(datamodule, model)
        if runtime in ("auto", "onnxruntime"):
            try:
                onnx = export_runtime(model, datamodule, threads, instances)
                return cls(onnx, preprocessor, names, **kwargs)
            except ValueError as err:  # ExportError: this network does not export
                if runtime == "onnxruntime":
                    raise
                log.warning("serving with torch: %s", err)
        return cls(TorchRuntime(model, threads), preprocessor, names, **kwargs)

    @classmethod
    def for_bundle(
        cls,
        folder: str | Path,
        threads: int | None = None,
        instances: int | None = None,
        **kwargs: Any,
    ) -> "PredictionAPI":
        """The API of an export bundle (ONNX: ONNX Runtime; TorchScript: torch), its files
        verified and its preprocessor rebuilt from the bundle alone."""
        bundle, model = load_bundle(folder, threads)
        folder = model.path.parent
        preprocessor = load_preprocessor(bundle, folder)
        hp = bundle["model"].get("hyperparameters", {})
        names = bundle.get("classes") or hp.get("target_names")
        if bundle["model_format"] != "onnx":
            raise ValueError(
                f"{folder}: dlzoo serve --bundle runs ONNX bundles; this one is "
                f"{bundle['model_format']} (export with --format onnx)"
            )
        inputs = [i["name"] for i in bundle["inputs"]]
        runtime = OnnxRuntime(model.path, bundle["task"], hp, inputs, threads, instances)
        return cls(runtime, preprocessor, names, **kwargs)

    def request_checks(self, keep_files: bool = False) -> dict[str, Any]:
        """The :class:`RequestChecks` options of this API (``keep_files``: dlzoo's host, which
        reads uploads as bytes)."""
        return {
            "path": self.api_path,
            "max_bytes": self.limits.max_request_bytes,
            "max_inputs": self.limits.max_inputs,
            "files": self.preprocessor.takes_files,
            "keep_files": keep_files,
        }

    def setup(self, device: str) -> None:
        if self.die_with_parent:
            die_with_parent()
        # one input of a typical size: ONNX Runtime times it to choose its instances (auto)
        length = min(self.preprocessor.max_length or 256, 256)
        self.runtime.setup(device, example=self.preprocessor.example(1, length))

    def decode_request(self, request: dict) -> Any:
        """The request's raw inputs, or why it cannot be answered. Never raises: a bad request
        must not fail the others batched with it (LitServe fails a whole batch on an error)."""
        return self._raw(request_inputs, request, self.max_inputs, self.preprocessor, self.limits)

    def decode_files(self, files: Sequence[bytes]) -> Any:
        """Uploaded files (images) as a request's raw inputs, or why they cannot be answered
        (never raises, as :meth:`decode_request`)."""
        return self._raw(file_inputs, files, self.preprocessor, self.limits)

    def _raw(self, read: Callable[..., list], *args: Any) -> Any:
        try:
            return _Raw(read(*args))
        except RequestError as err:
            return _Rejected(err.status, str(err))
        except Exception as err:  # a dlzoo bug: this request alone gets a 500
            log.exception("reading a request failed")
            return _Rejected(500, f"internal error ({type(err).__name__})")

    def batch(self, inputs: list) -> list:
        return list(inputs)  # requests keep their own inputs; predict() encodes them together

    def unbatch(self, output: list) -> list:
        return output

    def encode_request(self, request: Any) -> Any:
        """One request's inputs encoded (``_Encoded``), or why not (``_Rejected``: a 422 for bad
        input, a 500 for a dlzoo bug). Never raises: this request alone is refused."""
        if not isinstance(request, _Raw):
            return request
        try:
            return _Encoded(self.preprocessor.encode(request.inputs))
        except (ValueError, KeyError, TypeError, OverflowError) as err:
            message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
            return _Rejected(422, str(message))
        except Exception as err:  # our bug, not the client's: this request alone gets a 500
            log.exception("encoding a request failed")
            return _Rejected(500, f"internal error ({type(err).__name__})")

    def _encode(self, requests: list[Any]) -> tuple[list[Any], list[Any]]:
        """Every request's inputs preprocessed (raw ones in one call: its per-call cost, e.g.
        pandas for rows, is paid once per batch); if that fails, each request is encoded alone
        so that only the bad one is refused. Returns, per request, its number of items or its
        rejection, and all the items."""
        raws = [r for r in requests if isinstance(r, _Raw)]
        if len(raws) > 1:
            try:
                encoded = iter(self.preprocessor.encode([x for r in raws for x in r.inputs]))
                requests = [
                    _Encoded([next(encoded) for _ in r.inputs]) if isinstance(r, _Raw) else r
                    for r in requests
                ]
            except Exception:
                pass  # some request is bad, whatever it raised: encode each alone to find it
        counts: list[Any] = []
        items: list[Any] = []
        for request in map(self.encode_request, requests):
            if isinstance(request, _Rejected):
                counts.append(request)
            else:
                counts.append(len(request.items))
                items += request.items
        return counts, items

    def predict(self, x: Any) -> Any:
        requests = x if isinstance(x, list) else [x]
        counts, items = self._encode(requests)
        rows: list[dict] = []
        if items:
            out = self.runtime(self.preprocessor.collate(items))
            rows = self.runtime.task.decode(out, self.names)
        answers: list[Any] = []
        start = 0
        for count in counts:
            if isinstance(count, _Rejected):
                answers.append(count)
                continue
            answers.append(rows[start : start + count])
            start += count
        return answers if isinstance(x, list) else answers[0]

    def encode_response(self, output: Any) -> Any:
        if isinstance(output, _Rejected):
            return JSONResponse({"detail": output.message}, status_code=output.status)
        return {"predictions": output}


def _preprocessor_of(datamodule: Any) -> Any:
    from dlzoo.data.base import DataModule

    if not isinstance(datamodule, DataModule):
        raise ValueError(
            f"{type(datamodule).__name__} cannot turn raw inputs into tensors; serve a dlzoo "
            "DataModule (dlzoo.data.base.DataModule)"
        )
    return datamodule.preprocessor


# ------------------------------------------------------------------------------- hosting
def build_server(
    api: PredictionAPI,
    accelerator: str = "auto",
    devices: int | str = "auto",
    workers_per_device: int = 1,
    timeout: float = 30.0,
) -> ls.LitServer:
    """The LitServer (LitServe's host: a process per inference worker) of ``api``; a dead
    worker is restarted. ``max_batch_size=1`` of the API turns batching off."""
    return ls.LitServer(
        api,
        accelerator=accelerator,
        devices=devices,
        workers_per_device=workers_per_device,
        timeout=timeout,
        restart_workers=True,
        disable_openapi_url=True,
        middlewares=[(RequestChecks, api.request_checks())],
    )


__all__ = [
    "Limits",
    "OnnxRuntime",
    "PredictionAPI",
    "RequestChecks",
    "RequestError",
    "TorchRuntime",
    "build_server",
    "request_inputs",
]
