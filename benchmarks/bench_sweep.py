"""Sweep benchmarks for BENCHMARKS.md (run with ``nox -s bench``): ``dlzoo sweep`` on 2 cores.

1. The book's regularisation grid on bank marketing (``examples/sweeps/bank_book_grid.yaml``):
   L1 or L2 lambda in {0.0001, 0.001, 0.005, 0.01} x dropout in {0.05, 0.1, 0.2, 0.3}, the
   48-96-192-384 network, 40 epochs each, every run kept (no pruning): each combination's
   final-epoch and best val AUC, beside the book's five configs.
2. A TPE search for the bank FFN (``examples/sweeps/bank_ffn_tpe.yaml``, 30 trials, median
   pruning) against ``bank_ffn`` (0.930) and gradient boosting (0.935).
3. A TPE search for the diamonds regression (``examples/sweeps/diamonds_tpe.yaml``, 8 trials)
   against the GBDT's RMSE of 548.

Each runs in this process with Optuna's default SQLite storage in the work folder; the results
replace the ``bench:sweep`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from _common import REPO, bench_parser, device_line, saved_results, write_section

from dlzoo.sweep import run_sweep

START, END = "<!-- bench:sweep:start -->", "<!-- bench:sweep:end -->"
SWEEPS = REPO / "examples" / "sweeps"
#: the book's five configs, final-epoch val AUC after 500 epochs (BENCHMARKS.md, tabular)
BOOK = {
    "baseline (no regularisation)": 0.869,
    "L1 0.0001": 0.894,
    "L2 0.001": 0.900,
    "dropout 0.1": 0.882,
    "L1 0.0001 + L2 0.001 + dropout 0.1": 0.884,
}


def _sweep(config: str, search: str, root: Path, trials: int | None, extra: list[str]) -> dict:
    start = time.perf_counter()
    study = run_sweep(config, SWEEPS / search, trials=trials, root=root, extra_args=extra)
    wall = time.perf_counter() - start
    frame = pd.read_csv(root / "trials.csv")
    best = study.best_trial
    return {
        "wall": wall,
        "states": frame["state"].value_counts().to_dict(),
        "best": best.value,
        "best_trial": best.number,
        "best_params": {k: str(v) for k, v in best.params.items()},
        "trials": frame.where(frame.notna(), None).to_dict("records"),
    }


def _regulariser(row: dict) -> str:
    value = row["regulariser"]
    kind = "L1" if "l1_lambda" in value else "L2"
    return f"{kind} {float(value.split(':')[1].strip(' }')):g}"


def main() -> None:
    parser = bench_parser(__doc__, "sweep")
    parser.add_argument("--diamonds-trials", type=int, default=8)
    args = parser.parse_args()
    work = args.work_dir
    results, once = saved_results(args)
    once("grid", _sweep, "bank_book_baseline", "bank_book_grid.yaml", work / "grid", None, [])
    once("bank_tpe", _sweep, "bank_ffn", "bank_ffn_tpe.yaml", work / "bank_tpe", 30, [])
    diamonds = args.shared / "diamonds" / "diamonds.csv.gz"
    if diamonds.is_file():
        extra = ["--data.init_args.filename", str(diamonds)]
        once(
            "diamonds_tpe",
            _sweep,
            "diamonds_ffn",
            "diamonds_tpe.yaml",
            work / "diamonds_tpe",
            args.diamonds_trials,
            extra,
        )

    lines = [START, "## Sweeps", "", f"Device: {device_line()}.", ""]
    lines += [
        "Command: `nox -s bench` (`python benchmarks/bench_sweep.py`), which runs the three "
        "searches of `examples/sweeps/` one after the other with `dlzoo.sweep.run_sweep` (what "
        "`dlzoo sweep` runs), nothing else of ours running. Times are the whole sweep, trial "
        "start-up included.",
        "",
    ]
    grid = results["grid"]
    done = [t for t in grid["trials"] if t["state"] == "COMPLETE"]
    lines += [
        "### The book's regularisation grid (bank marketing)",
        "",
        f"`dlzoo sweep --config bank_book_baseline --sweep examples/sweeps/bank_book_grid.yaml`: "
        f"{len(done)} runs of the 48-96-192-384 network, 40 epochs each (the book: 500), in "
        f"{grid['wall'] / 60:.1f} min. Val AUC of the final epoch / the best epoch:",
        "",
        "| regulariser | dropout 0.05 | dropout 0.1 | dropout 0.2 | dropout 0.3 |",
        "|---|---|---|---|---|",
    ]
    table: dict[str, dict[float, str]] = {}
    for t in done:
        cell = f"{t['final_val_auroc']:.3f} / {t['val_auroc']:.3f}"
        table.setdefault(_regulariser(t), {})[float(t["model.init_args.dropout"])] = cell
    order = sorted(table, key=lambda k: (k.split()[0], float(k.split()[1])))
    for name in order:
        cells = [table[name].get(d, "") for d in (0.05, 0.1, 0.2, 0.3)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    best_final = max(done, key=lambda t: t["final_val_auroc"])
    best_any = max(done, key=lambda t: t["val_auroc"])
    lines += [
        "",
        "The book's five configs (final epoch of 500): "
        + "; ".join(f"{k} {v:.3f}" for k, v in BOOK.items())
        + f". Best final-epoch AUC in the grid: {best_final['final_val_auroc']:.3f} "
        f"({_regulariser(best_final)}, dropout {best_final['model.init_args.dropout']}); "
        f"best AUC at any epoch: {best_any['val_auroc']:.3f} "
        f"({_regulariser(best_any)}, dropout {best_any['model.init_args.dropout']}).",
        "",
    ]
    bank = results["bank_tpe"]
    lines += [
        "### TPE searches",
        "",
        "| search | trials (complete / pruned / failed) | best | time | reference |",
        "|---|---|---|---|---|",
        f"| bank FFN, `examples/sweeps/bank_ffn_tpe.yaml` | {_states(bank)} | val AUC "
        f"{bank['best']:.4f} (trial {bank['best_trial']}) | {bank['wall'] / 60:.1f} min | "
        "`bank_ffn` 0.930; gradient boosting 0.935 |",
    ]
    if "diamonds_tpe" in results:
        d = results["diamonds_tpe"]
        lines.append(
            f"| diamonds price, `examples/sweeps/diamonds_tpe.yaml` | {_states(d)} | val RMSE "
            f"{d['best']:,.0f} (trial {d['best_trial']}) | {d['wall'] / 60:.1f} min | "
            "`diamonds_ffn` 595; GBDT 548 |"
        )
    lines += ["", "Best parameters found:", ""]
    for name in ("bank_tpe", "diamonds_tpe"):
        if name in results:
            params = ", ".join(f"`{k}` = {v}" for k, v in results[name]["best_params"].items())
            lines.append(f"- {name.replace('_', ' ')}: {params}")
    lines.append(END)
    write_section(args.out, START, END, "\n".join(lines))


def _states(result: dict) -> str:
    s = result["states"]
    return f"{s.get('COMPLETE', 0)} / {s.get('PRUNED', 0)} / {s.get('FAIL', 0)}"


if __name__ == "__main__":
    main()
