"""The command line's parser errors, read error-first by every ``dlzoo`` entry point.

jsonargparse (like argparse) prints the whole usage before the error: for a subcommand that
takes a Trainer, a model and a DataModule that is 90 lines, and the mistake is at the bottom.
:class:`ErrorFirst` prints the line that says what is wrong, then one usage line saying where
the full help is. The LightningCLI's parser (:class:`dlzoo.cli.main.DlzooArgumentParser`) and
``dlzoo serve --bundle``'s (:func:`dlzoo.deploy.server.bundle_main`, no Lightning) both use it.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from jsonargparse import ArgumentParser


class ErrorFirst(ArgumentParser):
    """A jsonargparse parser whose errors read error-first (at most 12 lines of the message)."""

    #: the short usage line of an error; ``None``: ``PROG [options]``
    usage_line: str | None = None

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        # a LightningCLI subcommand's error names its own parser
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        usage = self.usage_line or f"{prog} [options]"
        command = usage.replace(" [options]", "")
        lines = str(message).strip().splitlines() or ["invalid arguments"]
        shown = lines[:12] + ([f"... ({len(lines) - 12} more lines)"] if len(lines) > 12 else [])
        sys.stderr.write(f"{prog}: error: " + "\n  ".join(shown) + "\n")
        sys.stderr.write(f"usage: {usage}; '{command} --help' lists every option\n")
        self.exit(2)


__all__ = ["ErrorFirst"]
