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

import contextlib
import io
import json
import logging
import math
import os
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import yaml

from dlzoo.data.download import locked

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
#: trial attributes dlzoo sets (besides Optuna's own)
HOST_KEY, PID_KEY, REASON_KEY, FINAL_KEY, RUN_KEY = "host", "pid", "reason", "final", "run"
DUPLICATE_KEY, RETRY_KEY = "duplicate_of", "retry_of"


class SweepError(ValueError):
    """A search file, path or range that cannot be used; the message names it."""


# ------------------------------------------------------------------------- the search
@dataclass
class Param:
    """One searched ``dlzoo fit`` path: a float or int range, or a list of values."""

    path: str
    kind: str  # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] = field(default_factory=list)

    @property
    def group(self) -> bool:
        """Each choice sets several paths together (``{path: value, ...}``); the name is a label."""
        return self.kind == "categorical" and all(isinstance(c, dict) for c in self.choices)

    @property
    def grid(self) -> list[Any]:
        """The values a grid search tries: the choices, or every step of an int range."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int" and not self.log:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        raise SweepError(
            f"{self.path}: a grid needs a list of values or an int range with a step, "
            f"not a {'log ' if self.log else ''}{self.kind} range"
        )

    def encoded(self) -> list[Any]:
        """The choices as Optuna stores them (lists and dicts as JSON text)."""
        return [_encode(c) for c in self.choices]

    def suggest(self, trial: Any) -> Any:
        if self.kind == "categorical":
            return _decode(trial.suggest_categorical(self.path, self.encoded()))
        if self.kind == "int":
            step = int(self.step or 1)
            return trial.suggest_int(
                self.path, int(self.low), int(self.high), step=step, log=self.log
            )
        return trial.suggest_float(self.path, self.low, self.high, step=self.step, log=self.log)

    def extremes(self) -> list[Any]:
        """Values that together cover the range's checks: both ends, or every choice."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]


def _encode(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list | dict) else value


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(value)
    return value


