"""Serving entry points: :func:`serve` hosts a :class:`~dlzoo.deploy.serve.PredictionAPI` on
dlzoo's host (:mod:`dlzoo.deploy.host`, CPU) or LitServe (GPU); :func:`bundle_main` is
``dlzoo serve --bundle DIR``. Above both the API and the hosts, so neither imports the other's
entry point."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Sequence
from typing import Any

from dlzoo.deploy import die_with_parent
from dlzoo.deploy.host import run
from dlzoo.deploy.options import ServeOptions, check_serving
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


def serve(
    api: PredictionAPI,
    options: ServeOptions | None = None,
    accelerator: str = "cpu",
    **settings: Any,
) -> None:
    """Serve ``api`` until SIGTERM or SIGINT, as ``options`` say (binding to loopback unless
    told otherwise). ``server="dlzoo"``: :func:`dlzoo.deploy.host.run` (``workers``
    processes); ``"litserve"``: LitServe (``workers`` per device). ``settings``: the fields of
    :class:`ServeOptions` given one by one (``serve(api, port=8080)``), as before it existed.
    """
    options = options or ServeOptions(**settings)
    if options.server == "litserve":
        import multiprocessing

        litserver = build_server(
            api,
            accelerator=accelerator,
            workers_per_device=options.workers,
            timeout=options.timeout,
        )
        log.info("serving on http://%s:%d/predict (LitServe)", options.host, options.port)
        previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
        # its processes die with it, even when it is SIGKILLed: the forked ones through
        # _litserve_child, the spawned inference workers in the API's setup
        global _litserve_running
        _litserve_running, api.die_with_parent = True, True
        try:
            litserver.run(
                host=options.host,
                port=options.port,
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
    run(api, options.resolved())


def bundle_main(argv: Sequence[str]) -> None:
    """``dlzoo serve --bundle DIR [options]``: serve an export bundle, no config or checkpoint;
    the options are ``dlzoo serve``'s, read from :class:`ServeOptions` by the same parser
    (jsonargparse) with the same types, defaults and help."""
    from dlzoo.parsing import ErrorFirst

    parser = ErrorFirst(
        prog="dlzoo serve",
        description="Serve an ONNX export bundle with ONNX Runtime (POST /predict, GET /health).",
    )
    parser.usage_line = "dlzoo serve --bundle DIR [options]"
    parser.add_argument("--bundle", required=True, help="the bundle folder (dlzoo export)")
    parser.add_class_arguments(ServeOptions, as_group=False)
    args = parser.parse_args(list(argv)).as_dict()
    bundle = args.pop("bundle")
    options = ServeOptions(**args).resolved()  # ONNX Runtime on CPU
    api = PredictionAPI.for_bundle(bundle, **options.prediction_settings)
    serve(api, options)


__all__ = ["ServeOptions", "bundle_main", "check_serving", "serve"]
