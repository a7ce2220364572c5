"""What a ``dlzoo sweep`` leaves, rewritten after every trial: ``trials.csv``, ``best.yaml``
(the best trial's complete config), the Optuna plots, and the summary it prints."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dlzoo.sweep.search import _decode
from dlzoo.sweep.storage import FINAL_KEY, REASON_KEY, RUN_KEY, _optuna

log = logging.getLogger(__name__)


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
            # one Axes, or an array of them (slices: one per parameter)
            figure = (axes.flat[0] if isinstance(axes, np.ndarray) else axes).get_figure()
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