def _number(path: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SweepError(f"{path}: {name} must be a finite number, got {value!r}")
    return value


def parse_param(path: str, spec: Any) -> Param:
    """A ``params`` entry as a :class:`Param`; :class:`SweepError` names what is wrong."""
    if not isinstance(path, str) or not path or path.startswith("-"):
        raise SweepError(f"{path!r}: a parameter is a dlzoo fit path such as model.init_args.lr")
    if isinstance(spec, list):
        spec = {"choices": spec}
    for choice in spec.get("choices") or [] if isinstance(spec, dict) else []:
        if isinstance(choice, dict) and not all(isinstance(k, str) and "." in k for k in choice):
            raise SweepError(
                f"{path}: a choice that is a mapping sets dlzoo fit paths together "
                f"(model.init_args.l1_lambda: 0.001), got {choice!r}"
            )
    if not isinstance(spec, dict):
        raise SweepError(f"{path}: give a list of values or {{low, high}}, got {spec!r}")
    unknown = set(spec) - {"type", "low", "high", "log", "step", "choices", "grid"}
    if unknown:
        raise SweepError(
            f"{path}: unknown key(s) {sorted(unknown)} (type, low, high, log, step, choices)"
        )
    choices = spec.get("choices", spec.get("grid"))
    if choices is not None:
        if not isinstance(choices, list) or not choices:
            raise SweepError(f"{path}: choices must be a non-empty list, got {choices!r}")
        if len({json.dumps(c, sort_keys=True) for c in choices}) != len(choices):
            raise SweepError(f"{path}: choices repeat a value: {choices}")
        return Param(path, "categorical", choices=list(choices))
    if "low" not in spec or "high" not in spec:
        raise SweepError(f"{path}: a range needs low and high (or give choices)")
    low, high = _number(path, "low", spec["low"]), _number(path, "high", spec["high"])
    kind = spec.get("type") or (
        "int" if isinstance(low, int) and isinstance(high, int) else "float"
    )
    if kind not in ("int", "float"):
        raise SweepError(f"{path}: type must be int or float, got {kind!r}")
    if low >= high:
        raise SweepError(f"{path}: low ({low}) must be below high ({high})")
    log_scale = bool(spec.get("log", False))
    if log_scale and low <= 0:
        raise SweepError(f"{path}: a log range needs low > 0, got {low}")
    step = spec.get("step")
    if step is not None:
        step = _number(path, "step", step)
        if step <= 0 or step > high - low:
            raise SweepError(f"{path}: step must be in (0, high - low], got {step}")
        if log_scale:
            raise SweepError(f"{path}: a log range takes no step")
    return Param(path, kind, low=low, high=high, log=log_scale, step=step)


@dataclass
class Search:
    """A parsed search file."""

    params: list[Param]
    metric: str | None = None
    direction: str | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int | None = 0
    trials: int | None = None
    #: paths every trial sets (e.g. fewer epochs than the recipe)
    fixed: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: str | Path) -> Search:
        try:
            data = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise SweepError(f"{path}: no such search file") from None
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise SweepError(
                f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})"
            ) from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "search") -> Search:
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("params"), dict)
            or not data["params"]
        ):
            raise SweepError(
                f"{source}: a search needs params: a mapping of dlzoo fit paths to ranges"
            )
        unknown = set(data) - {
            "params",
            "metric",
            "direction",
            "sampler",
            "pruner",
            "seed",
            "trials",
            "fixed",
        }
        if unknown:
            raise SweepError(f"{source}: unknown key(s) {sorted(unknown)}")
        search = cls(
            params=[parse_param(p, s) for p, s in data["params"].items()],
            metric=data.get("metric"),
            direction=data.get("direction"),
            sampler=data.get("sampler", "tpe"),
            pruner=data.get("pruner", "median"),
            seed=data.get("seed", 0),
            trials=data.get("trials"),
            fixed=dict(data.get("fixed") or {}),
        )
        if search.sampler not in SAMPLERS:
            raise SweepError(f"{source}: sampler must be one of {SAMPLERS}, got {search.sampler!r}")
        if search.pruner not in PRUNERS:
            raise SweepError(f"{source}: pruner must be one of {PRUNERS}, got {search.pruner!r}")
        if search.direction not in (None, "maximize", "minimize"):
            raise SweepError(f"{source}: direction must be maximize or minimize")
        if search.trials is not None and (not isinstance(search.trials, int) or search.trials < 1):
            raise SweepError(f"{source}: trials must be a positive integer")
        if search.sampler == "grid":
            for param in search.params:
                param.grid  # noqa: B018 - raises for a range a grid cannot take
        return search

    def grid_size(self) -> int:
        return math.prod(len(p.grid) for p in self.params)


def paths(values: dict[str, Any], params: list[Param]) -> dict[str, Any]:
    """Sampled values as ``dlzoo fit`` paths: a group's choice sets its paths together."""
    groups = {p.path for p in params if p.group}
    flat: dict[str, Any] = {}
    for name, value in values.items():
        flat.update(value if name in groups else {name: value})
    return flat


def overrides(values: dict[str, Any]) -> list[str]:
    """``dlzoo fit`` arguments setting each path to its value (YAML/JSON text)."""
    args = []
    for path, value in values.items():
        args += [f"--{path}", json.dumps(value) if not isinstance(value, str) else value]
    return args


