"""``dlzoo sweep`` on tiny data (issue 19): trials run as ``dlzoo fit`` runs, a bad trial is
pruned, a failing one is recorded and the sweep goes on, results reproduce, a killed sweep
resumes, two workers share a grid, and bad searches are refused before anything runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from conftest import REPO, make_frame
from dlzoo.cli import main
from dlzoo.sweep import Search, SweepError, check_paths, parse_param, run_sweep

#: real servers, subprocesses and kills: left out of `nox -s tests_fast`
pytestmark = pytest.mark.slow


@pytest.fixture
def config(tmp_path: Path) -> Path:
    make_frame(n=240).to_csv(tmp_path / "rows.csv", index=False)
    settings = {
        "seed_everything": 3,
        "trainer": {"max_epochs": 3, "accelerator": "cpu", "devices": 1},
        "model": {"class_path": "ffn", "init_args": {"hidden_sizes": [8], "lr": 0.01}},
        "data": {
            "class_path": "tabular",
            "init_args": {"filename": str(tmp_path / "rows.csv"), "target": "target"},
        },
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def _search(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _trials(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "trials.csv")


def test_a_sweep_prunes_a_bad_trial_records_a_failing_one_and_reproduces(
    config: Path, tmp_path: Path
) -> None:
    root = tmp_path / "sweep"
    search = _search(
        tmp_path,
        {
            "pruner": "median",
            "params": {
                "model.init_args.lr": {"low": 1.0e-9, "high": 0.05, "log": True},
                "model.init_args.hidden_sizes": [[8], [-3]],  # -3: the model cannot be built
            },
        },
    )
    # the trials in a known order, through the storage the sweep resumes: two good ones, one
    # that fails, and one whose learning rate learns nothing (the median rule prunes it)
    root.mkdir()
    storage = f"sqlite:///{root / 'study.db'}"
    study = optuna.create_study(study_name="tiny", storage=storage, direction="maximize")
    for lr, sizes in ((0.02, "[8]"), (0.01, "[8]"), (0.01, "[-3]"), (1e-9, "[8]")):
        study.enqueue_trial({"model.init_args.lr": lr, "model.init_args.hidden_sizes": sizes})
    result = run_sweep(config, search, trials=3, study="tiny", root=root)

    trials = _trials(root)
    assert trials["state"].tolist() == ["COMPLETE", "COMPLETE", "FAIL", "PRUNED"]
    assert "negative dimension" in trials.loc[2, "reason"]
    for number in (0, 1):
        assert (root / f"trial_{number}" / "lightning_logs" / "version_0" / "config.yaml").is_file()
    for plot in ("history.png", "slices.png", "importances.png"):
        assert (root / plot).stat().st_size > 1000
    best = result.best_trial
    assert best.number in (0, 1) and best.value == trials["val_auroc"].max()
    # best.yaml is a complete config: dlzoo fit on it gives the best trial's metric again
    main(["fit", "--config", str(root / "best.yaml"), "--trainer.enable_progress_bar", "false"])
    metrics = pd.read_csv(root / "best" / "lightning_logs" / "version_0" / "metrics.csv")
    assert metrics["val_auroc"].max() == pytest.approx(best.value, abs=1e-6)


def test_bad_paths_ranges_and_searches_are_refused_before_any_trial(
    config: Path, tmp_path: Path
) -> None:
    bad_path = Search.from_dict({"params": {"model.init_args.no_such_option": [1, 2]}})
    with pytest.raises(SweepError, match="no_such_option"):
        check_paths(str(config), bad_path)
    wrong_type = Search.from_dict({"params": {"trainer.max_epochs": ["many", "few"]}})
    with pytest.raises(SweepError, match=r"trainer\.max_epochs"):
        check_paths(str(config), wrong_type)
    with pytest.raises(SweepError, match=r"model.init_args.lr: low \(0.1\) must be below high"):
        parse_param("model.init_args.lr", {"low": 0.1, "high": 0.01})
    with pytest.raises(SweepError, match="a log range needs low > 0"):
        parse_param("model.init_args.lr", {"low": 0, "high": 0.01, "log": True})
    with pytest.raises(SweepError, match="sampler must be one of"):
        Search.from_dict({"sampler": "bayes", "params": {"a.b": [1]}})
    with pytest.raises(SweepError, match="a grid needs a list of values"):
        Search.from_dict(
            {"sampler": "grid", "params": {"model.init_args.lr": {"low": 0.1, "high": 1.0}}}
        )
    root = tmp_path / "never"
    search = _search(tmp_path, {"params": {"model.init_args.no_such_option": [1, 2]}})
    with pytest.raises(SweepError):
        run_sweep(config, search, trials=2, root=root)
    assert not list(root.glob("trial_*"))  # nothing ran


def _sweep_command(config: Path, search: Path, root: Path, *extra: str) -> list[str]:
    command = [sys.executable, "-m", "dlzoo", "sweep", "--config", str(config)]
    return [*command, "--sweep", str(search), "--root", str(root), *extra]


def test_a_killed_sweep_resumes_to_the_requested_number_of_trials(
    config: Path, tmp_path: Path
) -> None:
    root = tmp_path / "sweep"
    search = _search(
        tmp_path,
        {
            "sampler": "random",
            "pruner": "none",
            "fixed": {"trainer.max_epochs": 40},
            "params": {"model.init_args.lr": {"low": 1.0e-3, "high": 0.05, "log": True}},
        },
    )
    command = _sweep_command(config, search, root, "--trials", "3")
    with open(tmp_path / "first.log", "w") as out:
        first = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 120
    while not (root / "trial_1").is_dir() and time.monotonic() < deadline:
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # in the middle of trial 1
    first.wait()
    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    trials = _trials(root)
    assert (trials["state"] == "COMPLETE").sum() == 3
    killed = trials[trials["trial"] == 1].iloc[0]
    assert killed["state"] == "FAIL" and killed["reason"] == "its process was killed"
    assert "sweep search: 3 complete, 1 fail" in second.stdout


def test_two_workers_on_one_storage_finish_a_grid_without_repeats(
    config: Path, tmp_path: Path
) -> None:
    root = tmp_path / "sweep"
    search = _search(
        tmp_path,
        {
            "sampler": "grid",
            "pruner": "none",
            "params": {
                "model.init_args.lr": [0.003, 0.01, 0.03],
                "model.init_args.hidden_sizes": [[8], [16]],
            },
        },
    )
    command = _sweep_command(config, search, root, "--study", "shared")
    workers = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    for worker in workers:
        out, _ = worker.communicate(timeout=400)
        assert worker.returncode == 0, out[-2000:]
    trials = _trials(root)
    done = trials[trials["state"] == "COMPLETE"]
    points = done[["model.init_args.lr", "model.init_args.hidden_sizes"]].astype(str)
    assert len(done) == 6 and not points.duplicated().any()  # every grid point once
    assert set(trials["state"]) <= {"COMPLETE", "PRUNED"}
    skipped = trials[trials["state"] == "PRUNED"]
    # a point drawn by both workers at once is run by the lower-numbered trial, skipped by the other
    assert all(str(r).startswith("the same grid point as trial") for r in skipped["reason"])


@pytest.mark.parametrize("search", sorted((REPO / "examples" / "sweeps").glob("*.yaml")))
def test_every_shipped_search_fits_the_recipe_its_usage_line_names(search: Path) -> None:
    # the usage line in the file's header: `dlzoo sweep --config RECIPE --sweep FILE ...`
    usage = next(line for line in search.read_text().splitlines() if "dlzoo sweep" in line)
    recipe = usage.split("--config", 1)[1].split()[0]
    assert (REPO / "src" / "dlzoo" / "recipes" / f"{recipe}.yaml").is_file(), usage
    check_paths(recipe, Search.from_file(search))  # every path at both ends parses
