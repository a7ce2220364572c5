"""TabM against gradient boosting and the FFN recipes, for BENCHMARKS.md (``nox -s bench``).

Bank marketing (classification, val AUROC) and diamonds (regression, val RMSE in dollars): each
recipe runs as ``dlzoo fit`` (a subprocess, as a user runs it, one after the other, nothing else
of ours running), and scikit-learn's HistGradientBoosting is fitted on the same split and the
same preprocessed features (the DataModule's tensors; trees do not mind the scaling) in the same
run. Reported per network: the val metric of the best epoch (the checkpoint kept) and of the
last, seconds of training (the ``fit`` loop, start-up excluded), seconds per epoch, the whole
command's wall time and its peak resident memory (``wait4``'s ``ru_maxrss``).

The results replace the ``bench:tabm`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import bench_parser, device_line, fit_command, saved_results, write_section
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import roc_auc_score, root_mean_squared_error

from dlzoo.data import BankMarketingDataModule, TabularDataModule

START, END = "<!-- bench:tabm:start -->", "<!-- bench:tabm:end -->"
GOALS = {"bank": ("val_auroc", 0.935, "max"), "diamonds": ("val_rmse", 548.0, "min")}
RECIPES = {"bank": ["bank_ffn", "bank_tabm"], "diamonds": ["diamonds_ffn", "diamonds_tabm"]}
TRAINING_BUDGET_S = 300.0


def data_args(dataset: str, shared: Path) -> list[str]:
    if dataset == "bank":
        return ["--data.init_args.data_dir", str(shared / "bank")]
    return ["--data.init_args.filename", str(shared / "diamonds" / "diamonds.csv.gz")]


def run_recipe(name: str, dataset: str, shared: Path, root: Path, *extra: str) -> dict:
    out = root / name
    command = fit_command(name, out, *data_args(dataset, shared), *extra)
    out.mkdir(parents=True)
    start = time.perf_counter()
    with open(out / "fit.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak memory
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{name} failed:\n{(out / 'fit.log').read_text()[-3000:]}")
    (run,) = sorted((out / "lightning_logs").glob("version_*"))
    frame = pd.read_csv(run / "metrics.csv")
    metric, _, mode = GOALS[dataset]
    val = frame.dropna(subset=[metric])
    best = val.loc[val[metric].idxmax() if mode == "max" else val[metric].idxmin()]
    epochs = int(val["epoch"].max()) + 1
    training = _training_seconds(run)
    return {
        "name": name,
        "epochs": epochs,
        "best": float(best[metric]),
        "best_epoch": int(best["epoch"]),
        "last": float(val.iloc[-1][metric]),
        "training_s": training,
        "epoch_s": training / epochs,
        "wall_s": wall,
        "peak_mib": _peak_mib(usage),
    }


def _training_seconds(run: Path) -> float:
    """From the first epoch's start to the last checkpoint: the ``fit`` loop, without the
    command's start-up (imports, reading the CSV) that every recipe pays alike."""
    checkpoints = sorted((run / "checkpoints").glob("*.ckpt"), key=os.path.getmtime)
    return checkpoints[-1].stat().st_mtime - (run / "hparams.yaml").stat().st_mtime


def _peak_mib(usage: os.struct_rusage) -> float:
    return usage.ru_maxrss / 1024  # kilobytes on Linux


def gradient_boosting(dataset: str, shared: Path) -> dict:
    if dataset == "bank":
        dm = BankMarketingDataModule(data_dir=str(shared / "bank"))
    else:
        dm = TabularDataModule(
            filename=str(shared / "diamonds" / "diamonds.csv.gz"), target="price", seed=2020
        )
    dm.setup("fit")
    (x, y), (vx, vy) = dm._split("train").tensors, dm._split("val").tensors
    start = time.perf_counter()
    if dataset == "bank":
        model = HistGradientBoostingClassifier(random_state=0).fit(x.numpy(), y.numpy())
        wall = time.perf_counter() - start
        score = roc_auc_score(vy.numpy(), model.predict_proba(vx.numpy())[:, 1])
    else:
        transform = dm.target_transform
        mean, scale = np.array(transform["mean"]), np.array(transform["scale"])
        model = HistGradientBoostingRegressor(random_state=0).fit(x.numpy(), y.numpy().ravel())
        wall = time.perf_counter() - start
        predicted = model.predict(vx.numpy()) * scale[0] + mean[0]
        score = root_mean_squared_error(vy.numpy().ravel() * scale[0] + mean[0], predicted)
    return {"name": "HistGradientBoosting (defaults)", "best": float(score), "training_s": wall}


def main() -> None:
    parser = bench_parser(__doc__, "tabm")
    parser.add_argument("--datasets", nargs="*", default=list(RECIPES))
    args = parser.parse_args()
    results, once = saved_results(args)
    for dataset in args.datasets:
        once(f"{dataset}:gbdt", gradient_boosting, dataset, args.shared)
        for name in RECIPES[dataset]:
            row = once(f"{dataset}:{name}", run_recipe, name, dataset, args.shared, args.work_dir)
            print(dataset, row)
    write_section(args.out, START, END, report(results, args.datasets))


def report(results: dict, datasets: list[str]) -> str:
    lines = [
        START,
        "## Tabular: TabM beside gradient boosting (issue 28)",
        "",
        "Command: `nox -s bench` (runs `python benchmarks/bench_tabm.py`). Each recipe runs as "
        "`dlzoo fit` on the real data in `../shared/data`, one after the other, nothing else of "
        "ours running; HistGradientBoosting is fitted in the same run on the same split and "
        f"preprocessed features. Device: {device_line()}. Run on {time.strftime('%Y-%m-%d')}.",
        "",
    ]
    for dataset in datasets:
        metric, goal, mode = GOALS[dataset]
        unit = "val AUROC" if metric == "val_auroc" else "val RMSE ($)"
        lines += [
            f"### {'Bank marketing' if dataset == 'bank' else 'Diamonds'}: {unit}",
            "",
            "| model | best epoch | last epoch | epochs | training | s / epoch | command "
            "wall | peak memory |",
            "|---|---|---|---|---|---|---|---|",
        ]
        gbdt = results[f"{dataset}:gbdt"]
        fmt = "{:.4f}" if metric == "val_auroc" else "{:,.0f}"
        lines.append(
            f"| {gbdt['name']} | {fmt.format(gbdt['best'])} | | | {gbdt['training_s']:.1f} s "
            "| | | |"
        )
        for name in RECIPES[dataset]:
            row = results[f"{dataset}:{name}"]
            lines.append(
                f"| `{name}` | {fmt.format(row['best'])} (epoch {row['best_epoch']}) | "
                f"{fmt.format(row['last'])} | {row['epochs']} | {row['training_s']:.0f} s | "
                f"{row['epoch_s']:.1f} s | {row['wall_s']:.0f} s | {row['peak_mib']:.0f} MiB |"
            )
        tabm = results[f"{dataset}:{RECIPES[dataset][-1]}"]
        met = tabm["best"] >= goal if mode == "max" else tabm["best"] <= goal
        fast = tabm["training_s"] < TRAINING_BUDGET_S
        lines += [
            "",
            f"Goal: {unit} {'≥' if mode == 'max' else '≤'} {fmt.format(goal)} (at or beyond the "
            f"GBDT) in under {TRAINING_BUDGET_S / 60:.0f} minutes of training: "
            f"{'met' if met and fast else 'not met'} ({fmt.format(tabm['best'])} in "
            f"{tabm['training_s']:.0f} s; GBDT {fmt.format(gbdt['best'])}).",
            "",
        ]
    lines.append(END)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
