"""What a request to ``dlzoo serve`` may be, checked before any model work: its HTTP body
(:class:`RequestChecks`, ASGI middleware: size, content type, JSON, nesting, uploaded files:
``multipart/form-data``, or one image as the body, ``Content-Type: image/*``),
its shape and budgets (:func:`request_inputs`, :class:`Limits`), and what a request becomes on
its way through a batch (raw inputs, encoded inputs, or its rejection with a 4xx/5xx status).

A request over a budget gets a 413 (422 for an aspect ratio) naming the limit and the
``dlzoo serve`` flag that raises it; budgets are read from sizes and headers, without decoding.
"""

from __future__ import annotations

import email.message
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pybase64
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: most inputs one request may carry (more: 413)
MAX_INPUTS = 256
#: largest request body in bytes (more: 413)
MAX_REQUEST_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one request may cost; each is a ``dlzoo serve`` flag of the same name.

    Args:
        max_inputs: most inputs in one request.
        max_request_mb: largest request body, in MiB.
        max_image_pixels: most decoded pixels of one image (width x height, read from its
            header).
        max_request_pixels: most decoded pixels of all the images of one request.
        max_image_aspect: largest ratio of an image's longer to shorter side (a 200000x1
            image resized is 13 G pixels).
        max_text_chars: most characters of one text (tokenising is bounded anyway: texts are
            cut to what max_length keeps).
    """

    max_inputs: int = MAX_INPUTS
    max_request_mb: float = MAX_REQUEST_BYTES / 2**20
    max_image_pixels: int = 40_000_000
    max_request_pixels: int = 64_000_000
    max_image_aspect: float = 20.0
    max_text_chars: int = 1_000_000

    def __post_init__(self) -> None:
        # a budget of 0 would start a server that refuses every request: refuse it instead
        for name in ("max_inputs", "max_image_pixels", "max_request_pixels", "max_text_chars"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"--{name} must be a whole number of at least 1, got {value!r}")
        if not self.max_request_mb > 0:
            raise ValueError(f"--max_request_mb must be above 0, got {self.max_request_mb!r}")
        if not self.max_image_aspect >= 1:
            raise ValueError(f"--max_image_aspect must be 1 or more, got {self.max_image_aspect!r}")

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * 2**20)

    def check(self, measures: Sequence[Mapping[str, float]]) -> None:
        """Raise :class:`RequestError` for the first budget a request's inputs exceed."""
        for number, m in enumerate(measures):
            if m.get("pixels", 0) > self.max_image_pixels:
                raise self._over(413, number, f"{m['pixels']:,.0f} pixels", "max_image_pixels")
            if m.get("aspect", 0) > self.max_image_aspect:
                aspect = f"an aspect ratio of {m['aspect']:,.0f}:1"
                raise self._over(422, number, aspect, "max_image_aspect")
            if m.get("chars", 0) > self.max_text_chars:
                raise self._over(413, number, f"{m['chars']:,.0f} characters", "max_text_chars")
        pixels = sum(m.get("pixels", 0) for m in measures)
        if pixels > self.max_request_pixels:
            raise RequestError(
                413,
                f"the request's images hold {pixels:,.0f} pixels, more than max_request_pixels="
                f"{self.max_request_pixels:,} (dlzoo serve --max_request_pixels): send fewer "
                "or smaller images per request",
            )

    def _over(self, status: int, number: int, what: str, name: str) -> RequestError:
        limit = getattr(self, name)
        return RequestError(
            status,
            f"input {number} has {what}, more than {name}={limit:,} (dlzoo serve --{name})",
        )


