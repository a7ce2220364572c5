"""The ``dlzoo`` command (its console script, and ``python -m dlzoo``).

It imports what the subcommand needs: ``dlzoo serve --bundle DIR`` runs an ONNX bundle without
Lightning or torchmetrics (a server is healthy in seconds); ``dlzoo sweep`` is
:mod:`dlzoo.sweep` (which runs the command once per trial, so it sits above :mod:`dlzoo.cli`);
every other subcommand is the LightningCLI of :mod:`dlzoo.cli`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def serves_bundle(args: Sequence[str]) -> bool:
    """Whether ``args`` (after ``dlzoo``) ask to serve an export bundle."""
    return list(args[:1]) == ["serve"] and any(
        a == "--bundle" or a.startswith("--bundle=") for a in args
    )


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``dlzoo`` command; see :func:`dlzoo.cli.main` for ``args``."""
    given = sys.argv[1:] if args is None else list(args)
    if given[:1] == ["sweep"]:
        from dlzoo.command import run_command
        from dlzoo.sweep import main as sweep_main

        if args is not None:
            sweep_main(given[1:])
            return
        run_command(lambda: sweep_main(given[1:]))
        return
    if not serves_bundle(given):
        from dlzoo.cli.main import main as cli_main

        cli_main(args)
        return
    from dlzoo.command import run_command, show_dlzoo_logs
    from dlzoo.deploy.server import bundle_main

    show_dlzoo_logs()

    if args is not None:
        bundle_main(given[1:])
        return
    run_command(lambda: bundle_main(given[1:]))


if __name__ == "__main__":
    main()