# ------------------------------------------------------------------------ checking
def check_paths(config: str, search: Search) -> None:
    """Parse ``dlzoo fit --config CONFIG`` with every path at each of its extremes (both ends of
    a range, every choice) without running anything; raise :class:`SweepError` naming the first
    path or value the parser refuses."""
    from dlzoo.cli import make_cli

    rounds = max(len(p.extremes()) for p in search.params)
    for r in range(rounds):
        sampled = {p.path: p.extremes()[r % len(p.extremes())] for p in search.params}
        values = {**search.fixed, **paths(sampled, search.params)}
        args = ["fit", "--config", config, *overrides(values), "--print_config"]
        err, out = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                make_cli(args)
        except SystemExit as stop:
            if stop.code in (0, None):
                continue
            lines = [line for line in err.getvalue().splitlines() if "error:" in line]
            reason = lines[0].split("error:", 1)[1].strip() if lines else err.getvalue().strip()
            named = [p for p in values if p in reason or p.split(".")[-1] in reason]
            where = f"{named[0]} = {values[named[0]]!r}" if named else f"the values {values}"
            raise SweepError(f"dlzoo fit refuses {where}: {reason}") from None


# ------------------------------------------------------------------------ optuna pieces
def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise SweepError(
            "dlzoo sweep needs Optuna: pip install 'dlzoo[sweep]' (optuna, optuna-integration)"
        ) from None
    return optuna


def storage_for(url: str | None, root: Path) -> Any:
    """Optuna storage: a URL (``sqlite:///``, ``postgresql://`` ...), a ``.journal`` file, or
    by default ``ROOT/study.db``. RDB storages keep a heartbeat, so a trial whose process was
    killed is failed (and its point retried) by the next worker."""
    optuna = _optuna()
    if url and "://" not in url:
        if url.endswith((".journal", ".log")):
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(str(url)))
        raise SweepError(
            f"--storage {url!r}: give a URL (sqlite:///FILE, postgresql://...) or a .journal file"
        )
    url = url or f"sqlite:///{(root / 'study.db').resolve()}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=10,
            grace_period=60,
            # a trial whose worker stopped beating is failed and its point run again
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=1
            ),
            engine_kwargs={"connect_args": {"timeout": 30}} if url.startswith("sqlite") else None,
        )


def _storage_lock(url: str | None, root: Path) -> contextlib.AbstractContextManager:
    """A lock beside a local storage file (``FILE.lock``) for its creation; nothing for a
    database server, which serialises its own transactions."""
    if url and "://" in url and not url.startswith("sqlite:///"):
        return contextlib.nullcontext()
    if url and url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
    else:
        path = Path(url) if url else root / "study.db"
    return locked(path.with_name(path.name + ".lock"))


def _sampler(search: Search) -> Any:
    optuna = _optuna()
    if search.sampler == "grid":
        space = {p.path: p.encoded() if p.kind == "categorical" else p.grid for p in search.params}
        return optuna.samplers.GridSampler(space, seed=search.seed)
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=search.seed)
    return optuna.samplers.TPESampler(seed=search.seed)


def _pruner(search: Search) -> Any:
    optuna = _optuna()
    if search.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if search.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


