"""``dlzoo serve``: a real server (a subprocess on a free loopback port) answering a real HTTP
client with the probabilities ``dlzoo predict`` writes, and a 4xx for every bad input."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import make_frame, make_reviews, write_image_tree
from dlzoo.cli import main

#: real servers, subprocesses and kills: left out of `nox -s tests_fast`
pytestmark = pytest.mark.slow

TRAINER = {"max_epochs": 2, "accelerator": "cpu", "devices": 1, "enable_progress_bar": False}
KINDS = ("tabular", "text", "image")
MAX_INPUTS = 16


def _configs(root: Path) -> dict[str, tuple[dict, list[str]]]:
    """A tiny config per input kind, and the predict arguments of its new inputs."""
    make_frame(n=200).to_csv(root / "train.csv", index=False)
    make_frame(n=6, seed=5).drop(columns="target").to_csv(root / "new.csv", index=False)
    make_reviews(120).to_csv(root / "reviews.csv", index=False)
    new_texts = make_reviews(5, seed=6).drop(columns="label")
    new_texts.loc[4, "text"] = "great"  # one short text
    new_texts.to_csv(root / "new_reviews.csv", index=False)
    write_image_tree(root / "images", {"train": 6, "validation": 2, "new": 2})
    data = {
        "tabular": {
            "class_path": "tabular",
            "init_args": {"filename": str(root / "train.csv"), "target": "target"},
        },
        "text": {
            "class_path": "text_csv",
            "init_args": {
                "train_file": str(root / "reviews.csv"),
                "tokenizer": "simple",
                "cache_dir": str(root / "cache"),
            },
        },
        "image": {
            "class_path": "image_folder",
            "init_args": {
                "data_dir": str(root / "images"),
                "val_dir": "validation",
                "image_size": 32,
                "resize_size": 36,
                "num_workers": 0,
            },
        },
    }
    models = {
        "tabular": {"class_path": "ffn", "init_args": {"hidden_sizes": [8]}},
        "text": {
            "class_path": "improved_rnn",
            "init_args": {"embedding_dim": 8, "hidden_size": 8},
        },
        "image": {"class_path": "convnet", "init_args": {"channels": [4], "head_sizes": [8]}},
    }
    predict = {
        "tabular": ["--data.init_args.predict_file", str(root / "new.csv")],
        "text": ["--data.init_args.predict_file", str(root / "new_reviews.csv")],
        "image": ["--data.init_args.predict_dir", str(root / "images" / "new")],
    }
    return {
        kind: (
            {
                "seed_everything": 1,
                "trainer": {**TRAINER, "default_root_dir": str(root / kind)},
                "model": models[kind],
                "data": data[kind],
            },
            predict[kind],
        )
        for kind in KINDS
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict",
        data=body,
        headers={"Content-Type": content_type},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def post_json(port: int, payload: object) -> tuple[int, dict]:
    return post(port, json.dumps(payload).encode())


def _wait_healthy(port: int, process: subprocess.Popen, log: Path, limit: float = 180) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"dlzoo serve exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200 and r.read() == b"ok":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"dlzoo serve not healthy after {limit} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory):
    """Per input kind: a model fitted and predicted with the CLI, then served (3 subprocesses
    side by side); yields {kind: (port, inputs, predictions)} and stops the servers."""
    root = tmp_path_factory.mktemp("serve")
    started: dict[str, tuple] = {}
    processes = []
    try:
        for kind, (config, predict_args) in _configs(root).items():
            path = root / f"{kind}.yaml"
            path.write_text(yaml.safe_dump(config))
            main(["fit", "--config", str(path)])
            run = root / kind / "lightning_logs" / "version_0"
            common = ["--config", str(run / "config.yaml")]
            common += ["--ckpt_path", str(run / "checkpoints" / "last.ckpt")]
            output = root / f"{kind}_predictions.csv"
            main(["predict", *common, *predict_args, "--prediction_writer.output", str(output)])
            port, log = _free_port(), root / f"{kind}_serve.log"
            command = [sys.executable, "-m", "dlzoo", "serve", *common, "--port", str(port)]
            command += ["--max_inputs", str(MAX_INPUTS), "--max_request_mb", "0.05"]
            with open(log, "w") as out:
                process = subprocess.Popen(
                    command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            processes.append(process)
            started[kind] = (port, process, log, pd.read_csv(output), predict_args[1])
        for port, process, log, *_ in started.values():
            _wait_healthy(port, process, log)
        yield {
            kind: (port, _raw_inputs(kind, new), frame)
            for kind, (port, _, _, frame, new) in started.items()
        }
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _raw_inputs(kind: str, source: str) -> list:
    """The inputs a client sends: rows as objects, texts, images as base64 (file order, as in
    predictions.csv)."""
    if kind == "tabular":
        return pd.read_csv(source).to_dict("records")
    if kind == "text":
        return pd.read_csv(source)["text"].tolist()
    files = sorted(p for p in Path(source).rglob("*") if p.is_file())
    return [base64.b64encode(p.read_bytes()).decode() for p in files]


def _probabilities(frame: pd.DataFrame, answer: dict) -> tuple[np.ndarray, np.ndarray]:
    """The positive-class probability from predictions.csv and from the server's answer."""
    column = next(c for c in frame.columns if c.startswith("prob_"))
    positive = column.removeprefix("prob_")
    served = [p["probabilities"][positive] for p in answer["predictions"]]
    return frame[column].to_numpy(), np.asarray(served)


