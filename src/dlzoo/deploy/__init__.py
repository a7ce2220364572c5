"""Deployment: export bundles (:mod:`.export`, :mod:`.bundle`) and serving (:mod:`.serve`,
:mod:`.host`)."""

from typing import Literal

#: what runs the network when serving: ``auto`` chooses ONNX Runtime on CPU
RuntimeName = Literal["auto", "onnxruntime", "torch"]
#: which HTTP host serves: dlzoo's (CPU) or LitServe's (GPU)
ServerName = Literal["dlzoo", "litserve"]


class ServerError(RuntimeError):
    """The server had to stop: workers kept dying."""


__all__ = ["RuntimeName", "ServerError", "ServerName"]
