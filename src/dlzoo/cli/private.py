"""Every private API or undocumented behaviour of Lightning and jsonargparse that dlzoo relies
on, in one place.

Each entry names the API, where dlzoo uses it and why no public one does; ``tests/
test_private_apis.py`` has a test per entry that fails loudly when the upstream behaviour
changes (checked with lightning 2.6 and jsonargparse 4.53). The command otherwise uses
LightningCLI's public extension points only (``subcommands``, ``parse_arguments``,
``before_instantiate_classes``, ``instantiate_classes``, ``instantiate_trainer``).
"""

from __future__ import annotations

from typing import NamedTuple


class PrivateAPI(NamedTuple):
    api: str
    used_in: str
    why: str


PRIVATE_APIS: tuple[PrivateAPI, ...] = (
    PrivateAPI(
        "hyper_parameters['_class_path'] in LightningCLI checkpoints",
        "dlzoo.cli.checkpoint.checkpoint_model_class",
        "which model class wrote a checkpoint; LightningCLI records it there",
    ),
    PrivateAPI(
        "LightningCLI reads --ckpt_path's hyperparameters between parse_arguments and "
        "before_instantiate_classes (lightning >= 2.5), importing the class they name",
        "dlzoo.cli.main.DlzooCLI._model_from_checkpoint",
        "dlzoo reads the checkpoint itself in parse_arguments (one-line errors, only dlzoo's or "
        "the config's classes imported, only the arguments a class takes) and holds the path "
        "back from the config until before_instantiate_classes, so Lightning's reading is "
        "skipped; no public switch turns it off",
    ),
    PrivateAPI(
        "a LightningDataModule's state_dict() is saved in checkpoints under the key "
        "type(datamodule).__qualname__ (the layout of Lightning's checkpoint connector)",
        "dlzoo.cli.main.DlzooCLI._datamodule",
        "a user's DataModule gets its checkpoint state before its sizes describe the model; "
        "Lightning restores it only when the run starts, after the model is built, and offers "
        "no accessor for the key (dlzoo's own DataModules use DataModule.restore)",
    ),
    PrivateAPI(
        "with use_distributed_sampler=True Lightning keeps a loader's sampler that is a "
        "DistributedSampler (documented under Trainer(use_distributed_sampler); decided by "
        "the private _DataConnector._requires_distributed_sampler)",
        "dlzoo.data.batching.ShardedBatchSampler",
        "dlzoo's batch order (exact resumes, every row scored once under DDP) must not be "
        "replaced by Lightning's DistributedSampler, and turning the option off would make a "
        "user's own loaders unsharded",
    ),
    PrivateAPI(
        "ModelCheckpoint.load_state_dict keeps the best checkpoint's score only when the "
        "checkpoint's dirpath is the run's; its state_dict keys and its state_key "
        "'ModelCheckpoint{...}' (the layout of Lightning's checkpoints)",
        "dlzoo.cli.checkpoint.RunCheckpoint",
        "a run resumed into a new folder would keep its first checkpoint as the best; "
        "RunCheckpoint carries the best over under Lightning's own state key, so runs "
        "written with either class resume with either",
    ),
)

__all__ = ["PRIVATE_APIS", "PrivateAPI"]