class StopOnNonFinite(pl.Callback):
    """Fail a trial whose training loss is NaN or infinite at an epoch's end."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loss = trainer.callback_metrics.get("train_loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise FloatingPointError(
                f"the training loss is {float(loss)} at epoch {trainer.current_epoch}"
            )


def _same_point(trial: Any, params: dict[str, Any]) -> int | None:
    """The number of an earlier trial (lower number) holding the same grid point, running or
    finished, or ``None``."""
    optuna = _optuna()
    states = (
        optuna.trial.TrialState.RUNNING,
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
    )
    for other in trial.study.get_trials(deepcopy=False, states=states):
        if other.number < trial.number and other.params == params:
            return other.number
    return None


def _fail_dead_local_trials(study: Any) -> None:
    """Trials left RUNNING by a killed process of this machine are failed (their points can run
    again); other machines' trials are left to the storage's heartbeat."""
    optuna = _optuna()
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        pid = trial.user_attrs.get(PID_KEY)
        if trial.user_attrs.get(HOST_KEY) != host or not isinstance(pid, int):
            continue
        try:
            os.kill(pid, 0)
            continue  # alive: another worker's
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        # its point runs again first (a grid counts a failed point as visited)
        study.enqueue_trial(trial.params, user_attrs={RETRY_KEY: trial.number})
        log.info(
            "trial %d was left running by a killed process: failed, queued again", trial.number
        )


# ----------------------------------------------------------------------------- the run
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
        try:
            cli = make_cli(args, trainer_defaults={"callbacks": [pruning, StopOnNonFinite()]})
        except optuna.TrialPruned:
            raise
        except (Exception, SystemExit) as err:  # a bad combination, NaN, out of memory ...
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


# ---------------------------------------------------------------------------- results
def write_results(study: Any, folder: Path, metric: str) -> None:
    """``trials.csv``, ``best.yaml`` and the plots, from the study as it is now."""
    optuna = _optuna()
    rows = []
    for t in study.get_trials(deepcopy=False):
        duration = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        row = {"trial": t.number, "state": t.state.name, metric: t.value}
        row[f"final_{metric}"] = t.user_attrs.get(FINAL_KEY)
        row.update({p: _decode(v) for p, v in t.params.items()})
        row.update(
            {
                "duration_s": round(duration, 1) if duration is not None else None,
                "reason": _reason(t),
                "run": t.user_attrs.get(RUN_KEY, ""),
            }
        )
        rows.append(row)
    if rows:
        import pandas as pd

        pd.DataFrame(rows).to_csv(folder / "trials.csv", index=False)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return
    best = study.best_trial
    run = Path(best.user_attrs.get(RUN_KEY, "")) / "lightning_logs"
    configs = sorted(run.glob("version_*/config.yaml"))
    if configs:
        settings = yaml.safe_load(configs[-1].read_text())
        settings.setdefault("trainer", {})["default_root_dir"] = str(folder / "best")
        header = (
            f"# the best trial of sweep {study.study_name}: trial {best.number}, "
            f"{metric} = {best.value:.6g}\n# dlzoo fit --config best.yaml reproduces it\n"
        )
        (folder / "best.yaml").write_text(header + yaml.safe_dump(settings, sort_keys=False))
    _plots(study, folder, metric, len(complete))


def _reason(trial: Any) -> str:
    """Why a trial did not complete: what dlzoo recorded, or, for a failed trial with no record,
    that its process stopped before it finished (killed, or stopped beating)."""
    recorded = trial.user_attrs.get(REASON_KEY)
    if recorded:
        return recorded
    return "its process was killed" if trial.state.name == "FAIL" else ""


def _plots(study: Any, folder: Path, metric: str, complete: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    plots = {"history.png": lambda: ovm.plot_optimization_history(study, target_name=metric)}
    plots["slices.png"] = lambda: ovm.plot_slice(study, target_name=metric)
    if complete >= 2 and len(study.best_trial.params) > 1:
        plots["importances.png"] = lambda: ovm.plot_param_importances(study, target_name=metric)
    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                axes = plot()
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
            figure.savefig(folder / name, dpi=100, bbox_inches="tight")
            plt.close(figure)
        except (ValueError, RuntimeError) as err:  # e.g. importances of one distinct value
            log.info("no %s: %s", name, err)


def summary(study: Any, folder: Path, metric: str, seconds: float, interrupted: bool) -> str:
    optuna = _optuna()
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    lines = [
        f"sweep {study.study_name}: "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + f" ({seconds:.0f} s here{'; stopped by Ctrl-C' if interrupted else ''})",
    ]
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if complete:
        best = study.best_trial
        lines.append(f"best: trial {best.number}, {metric} = {best.value:.6g}")
        lines += [f"  {p} = {_decode(v)!r}" for p, v in best.params.items()]
        ranked = sorted(complete, key=lambda t: t.value, reverse=study.direction.name == "MAXIMIZE")
        lines.append("top trials: " + ", ".join(f"{t.number} ({t.value:.4g})" for t in ranked[:5]))
    lines.append(
        f"results: {folder}/trials.csv, best.yaml, history.png, slices.png, importances.png"
    )
    return "\n".join(lines)


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
    "Sweep",
    "SweepError",
    "check_paths",
    "main",
    "parse_param",
    "run_sweep",
]
