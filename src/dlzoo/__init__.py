"""dlzoo: classic deep-learning models and datasets as Lightning modules.

The front door is four functions::

    import dlzoo
    dlzoo.list_models()                      # ['ffn', ...]
    dm = dlzoo.create_datamodule("bank_marketing")
    model = dlzoo.create_model("ffn", num_features=dm.num_features)

``import dlzoo`` is light: ``dlzoo.models`` and ``dlzoo.data`` (and Lightning) load on first use,
so that serving an export bundle starts in seconds.
"""

from __future__ import annotations

import importlib
from typing import Any

from dlzoo.registry import (
    create_datamodule,
    create_model,
    get_datamodule_class,
    get_model_class,
    list_datamodules,
    list_models,
    register_datamodule,
    register_model,
)

__version__ = "0.1.0.dev0"

_SUBPACKAGES = ("data", "models")


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"dlzoo.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "__version__",
    "create_datamodule",
    "create_model",
    "get_datamodule_class",
    "get_model_class",
    "list_datamodules",
    "list_models",
    "register_datamodule",
    "register_model",
]
