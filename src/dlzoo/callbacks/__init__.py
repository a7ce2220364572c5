"""Callbacks the ``dlzoo`` command adds to its runs (one file per job): plots and
reconstructions in the run directory (:mod:`.artifacts`), the predictions CSV
(:mod:`.predictions`), exact resumes, the progress bar and the fine-tuner's hand-offs to image
data (:mod:`.training`). Checkpoint writing is :class:`dlzoo.cli.checkpoint.AtomicCheckpointIO`
and predicting in ONNX Runtime :class:`dlzoo.cli.trainer.OnnxPredict` (neither is an observer).
"""

from dlzoo.callbacks.artifacts import (
    ReconstructionGrid,
    RunArtifacts,
    collect_outputs,
    collect_probabilities,
    run_dir,
    save_reconstructions,
)
from dlzoo.callbacks.predictions import PredictionWriter
from dlzoo.callbacks.training import AdoptPreprocessing, CacheFeatures, EpochSeed, ProgressBar
from dlzoo.data.base import output_names


def __getattr__(name: str) -> type:
    # their old home: kept for imports of earlier releases (they live above the callbacks)
    if name == "AtomicCheckpointIO":
        from dlzoo.cli.checkpoint import AtomicCheckpointIO

        return AtomicCheckpointIO
    if name == "OnnxPredict":
        from dlzoo.cli.trainer import OnnxPredict

        return OnnxPredict
    raise AttributeError(f"module 'dlzoo.callbacks' has no attribute {name!r}")


__all__ = [
    "AdoptPreprocessing",
    "CacheFeatures",
    "EpochSeed",
    "PredictionWriter",
    "ProgressBar",
    "ReconstructionGrid",
    "RunArtifacts",
    "collect_outputs",
    "collect_probabilities",
    "output_names",
    "run_dir",
    "save_reconstructions",
]
