"""Two ``dlzoo sweep`` workers share a grid through a real PostgreSQL server (issue 29): the
storage Optuna documents for many machines. The server runs in a temporary folder as an
unprivileged user, on a free loopback port, and stops with the test."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from conftest import grid_sweep

#: real servers, subprocesses and kills: left out of `nox -s tests_fast`
pytestmark = pytest.mark.slow

UNPRIVILEGED = 65534  # nobody: PostgreSQL refuses to run as root


def _bin_dir() -> Path | None:
    """Debian keeps the server's programs in /usr/lib/postgresql/<version>/bin."""
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if versions:
        return Path(versions[-1]).parent
    found = shutil.which("pg_ctl")
    return Path(os.path.realpath(found)).parent if found else None


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return [
        "setpriv",
        f"--reuid={UNPRIVILEGED}",
        f"--regid={UNPRIVILEGED}",
        "--clear-groups",
        *command,
    ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run does)"
        )
    folder = Path(tempfile.mkdtemp(prefix="dlzoo-postgres-"))
    if os.geteuid() == 0:
        os.chown(folder, UNPRIVILEGED, UNPRIVILEGED)
    data, port = folder / "data", _free_port()
    env = {**os.environ, "LC_ALL": "C"}

    def run(*command: str) -> None:
        done = subprocess.run(
            _as_server_user([str(bin_dir / command[0]), *command[1:]]),
            capture_output=True,
            text=True,
            env=env,
            cwd=folder,
            timeout=120,
        )
        assert done.returncode == 0, f"{command[0]}: {done.stdout[-1500:]}{done.stderr[-1500:]}"

    run("initdb", "-D", str(data), "-A", "trust", "-U", "dlzoo", "-E", "UTF8", "--no-sync")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off"
    run("pg_ctl", "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w", "start")
    try:
        run("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "dlzoo", "sweeps")
        yield f"postgresql+psycopg://dlzoo@127.0.0.1:{port}/sweeps"
    finally:
        subprocess.run(
            _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
            timeout=60,
            env=env,
        )
        shutil.rmtree(folder, ignore_errors=True)


def _running_trial_of(storage: str, pid: int) -> bool:
    import optuna

    try:
        study = optuna.load_study(study_name="shared", storage=storage)
    except KeyError:  # not created yet
        return False
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return any(t.user_attrs.get("pid") == pid for t in running)


def test_two_workers_share_a_grid_on_postgresql_and_a_killed_point_runs_again(
    postgres: str, tmp_path: Path
) -> None:
    lrs = [0.005, 0.01, 0.02, 0.03]
    command, root = grid_sweep(tmp_path, lrs, "--storage", postgres, "--study", "shared")
    slow = [*command, "--trainer.max_epochs", "300"]  # a worker to kill in the middle of a trial
    with open(tmp_path / "doomed.log", "w") as out:
        doomed = subprocess.Popen(
            slow, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    helper = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while not _running_trial_of(postgres, doomed.pid):  # kill it in the middle of a trial
        assert doomed.poll() is None, (tmp_path / "doomed.log").read_text()[-2000:]
        assert time.monotonic() < deadline, "the first worker never started a trial"
        time.sleep(0.2)
    time.sleep(2)
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait()
    out, _ = helper.communicate(timeout=400)
    assert helper.returncode == 0, out[-3000:]
    # the killed worker's machine starts it again: its RUNNING trial is failed and re-run
    again = subprocess.run(command, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    trials = pd.read_csv(root / "trials.csv")
    done = trials[trials["state"] == "COMPLETE"]["model.init_args.lr"]
    assert sorted(done.tolist()) == lrs, trials  # every point once, none twice
    killed = trials[trials["reason"].astype(str) == "its process was killed"]
    assert len(killed) == 1 and killed.iloc[0]["state"] == "FAIL", trials
