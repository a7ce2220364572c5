"""Every private API of Lightning and jsonargparse that dlzoo relies on, in one place.

Each entry names the API, where dlzoo uses it and why no public one does; ``tests/
test_private_apis.py`` has a test per entry that fails loudly when the upstream behaviour
changes (checked with lightning 2.6 and jsonargparse 4.53).
"""

from __future__ import annotations

from typing import NamedTuple


class PrivateAPI(NamedTuple):
    api: str
    used_in: str
    why: str


PRIVATE_APIS: tuple[PrivateAPI, ...] = (
    PrivateAPI(
        "lightning.pytorch.cli.LightningCLI._add_subcommands",
        "dlzoo.cli.main.DlzooCLI._add_subcommands",
        "build only the parser of the subcommand that runs (each costs ~0.1 s of signature "
        "parsing); no public hook chooses which subcommand parsers are built",
    ),
    PrivateAPI(
        "lightning.pytorch.cli.LightningCLI._parse_ckpt_path",
        "dlzoo.cli.main.DlzooCLI._parse_ckpt_path",
        "rebuild the model from a checkpoint's hyperparameters safely (only arguments the class "
        "takes, only registered or configured classes imported); Lightning's own imports any "
        "class the checkpoint names",
    ),
    PrivateAPI(
        "lightning.pytorch.cli.LightningCLI._subcommand_parsers",
        "dlzoo.cli.main.DlzooCLI.parse_arguments (--print_config)",
        "dump a subcommand's config after dlzoo fills in the checkpoint monitor",
    ),
    PrivateAPI(
        "hyper_parameters['_class_path'] in LightningCLI checkpoints",
        "dlzoo.cli.checkpoint.checkpoint_model_class",
        "which model class wrote a checkpoint; LightningCLI records it there",
    ),
    PrivateAPI(
        "lightning.pytorch.LightningModule._hparams / _hparams_initial",
        "dlzoo.models.base.keep_own_hparams",
        "drop linked sizes a model class does not take, so its checkpoint rebuilds it; "
        "save_hyperparameters(ignore=...) cannot know which sizes the CLI linked",
    ),
    PrivateAPI(
        "jsonargparse's message 'compute_fn of link' on errors raised in a link",
        "dlzoo.cli.main.DlzooCLI.instantiate_classes",
        "unwrap the DataModule's own error (a missing CSV) from the link's wrapper",
    ),
)

__all__ = ["PRIVATE_APIS", "PrivateAPI"]
