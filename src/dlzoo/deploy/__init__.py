"""Deployment: export bundles (:mod:`.export`, :mod:`.bundle`) and serving (:mod:`.serve`,
:mod:`.host`)."""

import ctypes
import signal
import sys
from typing import Literal

#: what runs the network when serving: ``auto`` chooses ONNX Runtime on CPU
RuntimeName = Literal["auto", "onnxruntime", "torch"]
#: which HTTP host serves: dlzoo's (CPU) or LitServe's (GPU)
ServerName = Literal["dlzoo", "litserve"]


class ServerError(RuntimeError):
    """The server had to stop: workers kept dying."""


def die_with_parent() -> None:
    """Have the kernel SIGTERM this process when the process that started it dies, even by
    SIGKILL (Linux ``PR_SET_PDEATHSIG``; elsewhere nothing), so that no server process is left
    holding the port."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


__all__ = ["RuntimeName", "ServerError", "ServerName", "die_with_parent"]
