"""The ``dlzoo`` command (LightningCLI): ``main`` is its entry point.

- :mod:`dlzoo.cli.main`: the CLI class, its links and defaults, and ``main``;
- :mod:`dlzoo.cli.trainer`: its Trainer (``export``, ``serve``, ``predict`` in ONNX Runtime) and
  the loggers every run gets;
- :mod:`dlzoo.cli.checkpoint`: the one path that reads a checkpoint and restores a model and its
  DataModule from it;
- :mod:`dlzoo.cli.names`: registered names and recipes on the command line;
- :mod:`dlzoo.cli.private`: every Lightning / jsonargparse private API dlzoo relies on.
"""

from dlzoo.cli.main import (
    DlzooCLI,
    DlzooTrainer,
    default_loggers,
    main,
    make_cli,
)
from dlzoo.cli.names import expand_registered_names

__all__ = [
    "DlzooCLI",
    "DlzooTrainer",
    "default_loggers",
    "expand_registered_names",
    "main",
    "make_cli",
]
