"""Optuna for ``dlzoo sweep``: the storage (SQLite by default, any URL, a journal file), the
sampler and pruner a search names, the trial attributes dlzoo records, and the recovery of
trials a killed process left running."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dlzoo.data.download import locked
from dlzoo.sweep.search import Search, SweepError

log = logging.getLogger(__name__)

#: trial attributes dlzoo sets (besides Optuna's own)
HOST_KEY, PID_KEY, REASON_KEY, FINAL_KEY, RUN_KEY = "host", "pid", "reason", "final", "run"
DUPLICATE_KEY, RETRY_KEY = "duplicate_of", "retry_of"


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
        return _retrying_grid()(space, seed=search.seed)
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=search.seed)
    return optuna.samplers.TPESampler(seed=search.seed)


def _retrying_grid() -> type:
    """Optuna's ``GridSampler``, for a grid whose killed points dlzoo queues again.

    A queued trial (``enqueue_trial``) gets no ``grid_id``, and ``GridSampler.after_trial``
    reads that attribute whenever one grid point is left (``KeyError: 'grid_id'``, a sweep that
    stops before its last point). Such a trial has nothing to add there: the sweep stops by its
    own count of finished trials.

    ``stopping`` is off while dlzoo fails a killed trial before optimising: ``GridSampler``
    then calls ``study.stop()`` on a finished grid, which Optuna refuses outside ``optimize``."""
    optuna = _optuna()

    class RetryingGridSampler(optuna.samplers.GridSampler):
        stopping = True

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            if self.stopping and "grid_id" in trial.system_attrs:
                super().after_trial(study, trial, state, values)

    return RetryingGridSampler


@contextlib.contextmanager
def _not_optimising(study: Any) -> Iterator[None]:
    """Trials told outside ``study.optimize`` do not ask a grid to stop the study."""
    sampler = study.sampler
    if not hasattr(sampler, "stopping"):
        yield
        return
    sampler.stopping = False
    try:
        yield
    finally:
        sampler.stopping = True


def _pruner(search: Search) -> Any:
    optuna = _optuna()
    if search.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if search.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def _same_point(trial: Any, params: dict[str, Any]) -> int | None:
    """The number of an earlier trial (lower number) holding the same grid point, running or
    finished, or ``None``. A trial skipped as a duplicate holds nothing: it never ran its point
    (a killed trial's point queued again must run though one was skipped beside it)."""
    optuna = _optuna()
    states = (
        optuna.trial.TrialState.RUNNING,
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
    )
    for other in trial.study.get_trials(deepcopy=False, states=states):
        if (
            other.number < trial.number
            and other.params == params
            and DUPLICATE_KEY not in other.user_attrs
        ):
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
        with _not_optimising(study):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        # its point runs again first (a grid counts a failed point as visited)
        study.enqueue_trial(trial.params, user_attrs={RETRY_KEY: trial.number})
        log.info(
            "trial %d was left running by a killed process: failed, queued again", trial.number
        )
