"""Serving entry points: :func:`serve` hosts a :class:`~dlzoo.deploy.serve.PredictionAPI` on
dlzoo's host (:mod:`dlzoo.deploy.host`, CPU) or LitServe (GPU); :func:`bundle_main` is
``dlzoo serve --bundle DIR``. Above both the API and the hosts, so neither imports the other's
entry point."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, get_args

from dlzoo.deploy import ServerName, die_with_parent
from dlzoo.deploy.bundle import default_threads
from dlzoo.deploy.host import run
from dlzoo.deploy.requests import Limits
from dlzoo.deploy.serve import PredictionAPI, build_server

log = logging.getLogger(__name__)


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # LitServe's own graceful shutdown path


_litserve_running = False


def _litserve_child() -> None:
    """In every process LitServe forks (its API server, its manager): die with LitServe."""
    if _litserve_running:
        die_with_parent()


os.register_at_fork(after_in_child=_litserve_child)


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
    """How ``dlzoo serve`` serves, besides the budgets of a request (:class:`Limits`): the one
    declaration of these options and their defaults. ``dlzoo serve --bundle`` builds its flags
    from these fields; ``dlzoo serve`` with a config declares them in ``DlzooTrainer.serve``'s
    signature (LightningCLI reads a signature), which a test holds to these defaults."""

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


def serve(
    api: PredictionAPI,
    host: str = "127.0.0.1",
    port: int = 8000,
    server: ServerName = "dlzoo",
    workers: int = 1,
    threads: int | None = None,
    drain_timeout: float = 10.0,
    timeout: float = 30.0,
    accelerator: str = "cpu",
) -> None:
    """Serve ``api`` until SIGTERM or SIGINT; binds to ``host`` (loopback unless told
    otherwise). ``server="dlzoo"``: :func:`dlzoo.deploy.host.run` (``workers`` processes);
    ``"litserve"``: LitServe (``workers`` per device)."""
    check_serving(port, workers, threads, timeout, drain_timeout)
    if server == "litserve":
        import multiprocessing

        litserver = build_server(
            api, accelerator=accelerator, workers_per_device=workers, timeout=timeout
        )
        log.info("serving on http://%s:%d/predict (LitServe)", host, port)
        previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
        # its processes die with it, even when it is SIGKILLed: the forked ones through
        # _litserve_child, the spawned inference workers in the API's setup
        global _litserve_running
        _litserve_running, api.die_with_parent = True, True
        try:
            litserver.run(
                host=host,
                port=port,
                generate_client_file=False,
                log_level="warning",
                num_api_servers=1,
            )
        finally:
            _litserve_running = False
            signal.signal(signal.SIGTERM, previous)
            for child in multiprocessing.active_children():  # what LitServe left running
                child.terminate()
                child.join(5)
        return
    run(
        api,
        host=host,
        port=port,
        workers=workers,
        threads=threads or max(1, default_threads() // workers),
        drain_timeout=drain_timeout,
        timeout=timeout,
    )


def bundle_main(argv: Sequence[str]) -> None:
    """``dlzoo serve --bundle DIR [options]``: serve an export bundle, no config or checkpoint;
    the options are ``dlzoo serve``'s (``--help`` lists them)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="dlzoo serve --bundle DIR",
        description="Serve an ONNX export bundle with ONNX Runtime (POST /predict, GET /health).",
    )
    parser.add_argument("--bundle", required=True, help="the bundle folder (dlzoo export)")
    for field in fields(ServeOptions) + fields(Limits):
        kind = int if field.default is None else type(field.default)  # threads, instances
        choices = get_args(ServerName) if field.name == "server" else None
        parser.add_argument(f"--{field.name}", type=kind, default=field.default, choices=choices)
    args = vars(parser.parse_args(list(argv)))
    options = ServeOptions(**{f.name: args[f.name] for f in fields(ServeOptions)})
    limits = Limits(**{f.name: args[f.name] for f in fields(Limits)})
    threads = options.threads or max(1, default_threads() // options.workers)
    api = PredictionAPI.for_bundle(
        args["bundle"],
        threads=threads,
        instances=options.instances,
        max_batch_size=options.max_batch_size,
        batch_timeout=options.batch_timeout,
        limits=limits,
    )
    serve(
        api,
        host=options.host,
        port=options.port,
        server=options.server,
        workers=options.workers,
        threads=threads,
        drain_timeout=options.drain_timeout,
        timeout=options.timeout,
    )


__all__ = ["ServeOptions", "bundle_main", "check_serving", "serve"]
