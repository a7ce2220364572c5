"""``dlzoo serve``: a trained model behind an HTTP API, on LitServe.

``POST /predict`` takes raw inputs as a user has them, ``{"inputs": [...]}``: tabular rows as
objects (column -> value), texts as strings, images as base64 strings (or files uploaded as
``multipart/form-data``), MNIST digits as 784 pixel values. Each input becomes the model's input
through the DataModule's own ``encode_inputs`` / ``collate_inputs``, the code ``dlzoo predict``
uses, with the fitted state restored from the checkpoint (no training data needed). The answer
is ``{"predictions": [...]}``: per input the class probabilities by class name and the label
(autoencoders: the reconstruction error and the latent code).

Requests are batched across clients (LitServe's ``max_batch_size`` / ``batch_timeout``). A bad
request gets a 4xx answer that names the problem and never disturbs the requests batched with it.
``GET /health`` answers ``ok`` once the model is loaded.
"""

# no `from __future__ import annotations`: LitServe reads decode_request's annotation as a type

import base64
import json
import logging
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import litserve as ls
import torch
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dlzoo.callbacks import output_names
from dlzoo.data.base import DataModule, Preprocessor

log = logging.getLogger(__name__)

#: most inputs one request may carry (more: 413)
MAX_INPUTS = 256
#: largest request body in bytes (more: 413)
MAX_REQUEST_BYTES = 16 * 1024 * 1024


