"""What runs a dlzoo network when serving or predicting: the Lightning model in eager torch
(:class:`TorchRuntime`) or the exported graph in ONNX Runtime (:class:`OnnxRuntime`). Both take a
collated batch and return ``predict_step``'s outputs, so the task row decodes either."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlzoo.onnx_io import ExportedModel
from dlzoo.tasks import Task, get_task

log = logging.getLogger(__name__)

#: ``instances=None`` (auto): one instance per thread when one input takes at least this long
#: on one thread (MobileNetV2 ~11 ms on 2 cores: 2 instances answered ~1.3x more; the bank FFN
#: ~0.05 ms: one instance answered more, its HTTP side dominates)
AUTO_INSTANCES_MS = 2.0


class TorchRuntime:
    """The Lightning model's ``predict_step`` in eager torch (CPU or GPU)."""

    name = "torch"
    instances = 1  # one batch at a time: torch's intra-op threads are process-wide

    def __init__(self, model: Any, threads: int | None = None) -> None:
        self.model = model.cpu().eval()
        self.threads = threads
        self.device = torch.device("cpu")

    @property
    def task(self) -> Task:
        return self.model.task

    def setup(self, device: str = "cpu", example: Any = None) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        self.device = torch.device(device)
        self.model.to(self.device).eval()

    def __call__(self, batch: Any) -> dict[str, torch.Tensor]:
        batch = (
            tuple(t.to(self.device) for t in batch)
            if isinstance(batch, tuple)
            else batch.to(self.device)
        )
        with torch.inference_mode():
            return self.model.predict_step((batch,), 0)


class OnnxRuntime:
    """The exported network in ONNX Runtime (CPU): the same outputs as :class:`TorchRuntime`
    within the export's parity tolerance, decoded by the same task row.

    ``instances`` batches may run at once (one session, run from several threads), each on
    ``threads // instances`` intra-op threads: on CPU, single-threaded runs of small batches
    cost the least CPU time per input (BENCHMARKS.md), so a busy server answers more. ``None``
    (auto): chosen in :meth:`setup` by timing one example input on one thread (at least
    :data:`AUTO_INSTANCES_MS`: one instance per thread; less: one)."""

    name = "onnxruntime"

    def __init__(
        self,
        model_file: str | Path,
        task: str,
        hyperparameters: Mapping[str, Any],
        input_names: Sequence[str],
        threads: int | None = None,
        instances: int | None = 1,
    ) -> None:
        self.model_file, self.threads = Path(model_file), threads
        self.instances = None if instances is None else max(1, instances)
        self.task_name = task  # a name: task rows hold functions, which do not pickle
        self.hparams = {**hyperparameters, "task": task}
        self.input_names = list(input_names)
        self.session: ExportedModel | None = None

    @property
    def task(self) -> Task:
        return get_task(self.task_name)

    def setup(self, device: str = "cpu", example: Any = None) -> None:
        """Create the session (``example``: a collated batch of one input, to choose
        ``instances`` when it is ``None``)."""
        timed = None
        if self.instances is None:
            self.instances, timed = self._instances_for(example)
        per_run = max(1, self.threads // self.instances) if self.threads else None
        if timed is not None and per_run == 1:
            self.session = timed  # the single-threaded session it was timed with
            return
        # made in the process that runs it: an ONNX Runtime session is not forked or pickled
        self.session = ExportedModel(self.model_file, self.task.output_names, per_run)

    def _feed(self, batch: Any) -> dict[str, np.ndarray]:
        tensors = batch if isinstance(batch, tuple) else (batch,)
        return {
            n: np.ascontiguousarray(t.numpy())
            for n, t in zip(self.input_names, tensors, strict=True)
        }

    def _instances_for(self, example: Any) -> tuple[int, ExportedModel | None]:
        """``threads`` instances when one input costs at least :data:`AUTO_INSTANCES_MS` on one
        thread, else 1 (the median of three timed runs after a warm-up); and the
        single-threaded session it timed, if it made one."""
        if not self.threads or self.threads < 2 or example is None:
            return 1, None
        session = ExportedModel(self.model_file, self.task.output_names, 1)
        feed = self._feed(example)
        session.run(feed)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            session.run(feed)
            times.append(time.perf_counter() - start)
        ms = sorted(times)[1] * 1000
        chosen = self.threads if ms >= AUTO_INSTANCES_MS else 1
        log.info(
            "one input takes %.2f ms on one thread: %d instance(s) of %d thread(s)",
            ms,
            chosen,
            self.threads // chosen,
        )
        return chosen, session

    def __call__(self, batch: Any) -> dict[str, torch.Tensor]:
        if self.session is None:
            self.setup()
        named = {k: torch.from_numpy(v) for k, v in self.session.run(self._feed(batch)).items()}
        return self.task.imported(named, self.hparams)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "session": None}


def export_runtime(
    model: Any, datamodule: Any, threads: int | None, instances: int | None = 1
) -> OnnxRuntime:
    """The model exported to ONNX in a temporary folder, removed at exit (parity checked, as
    ``dlzoo export`` does), as an :class:`OnnxRuntime`. Raises ``ExportError`` (a ValueError)
    where the network does not export."""
    import atexit
    import shutil
    import tempfile

    from dlzoo.deploy.export import export_model, input_names

    folder = Path(tempfile.mkdtemp(prefix="dlzoo-serve-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    export_model(model, datamodule, folder / "bundle", "onnx")
    hp = dict(model.hparams)
    names = input_names(datamodule)
    model_file = folder / "bundle" / "model.onnx"
    return OnnxRuntime(model_file, model.task.name, hp, names, threads, instances)


__all__ = ["OnnxRuntime", "TorchRuntime", "export_runtime"]