class RequestError(ValueError):
    """A request that cannot be answered; ``status`` is its HTTP status (4xx)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Raw:
    inputs: list[Any]  # one request's raw inputs, checked for shape and budgets


@dataclass
class _Encoded:
    items: list[Any]  # one request's inputs, encoded by the preprocessor


@dataclass
class _Rejected:
    status: int
    message: str


def request_inputs(
    body: Any,
    max_inputs: int = MAX_INPUTS,
    preprocessor: Any = None,
    limits: Limits | None = None,
) -> list[Any]:
    """The raw inputs of a request body ``{"inputs": [...]}``, each as the preprocessor's
    ``encode`` takes it (``from_json``: images' base64 decoded to bytes), within ``limits``.
    Raises :class:`RequestError`."""
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
        raise _too_many(len(inputs), max_inputs)
    if preprocessor is None:
        return inputs
    try:
        raw = [preprocessor.from_json(value, number) for number, value in enumerate(inputs)]
    except ValueError as err:
        raise RequestError(422, str(err)) from None
    return checked(raw, preprocessor, limits)


def _too_many(count: int, max_inputs: int) -> RequestError:
    return RequestError(
        413,
        f"too many inputs in one request: {count}, at most {max_inputs} (dlzoo serve --max_inputs)",
    )


def file_inputs(files: Sequence[bytes], preprocessor: Any, limits: Limits | None = None) -> list:
    """Uploaded files (their bytes) as a request's raw inputs, within ``limits``. Raises
    :class:`RequestError` (415 where the model does not take files)."""
    if not preprocessor.takes_files:
        raise RequestError(415, _NOT_FILES)
    return checked(list(files), preprocessor, limits)


def checked(raw: list[Any], preprocessor: Any, limits: Limits | None) -> list[Any]:
    """``raw`` inputs, once ``limits`` (read by ``preprocessor.measure``) allow them."""
    if limits is not None:
        limits.check([preprocessor.measure(value) for value in raw])
    return raw


_NOT_FILES = (
    'this model takes JSON {"inputs": [...]} (Content-Type: application/json); uploaded '
    "files are for image models"
)


# ------------------------------------------------------------------- request middleware
class RequestChecks:
    """ASGI middleware in front of ``/predict``: an empty, over-size, deeply nested, non-JSON
    or malformed body gets its 4xx here. Uploaded files (``multipart/form-data``, or one file
    as the whole body with ``Content-Type: image/*`` or ``application/octet-stream``) are for
    models whose preprocessor ``takes_files`` (``files``; otherwise 415).

    What it leaves for the route: the parsed JSON body in ``scope["dlzoo.body"]``; uploads,
    with ``keep_files``, as bytes in ``scope["dlzoo.files"]`` (dlzoo's host reads them as they
    are), else as the JSON body ``{"inputs": [<base64>, ...]}`` (for LitServe's host, which
    parses the body itself)."""

    def __init__(
        self,
        app: ASGIApp,
        path: str = "/predict",
        max_bytes: int = MAX_REQUEST_BYTES,
        max_inputs: int = MAX_INPUTS,
        files: bool = True,
        keep_files: bool = False,
    ) -> None:
        self.app, self.path, self.max_bytes, self.max_inputs = app, path, max_bytes, max_inputs
        self.files, self.keep_files = files, keep_files

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            body, extra = await self._read(scope, receive)
        except RequestError as err:
            await JSONResponse({"detail": str(err)}, status_code=err.status)(scope, receive, send)
            return
        headers = [
            (k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")
        ]
        headers += [(b"content-type", b"application/json")]
        headers += [(b"content-length", str(len(body)).encode())]
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()  # e.g. the client disconnecting
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app({**scope, "headers": headers, **extra}, replay, send)

    async def _read(self, scope: Scope, receive: Receive) -> tuple[bytes, dict[str, Any]]:
        """The body the route reads, and what goes into its scope."""
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        form = content_type == b"multipart/form-data"
        one_file = content_type.startswith(b"image/") or content_type == b"application/octet-stream"
        if content_type and not (form or one_file or _is_json(content_type)):
            raise RequestError(
                415,
                f"Content-Type {content_type.decode('latin-1')!r} is not accepted: send "
                "application/json, or image files as multipart/form-data or image/*",
            )
        if (form or one_file) and not self.files:
            raise RequestError(415, _NOT_FILES)
        declared = headers.get(b"content-length")
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
        if not (body if one_file else body.strip()):
            raise RequestError(
                400,
                'empty body: send JSON {"inputs": [...]} (Content-Type: application/json), '
                "or image files as multipart/form-data or image/*",
            )
        if form or one_file:
            files = await self._files(scope, body) if form else [body]
            if self.keep_files:
                return b"", {"dlzoo.files": files}
            body = json.dumps({"inputs": [pybase64.b64encode_as_string(f) for f in files]})
            body = body.encode()
        try:
            parsed = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RequestError(400, f"the body is not valid JSON: {err}") from None
        except ValueError:  # Python's limit on the digits of an integer (int_max_str_digits)
            raise RequestError(
                400, "the body holds an integer of more than 4,300 digits: not an input"
            ) from None
        except RecursionError:
            raise RequestError(400, "the body's JSON is nested too deeply") from None
        if _depth(parsed) > MAX_JSON_DEPTH:  # what LitServe's own parsing would recurse into
            raise RequestError(
                400, f"the body's JSON is nested too deeply (more than {MAX_JSON_DEPTH} levels)"
            )
        request_inputs(parsed, self.max_inputs)  # its shape: {"inputs": [...]}, within max_inputs
        return body, {"dlzoo.body": parsed}

    async def _files(self, scope: Scope, body: bytes) -> list[bytes]:
        """The files of a ``multipart/form-data`` body, in order."""

        async def once() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(scope, once).form(
                max_files=self.max_inputs, max_fields=self.max_inputs
            )
        except Exception as err:  # starlette's multipart parser raises several types
            parts = _multipart_parts(scope, body)
            if parts > self.max_inputs:  # what its max_files refused: say it as for JSON
                raise _too_many(parts, self.max_inputs) from None
            raise RequestError(400, f"the multipart body cannot be read: {err}") from None
        files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        if not files:
            raise RequestError(400, "the multipart body holds no files (use curl -F file=@x.jpg)")
        return [await f.read() for f in files]

    def _too_large(self, size: int) -> str:
        return (
            f"request body too large: {size:,} bytes, at most {self.max_bytes:,} "
            "(dlzoo serve --max_request_mb)"
        )


#: the deepest JSON a request may be: inputs are rows, texts, images and pixel lists (4 levels)
MAX_JSON_DEPTH = 32


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in parsed JSON (without recursion)."""
    deepest, level = 0, [(value, 1)]
    while level:
        item, depth = level.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            level.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _multipart_parts(scope: Scope, body: bytes) -> int:
    """How many parts a ``multipart/form-data`` body holds: its boundary lines, less the last."""
    header = email.message.Message()
    header["content-type"] = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        return 0
    return max(0, body.count(b"--" + boundary.encode("latin-1")) - 1)


def _is_json(content_type: bytes) -> bool:
    return content_type == b"application/json" or content_type.endswith(b"+json")


__all__ = [
    "MAX_INPUTS",
    "MAX_REQUEST_BYTES",
    "Limits",
    "RequestChecks",
    "RequestError",
    "file_inputs",
    "request_inputs",
]
