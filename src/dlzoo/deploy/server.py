"""Serving entry points: :func:`serve` hosts a :class:`~dlzoo.deploy.serve.PredictionAPI` on
dlzoo's host (:mod:`dlzoo.deploy.host`, CPU) or LitServe (GPU); :func:`bundle_main` is
``dlzoo serve --bundle DIR``. Above both the API and the hosts, so neither imports the other's
entry point."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

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
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--server", choices=["dlzoo", "litserve"], default="dlzoo")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--instances", type=int, default=None, help="default: auto")
    parser.add_argument("--max_batch_size", type=int, default=64)
    parser.add_argument("--batch_timeout", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--drain_timeout", type=float, default=10.0)
    for field in fields(Limits):
        parser.add_argument(f"--{field.name}", type=type(field.default), default=field.default)
    args = parser.parse_args(list(argv))
    check_serving(args.port, args.workers, args.threads, args.timeout, args.drain_timeout)
    limits = Limits(**{f.name: getattr(args, f.name) for f in fields(Limits)})
    threads = args.threads or max(1, default_threads() // args.workers)
    api = PredictionAPI.for_bundle(
        args.bundle,
        threads=threads,
        instances=args.instances,
        max_batch_size=args.max_batch_size,
        batch_timeout=args.batch_timeout,
        limits=limits,
    )
    serve(
        api,
        host=args.host,
        port=args.port,
        server=args.server,
        workers=args.workers,
        threads=threads,
        drain_timeout=args.drain_timeout,
        timeout=args.timeout,
    )


__all__ = ["bundle_main", "check_serving", "serve"]