class RequestError(ValueError):
    """A request that cannot be answered; ``status`` is its HTTP status (4xx)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Raw:
    inputs: list[Any]  # one request's raw inputs, checked for shape only


@dataclass
class _Rejected:
    status: int
    message: str


def request_inputs(
    body: Any, max_inputs: int = MAX_INPUTS, preprocessor: Preprocessor | None = None
) -> list[Any]:
    """The raw inputs of a request body ``{"inputs": [...]}``, each as the preprocessor's
    ``encode`` takes it (``from_json``: images' base64 decoded to bytes). Raises
    :class:`RequestError`."""
    if not isinstance(body, dict) or "inputs" not in body:
        raise RequestError(
            400, 'the body must be a JSON object {"inputs": [...]} with one entry per input'
        )
    inputs = body["inputs"]
    if not isinstance(inputs, list):
        raise RequestError(400, f'"inputs" must be a list, got {type(inputs).__name__}')
    if not inputs:
        raise RequestError(400, '"inputs" is empty: send at least one input')
    if len(inputs) > max_inputs:
        raise RequestError(
            413, f"too many inputs in one request: {len(inputs)}, at most {max_inputs}"
        )
    if preprocessor is None:
        return inputs
    try:
        return [preprocessor.from_json(value, number) for number, value in enumerate(inputs)]
    except ValueError as err:
        raise RequestError(422, str(err)) from None


class PredictionAPI(ls.LitAPI):
    """The LitServe API of a dlzoo model and its DataModule (fitted state restored).

    Args:
        model: a dlzoo classifier or autoencoder with trained weights.
        datamodule: its DataModule, with the checkpoint's preprocessing state.
        max_batch_size: inputs of up to this many requests are run as one batch.
        batch_timeout: seconds to wait for more requests to fill a batch.
        max_inputs: most inputs in one request.
    """

    def __init__(
        self,
        model: pl.LightningModule,
        datamodule: pl.LightningDataModule,
        max_batch_size: int = 64,
        batch_timeout: float = 0.005,
        max_inputs: int = MAX_INPUTS,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        if not isinstance(datamodule, DataModule):
            raise ValueError(
                f"{type(datamodule).__name__} cannot turn raw inputs into tensors; serve a dlzoo "
                "DataModule (dlzoo.data.base.DataModule)"
            )
        self.model = model.cpu().eval()
        self.preprocessor = datamodule.preprocessor
        self.max_inputs = max_inputs
        self.names = output_names(datamodule, model)
        self.device = torch.device("cpu")

    def setup(self, device: str) -> None:
        self.device = torch.device(device)
        self.model.to(self.device).eval()

    def decode_request(self, request: dict) -> Any:
        """The request's raw inputs, or why it cannot be answered. Never raises: a bad request
        must not fail the others batched with it (LitServe fails a whole batch on an error)."""
        try:
            return _Raw(request_inputs(request, self.max_inputs, self.preprocessor))
        except RequestError as err:
            return _Rejected(err.status, str(err))

    def batch(self, inputs: list) -> list:
        return list(inputs)  # requests keep their own inputs; predict() encodes them together

    def unbatch(self, output: list) -> list:
        return output

    def _encode(self, requests: list[Any]) -> tuple[list[Any], list[torch.Tensor]]:
        """Every request's inputs preprocessed by the DataModule in one call (its per-call cost,
        e.g. pandas for rows, is paid once per batch); if that fails, each request is encoded
        alone so that only the bad one is refused. Returns, per request, its number of items or
        its rejection, and all the items."""
        raws = [r for r in requests if isinstance(r, _Raw)]
        try:
            items = self.preprocessor.encode([x for r in raws for x in r.inputs])
            return [len(r.inputs) if isinstance(r, _Raw) else r for r in requests], items
        except Exception:
            pass  # some request is bad, whatever it raised: encode each alone to find it
        counts, items = [], []
        for request in requests:
            if not isinstance(request, _Raw):
                counts.append(request)
                continue
            try:
                encoded = self.preprocessor.encode(request.inputs)
            except (ValueError, KeyError, TypeError, OverflowError) as err:
                message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
                counts.append(_Rejected(422, str(message)))
                continue
            except Exception as err:  # our bug, not the client's: this request alone gets a 500
                log.exception("encoding a request failed")
                counts.append(_Rejected(500, f"internal error ({type(err).__name__})"))
                continue
            counts.append(len(encoded))
            items += encoded
        return counts, items

    def predict(self, x: Any) -> Any:
        requests = x if isinstance(x, list) else [x]
        counts, items = self._encode(requests)
        rows: list[dict] = []
        if items:
            batch = self.preprocessor.collate(items)
            batch = (
                tuple(t.to(self.device) for t in batch)
                if isinstance(batch, tuple)
                else batch.to(self.device)
            )
            with torch.inference_mode():
                rows = self._rows(self.model.predict_step((batch,), 0))
        answers: list[Any] = []
        start = 0
        for count in counts:
            if isinstance(count, _Rejected):
                answers.append(count)
                continue
            answers.append(rows[start : start + count])
            start += count
        return answers if isinstance(x, list) else answers[0]

    def _rows(self, out: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
        """``predict_step``'s tensors as one JSON object per input (the task's decoding)."""
        return self.model.task.decode(out, self.names)

    def encode_response(self, output: Any) -> Any:
        if isinstance(output, _Rejected):
            return JSONResponse({"detail": output.message}, status_code=output.status)
        return {"predictions": output}


class RequestChecks:
    """ASGI middleware in front of ``/predict``: an empty, over-size or malformed body gets its
    4xx here, and uploaded files (``multipart/form-data``, images) become the JSON body
    ``{"inputs": [<base64>, ...]}`` the API reads."""

    def __init__(
        self,
        app: ASGIApp,
        path: str = "/predict",
        max_bytes: int = MAX_REQUEST_BYTES,
        max_inputs: int = MAX_INPUTS,
    ) -> None:
        self.app, self.path, self.max_bytes, self.max_inputs = app, path, max_bytes, max_inputs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            body, content_type = await self._read(scope, receive)
        except RequestError as err:
            await JSONResponse({"detail": str(err)}, status_code=err.status)(scope, receive, send)
            return
        headers = [
            (k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")
        ]
        headers += [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()  # e.g. the client disconnecting
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app({**scope, "headers": headers}, replay, send)

    async def _read(self, scope: Scope, receive: Receive) -> tuple[bytes, bytes]:
        declared = dict(scope["headers"]).get(b"content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise RequestError(413, self._too_large(int(declared)))
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestError(400, "the client disconnected before the body was complete")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise RequestError(413, self._too_large(size))
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if not body.strip():
            raise RequestError(
                400,
                'empty body: send JSON {"inputs": [...]} (Content-Type: application/json), '
                "or image files as multipart/form-data",
            )
        content_type = dict(scope["headers"]).get(b"content-type", b"")
        if content_type.startswith(b"multipart/form-data"):
            return await self._files_as_json(scope, body), b"application/json"
        try:
            parsed = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RequestError(400, f"the body is not valid JSON: {err}") from None
        request_inputs(parsed, self.max_inputs)  # its shape: {"inputs": [...]}, within max_inputs
        return body, b"application/json"

    async def _files_as_json(self, scope: Scope, body: bytes) -> bytes:
        async def once() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(scope, once).form(max_files=MAX_INPUTS, max_fields=MAX_INPUTS)
        except Exception as err:  # starlette's multipart parser raises several types
            raise RequestError(400, f"the multipart body cannot be read: {err}") from None
        files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        if not files:
            raise RequestError(400, "the multipart body holds no files (use curl -F file=@x.jpg)")
        encoded = [base64.b64encode(await f.read()).decode("ascii") for f in files]
        return json.dumps({"inputs": encoded}).encode()

    def _too_large(self, size: int) -> str:
        return f"request body too large: {size:,} bytes, at most {self.max_bytes:,}"


def build_server(
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    accelerator: str = "auto",
    devices: int | str = "auto",
    workers_per_device: int = 1,
    max_batch_size: int = 64,
    batch_timeout: float = 0.005,
    max_inputs: int = MAX_INPUTS,
    max_request_bytes: int = MAX_REQUEST_BYTES,
    timeout: float = 30.0,
) -> ls.LitServer:
    """The LitServer for ``model`` (trained weights) and ``datamodule`` (fitted state).
    ``max_batch_size=1`` turns batching off."""
    api = PredictionAPI(
        model,
        datamodule,
        max_batch_size=max_batch_size,
        batch_timeout=batch_timeout if max_batch_size > 1 else 0.0,
        max_inputs=max_inputs,
    )
    return ls.LitServer(
        api,
        accelerator=accelerator,
        devices=devices,
        workers_per_device=workers_per_device,
        timeout=timeout,
        middlewares=[
            (
                RequestChecks,
                {"path": api.api_path, "max_bytes": max_request_bytes, "max_inputs": max_inputs},
            )
        ],
    )


def serve(
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    host: str = "127.0.0.1",
    port: int = 8000,
    **kwargs: Any,
) -> None:
    """Serve until interrupted; binds to ``host`` (loopback unless told otherwise).
    ``kwargs`` go to :func:`build_server`."""
    server = build_server(model, datamodule, **kwargs)
    log.info("serving %s on http://%s:%d/predict", type(model).__name__, host, port)
    server.run(
        host=host,
        port=port,
        generate_client_file=False,
        log_level="warning",
        num_api_servers=1,
    )


__all__ = [
    "PredictionAPI",
    "RequestChecks",
    "build_server",
    "request_inputs",
    "serve",
]
