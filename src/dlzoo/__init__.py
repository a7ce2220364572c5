"""dlzoo: classic deep-learning models and datasets as Lightning modules.

The front door is four functions::

    import dlzoo
    dlzoo.list_models()                      # ['ffn', ...]
    dm = dlzoo.create_datamodule("bank_marketing")
    model = dlzoo.create_model("ffn", num_features=dm.num_features)
"""

from dlzoo import data as data
from dlzoo import models as models
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
