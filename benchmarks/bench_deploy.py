"""Deployment benchmarks for BENCHMARKS.md (run with ``nox -s bench``).

For the bank FFN, the IMDB ImprovedRNN (CPU config) and the Cats-vs-Dogs fine-tuned MobileNetV2
(the stand-in for the book's VGG16, whose weights are not available here):

1. Inference latency of the network on a preprocessed batch of real inputs, batch 1 and 64:
   eager torch (the Lightning model's ``predict_step``), TorchScript and ONNX Runtime (the files
   ``dlzoo export`` writes). Median of repeated runs after warm-up.
2. ``dlzoo serve`` under a bounded load test on loopback: a fixed number of requests (one raw
   input each) from a fixed number of concurrent clients, with LitServe's batching on
   (``max_batch_size`` 64, ``batch_timeout`` 5 ms) and off (``max_batch_size`` 1). The clients
   run on the same 2 cores as the server.

The models are trained briefly first (bank: the full quick-start config; IMDB and Cats vs Dogs:
short runs, see the table); latency does not depend on how well a model is trained.
The results replace the ``bench:deploy`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from _common import CONFIGS, bench_parser, device_line, saved_results, write_section

from dlzoo.cli import main as dlzoo
from dlzoo.cli import make_cli
from dlzoo.cli.checkpoint import restore_checkpoint
from dlzoo.deploy.bundle import BUNDLE_FILE, ExportedModel

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- bench:deploy:start -->", "<!-- bench:deploy:end -->"
CLIENTS = 16


def _fit(config: str, root: Path, overrides: list[str], reuse: bool = False) -> tuple[Path, Path]:
    """``dlzoo fit`` (with ``reuse``, only if the run is missing); returns the run's config.yaml
    and last.ckpt."""
    run = root / config / "lightning_logs" / "version_0"
    if reuse and (run / "checkpoints" / "last.ckpt").is_file():
        return run / "config.yaml", run / "checkpoints" / "last.ckpt"
    shutil.rmtree(root / config, ignore_errors=True)
    args = ["fit", "--config", str(CONFIGS / f"{config}.yaml")]
    args += ["--trainer.default_root_dir", str(root / config), "--trainer.accelerator", "cpu"]
    args += ["--trainer.enable_progress_bar", "false", *overrides]
    dlzoo(args)
    return run / "config.yaml", run / "checkpoints" / "last.ckpt"


def _median_ms(fn, budget: float = 3.0, least: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < least or time.perf_counter() - start < budget:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) >= 2000:
            break
    return 1000 * statistics.median(times)


def latency(config: Path, ckpt: Path, raw: list, bundles: Path) -> dict:
    # the run's config.yaml, less the subcommand's own options (ckpt_path ...), builds the pair
    settings = yaml.safe_load(config.read_text())
    for key in ("ckpt_path", "weights_only"):
        settings.pop(key, None)
    plain = bundles / "config.yaml"
    plain.parent.mkdir(parents=True, exist_ok=True)
    plain.write_text(yaml.safe_dump(settings))
    cli = make_cli(["--config", str(plain)], run=False)
    model, dm = cli.model, cli.datamodule
    restore_checkpoint(model, dm, ckpt)
    results: dict = {}
    for fmt in ("onnx", "torchscript"):
        dlzoo(["export", "--config", str(config), "--ckpt_path", str(ckpt), "--format", fmt,
               "--output", str(bundles / fmt)])  # fmt: skip
    for size in (1, 64):
        batch = dm.collate_inputs(dm.encode_inputs(raw[:size]))
        tensors = batch if isinstance(batch, tuple) else (batch,)
        row: dict = {}

        def eager(batch: object = batch) -> None:
            with torch.inference_mode():
                model.predict_step((batch,), 0)

        row["eager"] = _median_ms(eager)
        for fmt in ("torchscript", "onnx"):
            bundle = json.loads((bundles / fmt / BUNDLE_FILE).read_text())
            exported = ExportedModel(
                bundles / fmt / bundle["model_file"], [o["name"] for o in bundle["outputs"]]
            )
            feed = {
                spec["name"]: t.numpy() for spec, t in zip(bundle["inputs"], tensors, strict=True)
            }
            row[fmt] = _median_ms(lambda exported=exported, feed=feed: exported.run(feed))
        print(config.parent.name, f"batch {size}", {k: round(v, 3) for k, v in row.items()})
        results[str(size)] = row
    return results


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_test(config: Path, ckpt: Path, bodies: list[bytes], requests: int, batching: bool) -> dict:
    """Start ``dlzoo serve``, send ``requests`` requests from CLIENTS threads, stop it."""
    port = _free_port()
    command = [sys.executable, "-m", "dlzoo", "serve", "--config", str(config)]
    command += ["--ckpt_path", str(ckpt), "--port", str(port), "--accelerator", "cpu"]
    command += [] if batching else ["--max_batch_size", "1"]
    server = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", "/health")
                if connection.getresponse().read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError("dlzoo serve did not become healthy in 300 s")
        latencies: list[float] = []
        errors = [0]
        counter = iter(range(requests))
        lock = threading.Lock()

        def client() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            while True:
                with lock:
                    number = next(counter, None)
                if number is None:
                    return
                body = bodies[number % len(bodies)]
                t = time.perf_counter()
                connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                elapsed = time.perf_counter() - t
                with lock:
                    latencies.append(elapsed)
                    errors[0] += response.status != 200

        for _ in range(20):  # warm-up, not measured
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request("POST", "/predict", bodies[0], {"Content-Type": "application/json"})
            connection.getresponse().read()
        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - start
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
    ms = np.asarray(latencies) * 1000
    result = {
        "requests": requests,
        "clients": CLIENTS,
        "errors": errors[0],
        "rps": requests / wall,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
    }
    print(config.parent.name, "batching" if batching else "no batching", result)
    return result


def main() -> None:
    parser = bench_parser(__doc__, "deploy")
    args = parser.parse_args()
    work = args.work_dir
    results, once = saved_results(args)

    models: dict[str, tuple] = {}
    # bank FFN: the quick-start config, trained in full
    bank = pd.read_csv(REPO / "src" / "dlzoo" / "data" / "_files" / "bank.csv")
    rows = bank.drop(columns="deposit").sample(256, random_state=0).to_dict("records")
    models["bank_ffn"] = (
        _fit("bank_ffn", work / "runs", [], args.reuse),
        rows,
        4000,
        "12 epochs (full)",
    )

    tar = args.shared / "imdb" / "aclImdb_v1_labelled.tar.gz"
    if tar.is_file():
        data = REPO / ".bench" / "text" / "imdb"
        if not (data / "aclImdb").is_dir():
            with tarfile.open(tar) as archive:
                archive.extractall(data, filter="data")
        texts = pd.read_csv(args.shared / "imdb" / "test.csv.gz")["text"].sample(
            256, random_state=0
        )
        overrides = ["--data.init_args.data_dir", str(data), "--data.init_args.url", "null"]
        overrides += ["--data.init_args.cache_dir", str(REPO / ".bench" / "text" / "cache_spacy")]
        overrides += ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "100"]
        run = _fit("imdb_improved_rnn_cpu", work / "runs", overrides, args.reuse)
        models["imdb_improved_rnn_cpu"] = (run, texts.tolist(), 1000, "1 epoch of 100 batches")

    cats_tar = args.shared / "cats_dogs" / "cats_and_dogs.tar"
    weights = args.shared / "weights" / "mobilenet_v2-b0353104.pth"
    if cats_tar.is_file() and weights.is_file():
        cats = REPO / ".bench" / "vision" / "cats_dogs"
        if not (cats / "cats_and_dogs").is_dir():
            with tarfile.open(cats_tar) as archive:
                archive.extractall(cats, filter="data")
        overrides = ["--data.init_args.data_dir", str(cats), "--data.init_args.url", "null"]
        overrides += ["--model.init_args.weights_file", str(weights)]
        overrides += ["--trainer.max_epochs", "2", "--data.init_args.num_workers", "2"]
        run = _fit("catsdogs_mobilenet_v2", work / "runs", overrides, args.reuse)
        files = sorted((cats / "cats_and_dogs" / "validation").rglob("*.jpg"))[::4][:64]
        images = [p.read_bytes() for p in files]
        models["catsdogs_mobilenet_v2"] = (run, images, 400, "2 epochs, frozen, cached features")

    for name, ((config, ckpt), raw, requests, _) in models.items():
        once(f"{name}_latency", latency, config, ckpt, raw, work / "bundles" / name)
        payload = [base64.b64encode(r).decode() if isinstance(r, bytes) else r for r in raw]
        bodies = [json.dumps({"inputs": [item]}).encode() for item in payload]
        for batching in (True, False):
            key = f"{name}_serve_{'batched' if batching else 'unbatched'}"
            once(key, load_test, config, ckpt, bodies, requests, batching)

    lines = [START, "## Deployment (issue 8)", "", f"Device: {device_line()}.", ""]
    lines += ["Command: `nox -s bench` (`python benchmarks/bench_deploy.py`). Models:", ""]
    for name, (_, _, _, trained) in models.items():
        lines.append(f"- `{name}`: trained {trained}.")
    lines += [
        "",
        "Inference latency of the network on a preprocessed batch of real inputs (median, ms):",
        "",
        "| model | batch | eager torch | TorchScript | ONNX Runtime | ORT speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for name in models:
        for size in ("1", "64"):
            r = results[f"{name}_latency"][size]
            lines.append(
                f"| `{name}` | {size} | {r['eager']:.3f} | {r['torchscript']:.3f} | "
                f"{r['onnx']:.3f} | {r['eager'] / r['onnx']:.1f}x |"
            )
    lines += [
        "",
        f"`dlzoo serve` on loopback, one raw input per request, {CLIENTS} concurrent clients on "
        "the same machine:",
        "",
        "| model | batching | requests | errors | requests/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in models:
        for mode in ("batched", "unbatched"):
            r = results[f"{name}_serve_{mode}"]
            lines.append(
                f"| `{name}` | {'on (64, 5 ms)' if mode == 'batched' else 'off'} | "
                f"{r['requests']} | {r['errors']} | {r['rps']:.0f} | {r['p50']:.1f} | "
                f"{r['p99']:.1f} |"
            )
    if "bank_ffn_latency" in results and "bank_ffn_serve_batched" in results:
        speedup = (
            results["bank_ffn_latency"]["1"]["eager"] / results["bank_ffn_latency"]["1"]["onnx"]
        )
        served = results["bank_ffn_serve_batched"]
        met = served["rps"] >= 500 and served["p99"] <= 50
        lines += [
            "",
            "Goals: ONNX Runtime at batch 1 at least 2x faster than eager torch for the FFN: "
            f"{'met' if speedup >= 2 else '**not met**'} ({speedup:.1f}x). The served bank FFN at "
            ">= 500 requests/s with p99 <= 50 ms: "
            + ("met" if met else "**not met**")
            + f", {served['rps']:.0f} requests/s with p99 {served['p99']:.0f} ms with batching. "
            "Before a batch's rows were encoded in one pandas call (they were encoded request by "
            "request), it served 60 requests/s; the IMDB and Cats-vs-Dogs serving rows above were "
            "measured before that change. What remains is the HTTP and process hops of LitServe "
            "(an API process and an inference worker) plus the 16 Python client threads, all on "
            "the same 2 cores.",
        ]
    lines.append(END)
    write_section(args.out, START, END, "\n".join(lines))


if __name__ == "__main__":
    main()