@pytest.mark.parametrize("kind", KINDS)
def test_served_probabilities_equal_dlzoo_predict(kind: str, servers: dict) -> None:
    port, inputs, predicted = servers[kind]
    status, answer = post_json(port, {"inputs": inputs})
    assert status == 200, answer
    assert len(answer["predictions"]) == len(inputs) == len(predicted)
    expected, served = _probabilities(predicted, answer)
    np.testing.assert_allclose(served, expected, atol=2e-6)  # predictions.csv has 6 decimals
    assert [p["label"] for p in answer["predictions"]] == predicted["label"].astype(str).tolist()
    for prediction in answer["predictions"]:
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    # one input at a time (other batch sizes) gives the same answers
    status, single = post_json(port, {"inputs": inputs[-1:]})
    assert status == 200
    assert single["predictions"][0]["label"] == answer["predictions"][-1]["label"]
    alone, together = single["predictions"][0], answer["predictions"][-1]
    assert alone["probabilities"] == pytest.approx(together["probabilities"], abs=1e-6)


def test_uploaded_image_files_are_scored_like_base64(servers: dict) -> None:
    port, inputs, predicted = servers["image"]
    boundary = uuid.uuid4().hex
    parts = b""
    for number, image in enumerate(inputs):
        parts += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="{number}.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
            ).encode()
            + base64.b64decode(image)
            + b"\r\n"
        )
    parts += f"--{boundary}--\r\n".encode()
    status, answer = post(port, parts, f"multipart/form-data; boundary={boundary}")
    assert status == 200, answer
    expected, served = _probabilities(predicted, answer)
    np.testing.assert_allclose(served, expected, atol=2e-6)
    # one image as the whole body (curl --data-binary @x.jpg -H "Content-Type: image/jpeg")
    for number, image in enumerate(inputs):
        status, alone = post(port, base64.b64decode(image), "image/jpeg")
        assert status == 200, alone
        assert alone["predictions"] == [answer["predictions"][number]]
    status, answer = post(port, b"not an image", "image/png")
    assert status == 422 and "input 0: not a usable image" in answer["detail"]


def test_a_model_that_takes_json_refuses_uploaded_files_by_name(servers: dict) -> None:
    for kind in ("tabular", "text"):
        port = servers[kind][0]
        status, answer = post(port, b"\xff\xd8\xff", "image/jpeg")
        assert status == 415 and "this model takes JSON" in answer["detail"], answer


def _assert_rejected(port: int, result: tuple[int, dict], status: int, words: str) -> None:
    code, answer = result
    assert code == status, answer
    assert words in answer["detail"], answer["detail"]


def test_bad_inputs_get_a_4xx_naming_the_problem_and_serving_goes_on(servers: dict) -> None:
    port, rows, _ = servers["tabular"]
    good = {"inputs": rows[:2]}
    no_color = [{k: v for k, v in rows[0].items() if k != "color"}]
    cases = [
        (post_json(port, {"inputs": no_color}), 422, "lacks column(s) ['color']"),
        (post_json(port, {"inputs": [{**rows[0], "x2": "lots"}]}), 422, "'x2' is not a number"),
        (post_json(port, {"inputs": [{**rows[0], "x1": [1, 2]}]}), 422, "'x1' holds a list"),
        (post_json(port, {"inputs": [{**rows[0], "x1": None}]}), 422, "'x1' has 1 empty value"),
        (post_json(port, {"inputs": ["a row"]}), 422, "input 0: a tabular row is an object"),
        (post(port, b""), 400, "empty body"),
        (post(port, b"{not json"), 400, "not valid JSON"),
        (post_json(port, [1, 2]), 400, 'a JSON object {"inputs": [...]}'),
        (post_json(port, {"inputs": []}), 400, '"inputs" is empty'),
        (post_json(port, {"inputs": rows[:1] * (MAX_INPUTS + 1)}), 413, "too many inputs"),
        (post_json(port, {"inputs": rows[:1], "pad": "x" * 60_000}), 413, "too large"),
    ]
    for result, status, words in cases:
        _assert_rejected(port, result, status, words)
        code, answer = post_json(port, good)  # the server still answers a good request
        assert code == 200 and len(answer["predictions"]) == 2

    port, texts, _ = servers["text"]
    _assert_rejected(port, post_json(port, {"inputs": [3]}), 422, "input 0: a text is a string")
    assert post_json(port, {"inputs": texts[:1]})[0] == 200

    port, images, _ = servers["image"]
    not_image = base64.b64encode(b"GIF89a this is not an image").decode()
    _assert_rejected(port, post_json(port, {"inputs": [not_image]}), 422, "not a usable image")
    _assert_rejected(port, post_json(port, {"inputs": ["%%%"]}), 422, "not valid base64")
    _assert_rejected(port, post_json(port, {"inputs": [7]}), 422, "an image is a base64 string")
    assert post_json(port, {"inputs": images[:1]})[0] == 200


def test_a_bad_request_does_not_fail_the_requests_batched_with_it(servers: dict) -> None:
    port, rows, _ = servers["tabular"]
    bad = {"inputs": [{**rows[0], "x2": "lots"}]}
    payloads = [
        bad if i % 2 else {"inputs": rows[i % len(rows) : i % len(rows) + 1]} for i in range(24)
    ]
    with ThreadPoolExecutor(8) as pool:  # concurrent: the server batches them together
        results = list(pool.map(lambda p: post_json(port, p), payloads))
    for payload, (status, answer) in zip(payloads, results, strict=True):
        if payload is bad:
            assert status == 422 and "'x2' is not a number" in answer["detail"]
        else:
            assert status == 200 and len(answer["predictions"]) == 1


def test_the_server_listens_on_loopback_only(servers: dict) -> None:
    """The kernel's table of listening TCP sockets (Linux): the port is bound to 127.0.0.1."""
    port = servers["tabular"][0]
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.rsplit(":", 1)
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                listening.add(address)
    assert listening == {"0100007F"}  # 127.0.0.1, little-endian hex; not 0.0.0.0 or ::
