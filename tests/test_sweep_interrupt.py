"""Ctrl-C stops ``dlzoo sweep`` (issue 29, defect 1): Lightning caught the interrupt inside the
trial and exited 1, so the sweep recorded a failed trial and went on to the next one."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import grid_sweep

#: real servers, subprocesses and kills: left out of `nox -s tests_fast`
pytestmark = pytest.mark.slow


def test_ctrl_c_fails_the_running_trial_and_stops_the_sweep_with_status_130(
    tmp_path: Path,
) -> None:
    command, root = grid_sweep(tmp_path, [0.01, 0.02, 0.03], "--trainer.max_epochs", "200")
    with open(tmp_path / "sweep.log", "w") as out:
        sweep = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    # interrupt in the middle of the first trial, once it is training
    while not list(root.glob("trial_0/lightning_logs/version_0/metrics.csv")):
        assert sweep.poll() is None, (tmp_path / "sweep.log").read_text()[-2000:]
        assert time.monotonic() < deadline, "the first trial never started"
        time.sleep(0.05)
    sweep.send_signal(signal.SIGINT)
    try:
        status = sweep.wait(timeout=120)
    finally:
        sweep.kill()
    log = (tmp_path / "sweep.log").read_text()
    assert status == 130, log[-2000:]
    trials = pd.read_csv(root / "trials.csv")
    assert trials["trial"].tolist() == [0] and trials["state"].tolist() == ["FAIL"], trials
    assert not (root / "trial_1").exists()  # no further trial started
    assert "stopped by Ctrl-C" in log


def test_a_grid_resumed_after_sigkill_with_one_point_left_finishes(tmp_path: Path) -> None:
    # issue 29, defect 3: the re-queued point has no `grid_id`, which Optuna's GridSampler reads
    # when one point is left: "dlzoo: error: grid_id", and the last point never ran
    import os

    command, root = grid_sweep(tmp_path, [0.01, 0.02, 0.03])
    slow = [*command, "--trainer.max_epochs", "200"]  # trial 1 still training when killed
    with open(tmp_path / "first.log", "w") as out:
        first = subprocess.Popen(slow, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while not list(root.glob("trial_1/lightning_logs/version_0/metrics.csv")):
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
        assert time.monotonic() < deadline, "trial 1 never started"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # in the middle of trial 1: one point (2) left after it
    first.wait()
    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    trials = pd.read_csv(root / "trials.csv")
    done = trials[trials["state"] == "COMPLETE"]["model.init_args.lr"]
    assert sorted(done.tolist()) == [0.01, 0.02, 0.03], trials  # every point ran, the last too
