"""Two dicts and a decorator: how a name becomes a model or a DataModule.

Modelled on torchvision's ``register_model`` / ``get_model``: registering is one decorator line
above the class, creating is ``create_model("ffn", **kwargs)``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import lightning.pytorch as pl

MODELS: dict[str, type[pl.LightningModule]] = {}
DATAMODULES: dict[str, type[pl.LightningDataModule]] = {}
#: other names a registered model answers to (not listed): the book's name for the fine-tuner
ALIASES: dict[str, str] = {"vgg16_finetune": "finetune", "bert": "text_encoder"}
#: import paths of registered classes that moved, by the registered name they now answer to:
#: configs and checkpoints written before name them so
MOVED: dict[str, str] = {
    "dlzoo.data.images.CatsDogsDataModule": "cats_dogs",
    "dlzoo.data.tabular.BankMarketingDataModule": "bank_marketing",
}

T = TypeVar("T")


def _register(table: dict[str, Any], kind: str, name: str) -> Callable[[T], T]:
    if name != name.lower() or not name.replace("_", "").isalnum():
        raise ValueError(f"{kind} names are lower snake case, got {name!r}")

    def decorator(cls: T) -> T:
        if name in table and table[name] is not cls:
            raise ValueError(f"{kind} {name!r} is already registered to {table[name].__qualname__}")
        table[name] = cls
        return cls

    return decorator


def register_model(name: str) -> Callable[[T], T]:
    """Class decorator: make a LightningModule available as ``create_model(name)``."""
    return _register(MODELS, "model", name)


def register_datamodule(name: str) -> Callable[[T], T]:
    """Class decorator: make a LightningDataModule available as ``create_datamodule(name)``."""
    return _register(DATAMODULES, "datamodule", name)


def load_builtins() -> None:
    """Import dlzoo's own models and DataModules, which register themselves (once; importing
    ``dlzoo`` alone does not load Lightning)."""
    from dlzoo.data import DATAMODULE_MODULES

    for module in ("dlzoo.models", *DATAMODULE_MODULES):
        importlib.import_module(module)


def _lookup(table: dict[str, Any], kind: str, name: str) -> Any:
    load_builtins()
    try:
        return table[ALIASES.get(name, name)] if table is MODELS else table[name]
    except KeyError:
        known = ", ".join(sorted(table)) or "(none)"
        raise KeyError(f"unknown {kind} {name!r}; registered {kind}s: {known}") from None


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    load_builtins()
    return sorted(MODELS)


def list_datamodules() -> list[str]:
    """Names accepted by :func:`create_datamodule`, sorted."""
    load_builtins()
    return sorted(DATAMODULES)


def get_model_class(name: str) -> type[pl.LightningModule]:
    return _lookup(MODELS, "model", name)


def get_datamodule_class(name: str) -> type[pl.LightningDataModule]:
    return _lookup(DATAMODULES, "datamodule", name)


def create_model(name: str, **kwargs: Any) -> pl.LightningModule:
    """Build a registered model: ``create_model("ffn", num_features=51)``."""
    return get_model_class(name)(**kwargs)


def create_datamodule(name: str, **kwargs: Any) -> pl.LightningDataModule:
    """Build a registered DataModule: ``create_datamodule("bank_marketing", batch_size=256)``."""
    return get_datamodule_class(name)(**kwargs)


def init_arguments(cls: type) -> set[str]:
    """Names ``cls(...)`` accepts: its ``__init__`` parameters, and those of the base classes its
    ``**kwargs`` are forwarded to (the convention of every dlzoo model and DataModule)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - {
            "self"
        }
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


def class_paths(cls: type) -> set[str]:
    """Every spelling of a registered class: registry name, class name, public and module paths."""
    spellings = {cls.__name__, f"{cls.__module__}.{cls.__qualname__}"}
    for table, package in ((MODELS, "dlzoo.models"), (DATAMODULES, "dlzoo.data")):
        spellings |= {name for name, registered in table.items() if registered is cls}
        if table is MODELS:
            spellings |= {alias for alias, name in ALIASES.items() if MODELS.get(name) is cls}
        if any(registered is cls for registered in table.values()):
            spellings.add(f"{package}.{cls.__name__}")
        spellings |= {old for old, name in MOVED.items() if table.get(name) is cls}
    return spellings


def resolve_class(table: dict[str, Any], name: str) -> type | None:
    """The registered class ``name`` spells (any of :func:`class_paths`), else ``None``."""
    load_builtins()
    for cls in table.values():
        if name in class_paths(cls):
            return cls
    return None
