"""A ``dlzoo sweep`` run: each trial a ``dlzoo fit`` in its own folder, pruned on the per-epoch
validation metric, failed (with its reason) rather than stopping the sweep."""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from dlzoo.sweep.report import summary, write_results
from dlzoo.sweep.search import Search, SweepError, check_paths, overrides, paths
from dlzoo.sweep.storage import (
    DUPLICATE_KEY,
    FINAL_KEY,
    HOST_KEY,
    PID_KEY,
    REASON_KEY,
    RUN_KEY,
    _fail_dead_local_trials,
    _optuna,
    _pruner,
    _same_point,
    _sampler,
    _storage_lock,
    storage_for,
)

log = logging.getLogger(__name__)


class StopOnNonFinite(pl.Callback):
    """Fail a trial whose training loss is NaN or infinite at an epoch's end."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loss = trainer.callback_metrics.get("train_loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise FloatingPointError(
                f"the training loss is {float(loss)} at epoch {trainer.current_epoch}"
            )


@dataclass
class Sweep:
    """A search over ``dlzoo fit --config config`` runs, in ``root``."""

    config: str
    search: Search
    root: Path
    study_name: str
    storage: str | None = None
    metric: str = ""
    direction: str = ""
    extra_args: list[str] = field(default_factory=list)

    def objective(self, trial: Any) -> float:
        from dlzoo.cli import make_cli

        optuna = _optuna()
        from optuna_integration import PyTorchLightningPruningCallback

        trial.set_user_attr(HOST_KEY, socket.gethostname())
        trial.set_user_attr(PID_KEY, os.getpid())
        sampled = {p.path: p.suggest(trial) for p in self.search.params}
        values = {**self.search.fixed, **paths(sampled, self.search.params)}
        if (
            self.search.sampler == "grid"
            and (other := _same_point(trial, trial.params)) is not None
        ):
            trial.set_user_attr(REASON_KEY, f"the same grid point as trial {other}")
            trial.set_user_attr(DUPLICATE_KEY, other)
            raise optuna.TrialPruned(f"the same grid point as trial {other}")
        folder = self.root / f"trial_{trial.number}"
        trial.set_user_attr(RUN_KEY, str(folder))
        args = ["fit", "--config", self.config, *overrides(values), *self.extra_args]
        args += [
            "--trainer.default_root_dir",
            str(folder),
            "--trainer.enable_progress_bar",
            "false",
        ]
        pruning = PyTorchLightningPruningCallback(trial, monitor=self.metric)
        log.info("trial %d: %s", trial.number, sampled)
        interrupts: list[int] = []
        try:
            with _noting_interrupts(interrupts):
                cli = make_cli(args, trainer_defaults={"callbacks": [pruning, StopOnNonFinite()]})
        except optuna.TrialPruned:
            raise
        except (Exception, SystemExit, KeyboardInterrupt) as err:
            if interrupts or isinstance(err, KeyboardInterrupt):
                # Ctrl-C: Lightning shut the trial down and exited 1; the sweep stops too
                trial.set_user_attr(REASON_KEY, "stopped by Ctrl-C")
                log.warning("trial %d: stopped by Ctrl-C", trial.number)
                raise KeyboardInterrupt from None
            # a bad combination, NaN, out of memory ...
            reason = f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"
            trial.set_user_attr(REASON_KEY, reason)
            log.warning("trial %d failed: %s", trial.number, reason)
            raise _Failed(reason) from None
        pruning.check_pruned()
        trainer = cli.trainer
        history = _history(trainer, self.metric)
        if history:
            trial.set_user_attr(FINAL_KEY, history[-1])
        best = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
        value = float(best) if best is not None else (history[-1] if history else float("nan"))
        if not math.isfinite(value):
            trial.set_user_attr(REASON_KEY, f"{self.metric} is {value}")
            raise _Failed(f"{self.metric} is {value}")
        return value


@contextlib.contextmanager
def _noting_interrupts(interrupts: list[int]) -> Any:
    """Note each SIGINT in ``interrupts`` (and raise ``KeyboardInterrupt`` as Python does, which
    Lightning turns into a graceful shutdown and ``exit(1)``), then put the handler back that
    was there: Lightning leaves SIGINT ignored after an interrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def note(signum: int, frame: Any) -> None:
        interrupts.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Failed(Exception):
    """A trial that failed; Optuna records it as FAIL and the sweep goes on."""


