"""How ``dlzoo serve`` serves (:class:`ServeOptions`), declared once: ``dlzoo serve --bundle``
builds its flags from these fields, ``dlzoo serve`` with a config builds them from
``DlzooTrainer.serve``'s arguments, and both hosts take them. The budgets of one request are
:class:`dlzoo.deploy.requests.Limits`."""

from __future__ import annotations

from dataclasses import dataclass

from dlzoo.deploy import ServerName


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
class ServeOptions:
    """How ``dlzoo serve`` serves, besides the budgets of a request (``Limits``): the one
    declaration of these options and their defaults. ``DlzooTrainer.serve`` must repeat them
    in its signature (LightningCLI reads a signature); a test holds it to these defaults."""

    #: the address to bind: loopback unless told otherwise
    host: str = "127.0.0.1"
    #: the TCP port
    port: int = 8000
    #: dlzoo's host (CPU) or LitServe's (GPU)
    server: ServerName = "dlzoo"
    #: serving processes
    workers: int = 1
    #: inference threads per worker (default: cores / workers)
    threads: int | None = None
    #: batches a worker runs at once (default: auto)
    instances: int | None = None
    #: most requests predicted together (1: no batching)
    max_batch_size: int = 64
    #: seconds to wait for a batch to fill beyond the requests already waiting
    batch_timeout: float = 0.0
    #: seconds a request may wait for its answer (then 504)
    timeout: float = 30.0
    #: seconds in-flight requests get to finish on shutdown (then 503)
    drain_timeout: float = 10.0

    def __post_init__(self) -> None:
        check_serving(self.port, self.workers, self.threads, self.timeout, self.drain_timeout)


__all__ = ["ServeOptions", "check_serving"]
