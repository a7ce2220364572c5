"""A served bundle's life as a supervisor sees it (issue 18, defects 1, 2 and 4): real servers
(``dlzoo serve --bundle``, subprocesses on free loopback ports) and real HTTP clients.

- concurrent good and poisoned requests: every good one is answered 200, correctly;
- SIGTERM (what systemd or docker sends) stops every process of the server and frees the port,
  for dlzoo's host and for LitServe's;
- a killed worker is restarted and ``/health`` tells the truth; workers that keep dying stop
  the server with one ``dlzoo: error`` line instead of a hang.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from conftest import make_frame
from dlzoo.data import TabularDataModule
from dlzoo.deploy.export import export_model
from dlzoo.deploy.serve import PredictionAPI, _Raw
from dlzoo.models import FeedForwardNet

#: real servers, subprocesses and kills: left out of `nox -s tests_fast`
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], list[dict]]:
    """A tiny tabular model's bundle, rows to send, and their answers computed in-process."""
    root = tmp_path_factory.mktemp("lifecycle")
    make_frame(n=120).to_csv(root / "rows.csv", index=False)
    dm = TabularDataModule(filename=str(root / "rows.csv"), target="target")
    torch.manual_seed(0)
    model = FeedForwardNet(num_features=dm.num_features, hidden_sizes=[8]).eval()
    folder = export_model(model, dm, root / "bundle").parent
    rows = make_frame(n=8, seed=3).drop(columns="target").to_dict("records")
    (expected,) = PredictionAPI.for_bundle(folder, threads=1).predict([_Raw(rows)])
    return folder, rows, expected


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _group(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _health(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _post(port: int, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict",
        data=body,
        headers={"Content-Type": content_type},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


class Server:
    """``dlzoo serve --bundle`` in its own session (process group), stopped by its group."""

    def __init__(self, folder: Path, log: Path, *options: str) -> None:
        self.port, self.log = _free_port(), log
        command = [sys.executable, "-m", "dlzoo", "serve", "--bundle", str(folder)]
        command += ["--port", str(self.port), "--workers", "1", "--threads", "1", *options]
        with open(log, "w") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_healthy(self, limit: float = 120) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"dlzoo serve exited:\n{self.log.read_text()[-3000:]}")
            try:
                if _health(self.port) == (200, "ok"):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"not healthy after {limit} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):  # the group, even if its leader is gone
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def server(bundle: tuple, tmp_path: Path):
    started = Server(bundle[0], tmp_path / "serve.log")
    try:
        started.wait_healthy()
        yield started
    finally:
        started.stop()


def test_good_requests_mixed_with_poisoned_ones_are_all_answered(server: Server, bundle) -> None:
    _, rows, expected = bundle
    poison = [
        # a 400-digit number: OverflowError in pandas, which failed whole batches (defect 1)
        (
            b'{"inputs": [' + json.dumps(rows[0])[:-1].encode() + b', "x1": ' + b"9" * 400 + b"}]}",
            "application/json",
            422,
        ),
        (json.dumps({"inputs": [{**rows[0], "x2": "lots"}]}).encode(), "application/json", 422),
        (b'{"inputs": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "application/json", 400),
        (json.dumps({"inputs": rows[:1]}).encode(), "text/plain", 415),
        (json.dumps({"inputs": [rows[0]] * 300}).encode(), "application/json", 413),
    ]
    jobs = []
    for i in range(120):
        if i % 3 == 2:
            jobs.append(("bad", *poison[(i // 3) % len(poison)]))
        else:
            jobs.append(("good", i % len(rows)))

    def send(job: tuple) -> tuple:
        if job[0] == "good":
            return job, _post(server.port, json.dumps({"inputs": [rows[job[1]]]}).encode())
        return job, _post(server.port, job[1], job[2])

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, jobs))
    for job, (status, answer) in results:
        if job[0] == "good":
            assert status == 200, answer
            (got,) = answer["predictions"]
            assert got["label"] == expected[job[1]]["label"]
            assert got["probabilities"] == pytest.approx(
                expected[job[1]]["probabilities"], abs=1e-6
            )
        else:
            assert status == job[3], answer


def test_sigterm_stops_every_process_and_frees_the_port(server: Server) -> None:
    # defect 2: `kill PID` left the API process, the worker and the manager holding the port
    assert len(_group(server.process.pid)) >= 2  # the supervisor and its worker
    server.process.send_signal(signal.SIGTERM)  # the main process only, as a supervisor does
    assert server.process.wait(timeout=30) == 0
    deadline = time.monotonic() + 10
    while _group(server.process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _group(server.process.pid) == []
    assert _port_is_free(server.port)


def test_a_killed_worker_is_restarted_and_health_tells_the_truth(server: Server, bundle) -> None:
    _, rows, expected = bundle
    supervisor = server.process.pid
    (worker,) = [p for p in _group(supervisor) if p != supervisor]
    os.kill(worker, signal.SIGKILL)
    start = time.monotonic()
    status, text = _health(server.port)  # answered by the restarted worker, not a hang
    assert (status, text) == (200, "ok") and time.monotonic() - start < 10
    (new_worker,) = [p for p in _group(supervisor) if p != supervisor]
    assert new_worker != worker
    status, answer = _post(server.port, json.dumps({"inputs": rows[:2]}).encode())
    assert status == 200 and answer["predictions"][0]["label"] == expected[0]["label"]
    assert "was killed by SIGKILL; restarting it" in server.log.read_text()


def test_workers_that_keep_dying_stop_the_server_with_one_error_line(server: Server) -> None:
    supervisor = server.process.pid
    deadline = time.monotonic() + 60
    while server.process.poll() is None and time.monotonic() < deadline:
        for pid in _group(supervisor):
            if pid != supervisor:
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.3)
    assert server.process.wait(timeout=30) == 1
    errors = [line for line in server.log.read_text().splitlines() if "dlzoo: error" in line]
    assert len(errors) == 1 and "workers died 5 times" in errors[0]
    assert _port_is_free(server.port)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_litserve_host_leaves_nothing_serving_when_its_main_process_is_stopped(
    bundle: tuple, tmp_path: Path, signum: int
) -> None:
    # issue 29, defect 5: after SIGKILL of the main process (no handler runs), LitServe's API
    # server, inference worker and manager went on serving on the port (a new server: "Address
    # already in use"); SIGTERM stopped them all already
    server = Server(bundle[0], tmp_path / "litserve.log", "--server", "litserve")
    try:
        server.wait_healthy(180)
        status, answer = _post(server.port, json.dumps({"inputs": bundle[1][:1]}).encode())
        assert status == 200 and answer["predictions"][0]["label"] == bundle[2][0]["label"]
        assert len(_group(server.process.pid)) >= 3  # LitServe: manager, API, worker
        server.process.send_signal(signum)  # the main process only, as a supervisor does
        server.process.wait(timeout=60)
        deadline = time.monotonic() + 15
        while _group(server.process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _group(server.process.pid) == []
        assert _port_is_free(server.port)
    finally:
        server.stop()
