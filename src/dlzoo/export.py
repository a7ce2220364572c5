"""Old home of :mod:`dlzoo.deploy.export` (and of ``restore_checkpoint``, now in
:mod:`dlzoo.cli.checkpoint`); kept so that imports of 0.1.0.dev0 work."""

from dlzoo.cli.checkpoint import restore_checkpoint
from dlzoo.deploy import export as _export
from dlzoo.deploy.export import *  # noqa: F403

__all__ = [*_export.__all__, "restore_checkpoint"]
