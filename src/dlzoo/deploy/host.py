"""dlzoo's HTTP host for ``dlzoo serve`` on CPU: uvicorn worker processes that each run the
:class:`~dlzoo.deploy.serve.PredictionAPI` in-process, under a supervisor.

Why not LitServe's host here: on 2 cores, LitServe answers at most ~580 requests/s with p99
~50 ms *for an API that does nothing* (its HTTP process hands every request to an inference
process through queues); plain uvicorn answers ~4,500/s with p99 8 ms (BENCHMARKS.md). So each
worker here parses, batches and predicts in one process: requests wait in an asyncio queue,
and one inference thread takes all of them waiting (up to ``max_batch_size``) as one batch
while the event loop keeps reading new ones.

The supervisor (the process ``dlzoo serve`` started) binds the socket, forks ``workers``
processes that share it, and:

- on SIGTERM or SIGINT, asks every worker to stop (uvicorn drains in-flight requests for up to
  ``drain_timeout`` s; a request still running then is answered ``503``), kills what is
  left, closes the socket and returns: the port is free;
- restarts a worker that dies (a worker's in-flight requests see their connection closed at
  once); if workers keep dying (5 within a minute) it stops with one ``dlzoo: error`` line;
- dies with its workers: each worker gets SIGTERM if the supervisor is killed (Linux
  ``PR_SET_PDEATHSIG``), so nothing is left holding the port.

``GET`` or ``HEAD /health`` answers ``200 ok`` while the worker's inference thread is alive
and neither a batch nor the encoding of one request has been running for longer than
``timeout``; otherwise ``503`` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from dlzoo.deploy import ServerError, die_with_parent
from dlzoo.deploy.options import ServeOptions
from dlzoo.deploy.requests import RequestChecks, _Rejected
from dlzoo.deploy.serve import PredictionAPI

log = logging.getLogger(__name__)

#: a worker dying this many times within RESTART_WINDOW seconds stops the server
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
#: the answer to a request still running when the server stops
STOPPED = "the server stopped before answering: --drain_timeout ran out while shutting down"


class Batcher:
    """Requests queued by the event loop, predicted in batches by ``runtime.instances``
    inference threads (each batch: what is waiting when an instance is free)."""

    def __init__(self, api: PredictionAPI, timeout: float) -> None:
        self.api, self.timeout = api, timeout
        self.max_batch_size = max(1, int(api.max_batch_size or 1))
        self.batch_timeout = float(api.batch_timeout or 0.0) if self.max_batch_size > 1 else 0.0
        self.queue: asyncio.Queue[tuple[Any, asyncio.Future]] = asyncio.Queue()
        #: batches run at once, each on its own model instance (ONNX Runtime: one session, run
        #: from several threads); more requests wait and are batched together
        self.instances = max(1, int(api.runtime.instances or 1))
        self.executor = ThreadPoolExecutor(self.instances, thread_name_prefix="dlzoo-inference")
        # inputs that cost more to encode one by one than in batches (tabular rows) are encoded
        # with their batch; the others (images, texts) here, while the previous batch runs
        early = not api.preprocessor.batch_encode
        self.encoder = ThreadPoolExecutor(1, thread_name_prefix="dlzoo-encode") if early else None
        self.busy_since: dict[int, float] = {}  # instance -> when its running batch started
        self.encoding_since: float | None = None  # when the encoding thread's request started
        self.tasks: list[asyncio.Task] = []

    async def submit(self, request: Any) -> Any:
        """The request's answer (rows, or a :class:`_Rejected`), within ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(self._answer(request), self.timeout)
        except TimeoutError:
            return _Rejected(504, f"no answer within {self.timeout:g} s (dlzoo serve --timeout)")

    async def _answer(self, request: Any) -> Any:
        loop = asyncio.get_running_loop()
        if self.encoder is not None:
            request = await loop.run_in_executor(self.encoder, self._encode_one, request)
            if isinstance(request, _Rejected):
                return request
        future = loop.create_future()
        self.queue.put_nowait((request, future))
        return await future  # cancelled on timeout: the batch loop then skips it

    def _encode_one(self, request: Any) -> Any:
        """One request encoded in the encoding thread, timed for :meth:`health`."""
        self.encoding_since = time.monotonic()
        try:
            return self.api.encode_request(request)
        finally:
            self.encoding_since = None

    def health(self) -> str | None:
        """Why this worker cannot answer now, or ``None``."""
        if not self.tasks or any(task.done() for task in self.tasks):
            return "the inference loop is not running"
        now = time.monotonic()
        since = self.encoding_since
        if since is not None and now - since > self.timeout:  # every later request waits on it
            return f"encoding a request has been running for more than {self.timeout:g} s"
        stuck = [t for t in self.busy_since.values() if now - t > self.timeout]
        if len(stuck) == self.instances:  # every instance: no new batch can start
            return f"a batch has been running for more than {self.timeout:g} s"
        return None

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self.run(i)) for i in range(self.instances)]

    def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for pool in (self.executor, self.encoder):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    async def run(self, instance: int = 0) -> None:
        """Take the requests waiting now (up to ``max_batch_size``) and predict them; one such
        loop per model instance, all reading the same queue."""
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.max_batch_size and not self.queue.empty():
                batch.append(self.queue.get_nowait())  # everything waiting now
            deadline = loop.time() + self.batch_timeout
            while len(batch) < self.max_batch_size and (left := deadline - loop.time()) > 0:
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except TimeoutError:
                    break
            live = [(r, f) for r, f in batch if not f.done()]  # timed-out clients are gone
            if not live:
                continue
            self.busy_since[instance] = time.monotonic()
            try:
                answers = await loop.run_in_executor(
                    self.executor, self.api.predict, [r for r, _ in live]
                )
            except Exception as err:  # a dlzoo bug: this batch gets 500s, the loop goes on
                log.exception("predicting a batch failed")
                answers = [_Rejected(500, f"internal error ({type(err).__name__})")] * len(live)
            finally:
                del self.busy_since[instance]
            for (_, future), answer in zip(live, answers, strict=True):
                if not future.done():
                    future.set_result(answer)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _json(payload: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(payload, allow_nan=False, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
    )


def build_app(api: PredictionAPI, timeout: float = 30.0) -> Starlette:
    """The ASGI app of one worker: ``POST /predict`` and ``GET``/``HEAD /health``; nothing
    else (no docs or info routes)."""
    batcher = Batcher(api, timeout)

    async def predict(request: Request) -> Response:
        files = request.scope.get("dlzoo.files")  # uploads, as RequestChecks read them
        if files is not None:
            decoded = api.decode_files(files)
        else:
            body = request.scope.get("dlzoo.body")
            decoded = api.decode_request(await request.json() if body is None else body)
        try:
            answer = decoded if isinstance(decoded, _Rejected) else await batcher.submit(decoded)
        except asyncio.CancelledError:  # uvicorn ends what is still running at the drain's end
            answer = _Rejected(503, STOPPED)
        if isinstance(answer, _Rejected):
            return _json({"detail": answer.message}, answer.status)
        try:
            return _json({"predictions": answer})
        except ValueError:  # NaN or inf in an answer: JSON has no such numbers, send null
            return _json({"predictions": _finite(answer)})

    async def health(request: Request) -> Response:
        reason = batcher.health()
        if reason:
            return PlainTextResponse(f"not ready: {reason}", status_code=503)
        return PlainTextResponse("ok")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        batcher.start()
        yield
        batcher.stop()

    app = Starlette(
        routes=[
            Route(api.api_path, predict, methods=["POST"]),
            Route("/health", health, methods=["GET", "HEAD"]),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(RequestChecks, **api.request_checks(keep_files=True))
    app.state.batcher = batcher
    return app


def _worker(
    api: PredictionAPI, sock: socket.socket, number: int, drain: float, timeout: float
) -> None:
    """A forked worker: set up the runtime, then serve on the shared socket until SIGTERM."""
    die_with_parent()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)  # uvicorn installs its own
    if api.runtime.name == "onnxruntime":
        # torch does only preprocessing here, in the encode thread: one thread, so that it never
        # competes with ONNX Runtime's (torch's runtime sets its own in setup)
        torch.set_num_threads(1)
    api.setup("cpu")
    config = uvicorn.Config(
        build_app(api, timeout),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=drain,
        lifespan="on",
    )
    uvicorn.Server(config).run(sockets=[sock])


def _fork_worker(
    api: PredictionAPI, sock: socket.socket, number: int, drain: float, timeout: float
) -> int:
    pid = os.fork()
    if pid == 0:  # the worker
        code = 0
        try:
            _worker(api, sock, number, drain, timeout)
        except BaseException:
            log.exception("worker %d failed", number)
            code = 1
        finally:
            logging.shutdown()
            os._exit(code)
    return pid


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket the workers share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        hint = " (another server is there: stop it or pass --port)" if err.errno == 98 else ""
        raise ServerError(f"cannot listen on {host}:{port}: {err.strerror}{hint}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(api: PredictionAPI, options: ServeOptions) -> None:
    """Serve ``api`` with ``options.workers`` forked processes of ``options.threads`` intra-op
    threads each until SIGTERM/SIGINT (then return with the port free) or until workers keep
    dying (then raise :class:`ServerError`)."""
    host, port, workers = options.host, options.port, options.workers
    drain_timeout, timeout = options.drain_timeout, options.timeout
    api.runtime.threads = api.runtime.threads or options.threads or 1
    sock = bind(host, port)
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    children: dict[int, int] = {}  # pid -> worker number
    deaths: list[float] = []
    failure = None
    try:
        for number in range(workers):
            children[_fork_worker(api, sock, number, drain_timeout, timeout)] = number
        log.info(
            "serving on http://%s:%d%s: %d worker(s) x %d thread(s) (instances: %s), %s",
            host,
            port,
            api.api_path,
            workers,
            api.runtime.threads,
            api.runtime.instances or "auto",
            api.runtime.name,
        )
        while not stopping:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                time.sleep(0.1)
                continue
            number = children.pop(pid, None)
            if number is None or stopping:
                continue
            now = time.monotonic()
            deaths = [t for t in deaths if now - t < RESTART_WINDOW] + [now]
            how = _exit_reason(status)
            if len(deaths) >= MAX_RESTARTS:
                failure = (
                    f"worker {number} {how}; workers died {len(deaths)} times within "
                    f"{RESTART_WINDOW:g} s, stopping (see the log above)"
                )
                break
            log.warning("worker %d (pid %d) %s; restarting it", number, pid, how)
            children[_fork_worker(api, sock, number, drain_timeout, timeout)] = number
    finally:
        _stop_workers(children, drain_timeout)
        sock.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if failure:
        raise ServerError(failure)


def _exit_reason(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.WEXITSTATUS(status)}"


def _stop_workers(children: dict[int, int], drain: float) -> None:
    """SIGTERM every worker, wait for them to drain (bounded), SIGKILL what is left."""
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + drain + 5
    waiting = set(children)
    while waiting and time.monotonic() < deadline:
        for pid in list(waiting):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                waiting.discard(pid)
        time.sleep(0.05)
    for pid in waiting:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


__all__ = ["Batcher", "ServerError", "bind", "build_app", "run"]
