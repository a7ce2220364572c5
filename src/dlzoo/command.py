"""What every ``dlzoo`` subcommand shares: dlzoo's log messages on stderr, and a user's mistake
reported as one ``dlzoo: error:`` line with status 1.

Light on purpose (no Lightning): the command's entry point (:mod:`dlzoo.__main__`) uses it
before it knows whether the subcommand needs Lightning at all.
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
import sys
from collections.abc import Callable

from dlzoo.data.download import ChecksumError, DownloadError
from dlzoo.deploy import ServerError

#: errors that mean "fix your data or config": one line for the user, no traceback
USER_ERRORS = (
    ServerError,
    FileNotFoundError,
    NotADirectoryError,
    PermissionError,
    ValueError,
    KeyError,
    DownloadError,
    ChecksumError,
    pickle.UnpicklingError,
)


#: a disk that is full (or over quota): the user's to fix, said in one line
FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


def show_dlzoo_logs() -> None:
    """dlzoo's INFO messages (what was skipped, cached, adopted, served) on stderr, as
    Lightning's are."""
    logger = logging.getLogger("dlzoo")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def run_command(run: Callable[[], object], also: tuple[type[Exception], ...] = ()) -> None:
    """Run a subcommand as the ``dlzoo`` command does: a :data:`USER_ERRORS` error, or one of
    ``also`` (the subcommand's own, e.g. Lightning's ``MisconfigurationException``), prints one
    line and exits with status 1 (``DLZOO_TRACEBACK=1`` shows the traceback instead)."""
    try:
        run()
    except (*USER_ERRORS, *also, OSError) as err:
        if os.environ.get("DLZOO_TRACEBACK", "") not in ("", "0"):
            raise
        if type(err) is OSError and err.errno not in FULL_DISK:
            raise  # another OSError may be dlzoo's bug: its traceback
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        if type(err) is OSError:
            where = f" writing {err.filename}" if err.filename else ""
            message = (
                f"{err.strerror}{where}: free some space or write elsewhere "
                "(--trainer.default_root_dir); the checkpoints already written are whole"
            )
        print(f"dlzoo: error: {message}", file=sys.stderr)
        print("(DLZOO_TRACEBACK=1 shows where it happened)", file=sys.stderr)
        raise SystemExit(1) from None


__all__ = ["USER_ERRORS", "run_command", "show_dlzoo_logs"]
