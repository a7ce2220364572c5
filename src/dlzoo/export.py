"""Old home of :mod:`dlzoo.deploy.export` (and of ``restore_checkpoint``, now in
:mod:`dlzoo.cli.checkpoint`); kept so that imports of 0.1.0.dev0 work."""

from dlzoo.cli.checkpoint import restore_checkpoint
from dlzoo.deploy.bundle import BUNDLE_FILE, ExportedModel, load_bundle
from dlzoo.deploy.export import (
    ExportError,
    InferenceNetwork,
    eager_outputs,
    example_batch,
    export_model,
)

__all__ = [
    "BUNDLE_FILE",
    "ExportError",
    "ExportedModel",
    "InferenceNetwork",
    "eager_outputs",
    "example_batch",
    "export_model",
    "load_bundle",
    "restore_checkpoint",
]
