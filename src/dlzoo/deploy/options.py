"""How ``dlzoo serve`` serves (:class:`ServeOptions`), declared once: ``dlzoo serve`` with a
config offers these fields as its flags (``DlzooTrainer.serve`` passes its ``**options`` to this
class, which is what LightningCLI reads), ``dlzoo serve --bundle`` builds its flags from them,
and both hosts take them. The budgets of one request are the inherited
:class:`dlzoo.deploy.requests.Limits`."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from dlzoo.deploy import ServerName
from dlzoo.deploy.bundle import default_threads
from dlzoo.deploy.requests import Limits


def check_serving(
    port: int, workers: int, threads: int | None, timeout: float, drain_timeout: float
) -> None:
    """Refuse, before any model is loaded, serving options no server can run with."""
    if type(port) is not int or not 0 <= port <= 65535:
        raise ValueError(f"--port must be a TCP port from 0 to 65535, got {port!r}")
    if type(workers) is not int or workers < 1:
        raise ValueError(f"--workers must be a whole number of at least 1, got {workers!r}")
    if threads is not None and (type(threads) is not int or threads < 1):
        raise ValueError(f"--threads must be a whole number of at least 1, got {threads!r}")
    if not timeout > 0:
        raise ValueError(f"--timeout must be above 0 seconds, got {timeout!r}")
    if not drain_timeout >= 0:
        raise ValueError(f"--drain_timeout must be 0 seconds or more, got {drain_timeout!r}")


@dataclass(frozen=True)
class ServeOptions(Limits):
    """How ``dlzoo serve`` serves, and the budgets of a request (the fields of :class:`Limits`):
    the one declaration of these options, their defaults and their help.

    Args:
        host: the address to bind; loopback unless told otherwise (``0.0.0.0``: every
            interface).
        port: the TCP port.
        server: ``dlzoo`` (uvicorn workers predicting in-process; CPU) or ``litserve``
            (LitServe, a process per inference worker); default: LitServe on a GPU, dlzoo's
            host on CPU.
        workers: serving processes (CPU: each gets cores/workers intra-op threads).
        threads: inference threads per worker (default: cores / workers).
        instances: batches a worker runs at once (ONNX Runtime), each on threads /
            instances threads. Default (auto): one per thread when one input takes 2 ms
            or more on one thread (image networks: single-threaded runs of small batches
            cost the least CPU per input), else 1 (small networks, where HTTP dominates).
        max_batch_size: most requests predicted together (1: no batching).
        batch_timeout: seconds to wait for a batch to fill beyond the requests already
            waiting (0: predict what is waiting at once).
        timeout: seconds a request may wait for its answer (then 504).
        drain_timeout: seconds in-flight requests get to finish on shutdown (then 503).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    server: ServerName | None = None
    workers: int = 1
    threads: int | None = None
    instances: int | None = None
    max_batch_size: int = 64
    batch_timeout: float = 0.0
    timeout: float = 30.0
    drain_timeout: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_serving(self.port, self.workers, self.threads, self.timeout, self.drain_timeout)

    def resolved(self, gpu: bool = False) -> ServeOptions:
        """These options with their automatic defaults settled: the server (LitServe on a
        GPU, dlzoo's host on CPU) and the threads per worker (the cores / workers)."""
        threads = self.threads or max(1, default_threads() // self.workers)
        return replace(
            self, server=self.server or ("litserve" if gpu else "dlzoo"), threads=threads
        )

    @property
    def limits(self) -> Limits:
        """The budgets of one request alone (what the prediction API checks)."""
        return Limits(**{f.name: getattr(self, f.name) for f in fields(Limits)})

    @property
    def prediction_settings(self) -> dict[str, Any]:
        """What :meth:`PredictionAPI.for_model <dlzoo.deploy.serve.PredictionAPI.for_model>` and
        ``for_bundle`` take of these options."""
        return {
            "threads": self.threads,
            "instances": self.instances,
            "max_batch_size": self.max_batch_size,
            "batch_timeout": self.batch_timeout,
            "limits": self.limits,
        }


__all__ = ["ServeOptions", "check_serving"]
