"""``dlzoo sweep``: hyperparameter searches over ``dlzoo fit`` runs, on Optuna.

A search is a YAML file of ``dlzoo fit`` paths and their ranges::

    metric: val_auroc          # default: the task's monitor (val_auroc, val_rmse, ...)
    direction: maximize        # default: the task's
    sampler: tpe               # tpe | random | grid
    pruner: median             # median | hyperband | none
    seed: 0
    trials: 20                 # default of --trials (grid: every point)
    params:
      model.init_args.lr: {low: 1.0e-4, high: 1.0e-2, log: true}        # float
      trainer.max_epochs: {low: 5, high: 20, step: 5}                    # int
      model.init_args.dropout: [0.05, 0.1, 0.2, 0.3]                     # categorical / grid
      model.init_args.hidden_sizes: {choices: [[48, 96], [96, 192]]}     # lists as values too

Every path and range is checked against the ``dlzoo fit`` parser before any trial runs. Each
trial is a normal ``dlzoo fit`` in ``ROOT/trial_N/`` (config.yaml, metrics.csv, checkpoints),
pruned by Optuna's Lightning callback on the per-epoch validation metric. The study lives in
Optuna storage: ``ROOT/study.db`` (SQLite) by default, or any URL Optuna takes (PostgreSQL,
MySQL; a path ending ``.journal`` is a journal file), so running the same command again
resumes it, and several processes or machines on one storage share its trials. A grid point
another worker already holds is not run twice. A trial that fails (NaN loss, a bad
combination, out of memory) is recorded as failed with its reason and the sweep goes on;
Ctrl-C marks the running trial failed and stops.

Results, rewritten after every trial: ``trials.csv``, ``best.yaml`` (the best trial's complete
config: ``dlzoo fit --config best.yaml`` reproduces it), and ``history.png``,
``importances.png``, ``slices.png``.
"""

from __future__ import annotations

import sys

from dlzoo.sweep.run import StopOnNonFinite, Sweep, run_sweep, task_monitor
from dlzoo.sweep.search import Param, Search, SweepError, check_paths, parse_param
from dlzoo.sweep.storage import storage_for


def main(argv: list[str]) -> None:
    """``dlzoo sweep --config RUN.yaml --sweep SEARCH.yaml [options]``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="dlzoo sweep",
        description="A hyperparameter search over dlzoo fit runs, on Optuna (see README).",
    )
    parser.add_argument("--config", required=True, help="the run's config (a recipe name or file)")
    parser.add_argument("--sweep", required=True, help="the search: paths, ranges, sampler ...")
    parser.add_argument(
        "--trials", type=int, help="trials to finish in the study, all workers together"
    )
    parser.add_argument("--timeout", type=float, help="seconds this process searches")
    parser.add_argument(
        "--storage", help="Optuna storage URL or .journal file (default ROOT/study.db)"
    )
    parser.add_argument("--study", help="the study's name (default: the search file's name)")
    parser.add_argument("--root", help="the sweep's folder (default runs/sweeps/STUDY)")
    args, extra = parser.parse_known_args(argv)
    try:
        run_sweep(
            args.config,
            args.sweep,
            args.trials,
            args.timeout,
            args.storage,
            args.study,
            args.root,
            extra,
        )
    except KeyboardInterrupt:
        print("dlzoo sweep: stopped; run the same command to resume", file=sys.stderr)
        raise SystemExit(130) from None


__all__ = [
    "Param",
    "Search",
    "StopOnNonFinite",
    "Sweep",
    "SweepError",
    "check_paths",
    "main",
    "parse_param",
    "run_sweep",
    "storage_for",
    "task_monitor",
]