def _history(trainer: pl.Trainer, metric: str) -> list[float]:
    """The metric's per-epoch values from the run's metrics.csv (empty if none)."""
    import pandas as pd

    for logger in trainer.loggers:
        path = Path(logger.log_dir or "") / "metrics.csv"
        if path.is_file():
            frame = pd.read_csv(path)
            if metric in frame:
                return [float(v) for v in frame[metric].dropna()]
    return []


def task_monitor(config: str, extra_args: list[str]) -> tuple[str, str]:
    """The metric and direction the run's task keeps its best checkpoint by (val_auroc, max)."""
    from dlzoo.cli import make_cli

    with contextlib.redirect_stdout(io.StringIO()):
        cli = make_cli(["--config", config, *extra_args], run=False)
    name, mode = cli.model.task.monitor
    return name, "maximize" if mode == "max" else "minimize"


def run_sweep(
    config: str | Path,
    search: str | Path | Search,
    trials: int | None = None,
    timeout: float | None = None,
    storage: str | None = None,
    study: str | None = None,
    root: str | Path | None = None,
    extra_args: list[str] | None = None,
) -> Any:
    """Run (or resume) a sweep; returns the Optuna study. ``trials``: trials to finish in the
    study in all (all workers together); ``timeout``: seconds this process searches."""
    optuna = _optuna()
    config = str(config)
    if not Path(config).is_file():
        from dlzoo.cli.names import config_path

        recipe = config_path(config)
        if recipe is None:
            raise SweepError(
                f"--config {config}: no such file or recipe (dlzoo recipes lists them)"
            )
        config = str(recipe)
    parsed = search if isinstance(search, Search) else Search.from_file(search)
    name = study or (Path(search).stem if not isinstance(search, Search) else "sweep")
    folder = Path(root or Path("runs") / "sweeps" / name)
    folder.mkdir(parents=True, exist_ok=True)
    extra = list(extra_args or [])
    check_paths(config, parsed)
    metric, direction = task_monitor(config, extra)
    metric, direction = parsed.metric or metric, parsed.direction or direction
    total = trials or parsed.trials or (parsed.grid_size() if parsed.sampler == "grid" else 20)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # workers started together on a new SQLite file would both create its tables (one then
    # fails: UNIQUE constraint failed: alembic_version): they take turns
    with _storage_lock(storage, folder):
        the_study = optuna.create_study(
            study_name=name,
            storage=storage_for(storage, folder),
            sampler=_sampler(parsed),
            pruner=_pruner(parsed),
            direction=direction,
            load_if_exists=True,
        )
    if the_study.direction.name.lower() != direction:
        raise SweepError(
            f"study {name!r} exists with direction {the_study.direction.name.lower()}, not {direction}"
        )
    _fail_dead_local_trials(the_study)
    sweep = Sweep(config, parsed, folder, name, storage, metric, direction, extra)

    def finished(study: Any) -> int:  # complete or pruned, a skipped duplicate not counted
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        trials = study.get_trials(deepcopy=False, states=states)
        return sum(DUPLICATE_KEY not in t.user_attrs for t in trials)

    def stop_when_done(study: Any, trial: Any) -> None:
        if finished(study) >= total:
            study.stop()

    started = time.monotonic()
    log.info("sweep %s: %d trials of %s (%s), in %s", name, total, metric, direction, folder)
    interrupted = False
    try:
        if finished(the_study) < total:
            the_study.optimize(
                sweep.objective,
                timeout=timeout,
                catch=(_Failed,),
                callbacks=[
                    stop_when_done,
                    lambda s, t: write_results(s, folder, metric),
                ],
                gc_after_trial=True,
            )
    except KeyboardInterrupt:
        interrupted = True
    write_results(the_study, folder, metric)
    print(summary(the_study, folder, metric, time.monotonic() - started, interrupted))
    if interrupted:
        raise KeyboardInterrupt
    return the_study
