"""Requests are checked and refused alone (issue 18, defects 1, 3 and 6), in-process: the code
``dlzoo serve`` runs for a request and a batch of requests, without starting a server; and the
ONNX Runtime serving path answers as the torch one does."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from conftest import make_frame, make_reviews, write_image_tree
from dlzoo.data import ImageFolderDataModule, TabularDataModule, TextClassificationDataModule
from dlzoo.data.preprocess.text import TextPreprocessor
from dlzoo.deploy import runtime as runtime_module
from dlzoo.deploy.export import export_model
from dlzoo.deploy.host import Batcher, build_app
from dlzoo.deploy.serve import (
    Limits,
    OnnxRuntime,
    PredictionAPI,
    RequestChecks,
    TorchRuntime,
    _Raw,
    _Rejected,
)
from dlzoo.models import ConvNet, FeedForwardNet, ImprovedRNN


@pytest.fixture(scope="module")
def tabular(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    root = tmp_path_factory.mktemp("tabular")
    make_frame(n=120).to_csv(root / "rows.csv", index=False)
    dm = TabularDataModule(filename=str(root / "rows.csv"), target="target")
    torch.manual_seed(0)
    model = FeedForwardNet(num_features=dm.num_features, hidden_sizes=[8]).eval()
    rows = make_frame(n=6, seed=5).drop(columns="target").to_dict("records")
    return model, dm, rows


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    root = write_image_tree(tmp_path_factory.mktemp("images"), {"train": 4, "validation": 2})
    dm = ImageFolderDataModule(
        data_dir=str(root), val_dir="validation", image_size=32, resize_size=36, num_workers=0
    )
    dm.setup("fit")
    torch.manual_seed(0)
    model = ConvNet(
        num_classes=dm.num_classes, input_shape=(3, 32, 32), channels=[4], head_sizes=[8]
    ).eval()
    files = sorted((root / "validation").rglob("*.jpg"))
    return model, dm, [p.read_bytes() for p in files]


def _png(size: tuple[int, int]) -> bytes:
    """A small file that decodes to ``size`` pixels (a bilevel PNG compresses to bytes)."""
    buffer = io.BytesIO()
    Image.new("1", size).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_request_that_overflows_the_parser_fails_alone(tabular: tuple) -> None:
    # defect 1: a 400-digit number raised OverflowError in pandas, which the API did not
    # catch, and every request batched with it answered 500
    model, dm, good = tabular
    bad = [{**good[0], "x1": int("9" * 400)}]  # what JSON parses a 400-digit number to
    api = PredictionAPI(model, dm)
    first, rejected, last = api.predict([_Raw(good), _Raw(bad), _Raw(good)])
    (alone,) = api.predict([_Raw(good)])
    assert first == alone and last == alone  # good answers, equal to a batch of their own
    assert isinstance(rejected, _Rejected) and rejected.status == 422
    assert "x1" in rejected.message


def test_a_dlzoo_bug_in_encoding_is_a_500_for_that_request_alone(tabular: tuple) -> None:
    model, dm, good = tabular
    api = PredictionAPI(model, dm)

    class Broken(type(api.preprocessor)):
        def encode(self, inputs):  # a bug that only some inputs reach
            if any(row.get("x1") == 12345 for row in inputs):
                raise ZeroDivisionError("a bug")
            return super().encode(inputs)

    api.preprocessor = Broken(api.preprocessor.state)
    ok, broken = api.predict([_Raw(good), _Raw([{**good[0], "x1": 12345}])])
    assert len(ok) == len(good)
    assert broken.status == 500 and "ZeroDivisionError" in broken.message


@pytest.mark.parametrize(
    ("make", "limits", "status", "words"),
    [
        # defect 1's 80,000,000 x 1 image: its resize asked for 1.2 TB
        (lambda: [_png((8000, 6000))], {}, 413, "more than max_image_pixels=40,000,000"),
        # defect 3: a 667-byte 200000 x 1 PNG took the worker to 4.7 GB
        (lambda: [_png((200_000, 1))], {}, 422, "max_image_aspect"),
        # defect 3: many large images in one request held the only worker for a minute
        (lambda: [_png((5000, 5000))] * 3, {}, 413, "max_request_pixels"),
        (lambda: [_png((100, 100))], {"max_image_pixels": 5000}, 413, "--max_image_pixels"),
    ],
)
def test_image_budgets_are_checked_from_the_header_before_decoding(
    images: tuple, make, limits: dict, status: int, words: str
) -> None:
    model, dm, good = images
    api = PredictionAPI(model, dm, limits=Limits(**limits))
    encoded = [base64.b64encode(b).decode() for b in make()]
    decoded = api.decode_request({"inputs": encoded})
    assert isinstance(decoded, _Rejected), decoded
    assert decoded.status == status and words in decoded.message, decoded.message
    uploaded = api.decode_files(make())  # files sent as the body or a form: the same budgets
    assert isinstance(uploaded, _Rejected), uploaded
    assert uploaded.status == status and words in uploaded.message, uploaded.message
    # good images still pass, and are answered, however they were sent
    raw = api.decode_request({"inputs": [base64.b64encode(good[0]).decode()]})
    (answer,) = api.predict([raw])
    assert len(answer) == 1 and answer[0]["label"] in dm.classes
    assert api.predict([api.decode_files([good[0]])]) == [answer]


def _png_header(width: int, height: int) -> bytes:
    """A PNG that says it is ``width x height`` and holds no pixel data: PIL reads its size."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def test_an_image_over_pils_bomb_limit_is_a_413_naming_the_flag(images: tuple) -> None:
    # issue 29, defect 8: 400 M pixels (over PIL's limit) got a 422 in PIL's words, and raising
    # --max_image_pixels did not help
    model, dm, _ = images
    huge = base64.b64encode(_png_header(20_000, 20_000)).decode()
    rejected = PredictionAPI(model, dm).decode_request({"inputs": [huge]})
    assert rejected.status == 413 and "--max_image_pixels" in rejected.message, rejected.message
    budget = {"max_image_pixels": 500_000_000, "max_request_pixels": 500_000_000}
    before = Image.MAX_IMAGE_PIXELS
    try:
        raised = PredictionAPI(model, dm, limits=Limits(**budget))
        answer = raised.decode_request({"inputs": [huge]})
        assert not isinstance(answer, _Rejected), answer  # within the budget the user set
        encoded = raised.encode_request(answer)  # refused for its missing pixels, not its size
        assert isinstance(encoded, _Rejected) and encoded.status == 422, encoded
        assert "decompression" not in encoded.message.lower(), encoded.message
    finally:
        Image.MAX_IMAGE_PIXELS = before  # the server's process-wide setting, undone for the tests


def test_an_undecodable_image_names_itself_without_python_object_reprs(images: tuple) -> None:
    # defect 6: messages showed <_io.BytesIO object at 0x...>
    model, dm, _ = images
    api = PredictionAPI(model, dm)
    (rejected,) = api.predict([_Raw([b"BM not really a bitmap" * 4])])
    assert rejected.status == 422 and "input 0: not a usable image" in rejected.message
    assert "object at 0x" not in rejected.message


def test_an_image_in_json_is_read_in_each_documented_form_and_bad_base64_is_named(
    images: tuple,
) -> None:
    model, dm, good = images
    api = PredictionAPI(model, dm)
    text = base64.b64encode(good[0]).decode()
    forms = [text, f"data:image/jpeg;base64,{text}", {"image": text}, {"data": text}]
    raw = api.decode_request({"inputs": forms})
    assert isinstance(raw, _Raw) and raw.inputs == [good[0]] * 4
    answers = api.predict([raw])[0]
    assert len(answers) == 4 and all(a == answers[0] for a in answers)
    for number, bad in enumerate([text[:-1], text[:40] + "!" + text[41:], "é" + text, 7]):
        rejected = api.decode_request({"inputs": [text] * number + [bad]})
        assert isinstance(rejected, _Rejected) and rejected.status == 422, rejected
        assert rejected.message.startswith(f"input {number}: "), rejected.message
        expected = "an image is a base64 string" if bad == 7 else "not valid base64"
        assert expected in rejected.message, rejected.message


@pytest.mark.parametrize("tokenizer", ["simple", "spacy"])
def test_a_text_without_spaces_is_cut_before_tokenising_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tokenizer: str
) -> None:
    # issue 29, defect 4: 1,000,000 characters of "a," were tokenised in full (6.4 s a request)
    from dlzoo.data.preprocess import text as text_module

    prep = TextPreprocessor(["<unk>", "<pad>", "a", ","], tokenizer, max_length=50)
    seen: list[int] = []
    tokenize = text_module.tokenize
    monkeypatch.setattr(
        text_module, "tokenize", lambda t, *a: seen.append(len(t)) or tokenize(t, *a)
    )
    for poison in ("a," * 500_000, "a" * 1_000_000, "," * 1_000_000):
        seen.clear()
        (ids,) = prep.encode([poison])
        assert max(seen) <= text_module.MAX_CUT_CHARS  # never the whole million
        (short,) = prep.encode([poison[:5_000]])
        assert ids.tolist() == short.tolist()  # the tokens kept are the text's own first 50


def test_text_is_cut_before_tokenising_and_max_length_keeps_its_meaning(tmp_path: Path) -> None:
    make_reviews(80).to_csv(tmp_path / "reviews.csv", index=False)
    dm = TextClassificationDataModule(
        train_file=str(tmp_path / "reviews.csv"),
        tokenizer="simple",
        max_length=12,
        cache_dir=str(tmp_path / "cache"),
    )
    dm.setup("fit")
    prep = dm.preprocessor
    long_text = " ".join(["great film <br /> a plot, it was dull."] * 200_000)  # ~8 MB
    part = prep.bounded(long_text)
    assert len(part) < 2_000  # what is tokenised: a few hundred characters, not 8 MB
    head = " ".join(long_text[:5_000].split(" ")[:-1])
    assert prep.encode([long_text])[0].tolist() == prep.encode([head])[0].tolist()
    for text in ("short text", long_text[:190], "x" * 3_000 + " great"):  # nothing to cut
        (uncut,) = prep.token_ids([text])
        assert prep.encode([text])[0].tolist() == prep.cut(uncut)
    prep.truncation = "tail"
    assert prep.encode([long_text])[0].tolist() == prep.encode([long_text[-5_000:]])[0].tolist()
    model = ImprovedRNN(vocab_size=len(prep.vocab), embedding_dim=4, hidden_size=4)
    api = PredictionAPI(model, dm, limits=Limits(max_text_chars=1_000))
    rejected = api.decode_request({"inputs": ["ok", "y" * 1_001]})
    assert rejected.status == 413 and "input 1 has 1,001 characters" in rejected.message
    assert "--max_text_chars" in rejected.message


def _client(api: PredictionAPI) -> TestClient:
    return TestClient(build_app(api), raise_server_exceptions=False)


def test_the_http_app_refuses_malformed_requests_with_4xx_and_answers_health(
    tabular: tuple,
) -> None:
    # defect 6: 100,000-deep JSON was a 500, any Content-Type was parsed as JSON, HEAD /health
    # was a 405, and /docs, /openapi.json and /info were exposed
    model, dm, rows = tabular
    with _client(PredictionAPI(model, dm)) as client:
        deep = '{"inputs": ' + "[" * 100_000 + "]" * 100_000 + "}"
        answer = client.post("/predict", content=deep, headers={"content-type": "application/json"})
        assert answer.status_code == 400 and "nested too deeply" in answer.json()["detail"]
        body = json.dumps({"inputs": rows[:1]})
        answer = client.post("/predict", content=body, headers={"content-type": "text/plain"})
        assert answer.status_code == 415 and "application/json" in answer.json()["detail"]
        answer = client.post(
            "/predict", content=body, headers={"content-type": "application/json; charset=utf-8"}
        )
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 1
        assert client.head("/health").status_code == 200
        assert client.get("/health").text == "ok"
        for path in ("/docs", "/openapi.json", "/info"):
            assert client.get(path).status_code == 404
        bad = {**rows[0], "x1": float("inf")}
        answer = client.post(
            "/predict",
            content=json.dumps({"inputs": [bad]}),
            headers={"content-type": "application/json"},
        )
        assert answer.status_code == 422 and "np.float64" not in answer.json()["detail"]
        assert "'x1' holds a non-finite or huge value inf" in answer.json()["detail"]


def test_huge_integers_and_deep_lists_in_json_get_a_400_on_either_host(tabular: tuple) -> None:
    # issue 29, defect 6: an integer of over 4,300 digits was a 500 with a traceback on both
    # hosts; a list 900 deep passed the check and broke LitServe (RecursionError)
    model, dm, rows = tabular
    huge = '{"inputs": [' + "9" * 5_000 + "]}"
    deep = '{"inputs": ' + "[" * 900 + "]" * 900 + "}"
    headers = {"content-type": "application/json"}
    with _client(PredictionAPI(model, dm)) as client:
        answer = client.post("/predict", content=huge, headers=headers)
        assert answer.status_code == 400 and "4,300 digits" in answer.json()["detail"]
        answer = client.post("/predict", content=deep, headers=headers)
        assert answer.status_code == 400 and "nested too deeply" in answer.json()["detail"]
        good = client.post("/predict", content=json.dumps({"inputs": rows[:1]}), headers=headers)
        assert good.status_code == 200  # the server answers the next request as before

    async def ok(request):
        return PlainTextResponse("ok")

    litserve_like = RequestChecks(Starlette(routes=[Route("/predict", ok, methods=["POST"])]))
    with TestClient(litserve_like) as client:  # the middleware LitServe's host gets
        for body, reason in ((huge, "4,300 digits"), (deep, "nested too deeply")):
            answer = client.post("/predict", content=body, headers=headers)
            assert answer.status_code == 400 and reason in answer.json()["detail"]


def test_health_says_not_ready_when_the_inference_loop_is_gone(tabular: tuple) -> None:
    model, dm, _ = tabular
    with _client(PredictionAPI(model, dm)) as client:
        assert client.get("/health").status_code == 200
        client.app.state.batcher.tasks[0].cancel()
        answer = client.get("/health")
        assert answer.status_code == 503 and "not running" in answer.text


def test_request_checks_refuse_an_unknown_content_type_under_litserve_too() -> None:
    async def ok(request):
        return PlainTextResponse("ok")

    app = RequestChecks(Starlette(routes=[Route("/predict", ok, methods=["POST"])]))
    with TestClient(app) as client:
        answer = client.post("/predict", content=b"a=1", headers={"content-type": "text/csv"})
        assert answer.status_code == 415
        answer = client.post("/predict", content=b'{"inputs": [1]}')  # no type: JSON
        assert answer.status_code == 200


def test_request_checks_hand_uploads_on_as_bytes_or_as_base64_json() -> None:
    async def echo(request):
        files = request.scope.get("dlzoo.files")
        if files is not None:
            return JSONResponse({"files": [f.decode() for f in files]})
        return JSONResponse({"json": await request.json()})

    def client(**kwargs) -> TestClient:
        routes = [Route("/predict", echo, methods=["POST"])]
        return TestClient(RequestChecks(Starlette(routes=routes), **kwargs))

    upload = {"f": ("a.jpg", b"AB"), "g": ("b.png", b"CD")}
    with client(keep_files=True) as dlzoo_host:  # dlzoo's host reads the bytes as they are
        answer = dlzoo_host.post("/predict", content=b"AB", headers={"content-type": "image/jpeg"})
        assert answer.json() == {"files": ["AB"]}
        assert dlzoo_host.post("/predict", files=upload).json() == {"files": ["AB", "CD"]}
    with client() as litserve_host:  # LitServe parses the body: uploads become base64 JSON
        answer = litserve_host.post(
            "/predict", content=b"AB", headers={"content-type": "image/png"}
        )
        assert answer.json() == {"json": {"inputs": [base64.b64encode(b"AB").decode()]}}
    with client(keep_files=True, max_inputs=2) as two_at_most:  # as many files as inputs
        many = [("f", (f"{i}.jpg", b"AB")) for i in range(3)]
        answer = two_at_most.post("/predict", files=many)
        assert answer.status_code == 413, answer.text
        assert "too many inputs in one request: 3, at most 2" in answer.json()["detail"]
        assert "--max_inputs" in answer.json()["detail"]
    with client(files=False, keep_files=True) as json_only:  # a model that takes no files
        answer = json_only.post("/predict", files=upload)
        assert answer.status_code == 415 and "this model takes JSON" in answer.json()["detail"]


def _answers(api: PredictionAPI, inputs: list) -> list[dict]:
    (rows,) = api.predict([_Raw(list(inputs))])
    return rows


def _assert_same_answers(got: list[dict], expected: list[dict]) -> None:
    assert [r.get("label") for r in got] == [r.get("label") for r in expected]
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(
            list(a["probabilities"].values()), list(b["probabilities"].values()), atol=1e-5
        )


def test_onnxruntime_serving_answers_as_torch_does(tabular: tuple, images: tuple, tmp_path) -> None:
    for model, dm, raw in (tabular, images):
        torch_api = PredictionAPI.for_model(model, dm, runtime="torch")
        onnx_api = PredictionAPI.for_model(model, dm, runtime="onnxruntime", threads=1)
        assert isinstance(torch_api.runtime, TorchRuntime)
        assert isinstance(onnx_api.runtime, OnnxRuntime)
        expected = _answers(torch_api, raw)
        _assert_same_answers(_answers(onnx_api, raw), expected)
        # and from the exported bundle alone, its preprocessor rebuilt from the JSON
        folder = tmp_path / type(model).__name__
        export_model(model, dm, folder)
        bundle_api = PredictionAPI.for_bundle(folder, threads=1)
        _assert_same_answers(_answers(bundle_api, raw), expected)


def _submit_together(api: PredictionAPI, bodies: list[dict], timeout: float = 20.0) -> list:
    """``bodies`` submitted at once to a worker's batcher (what ``dlzoo serve`` runs per worker)."""

    async def together() -> list:
        batcher = Batcher(api, timeout)
        batcher.start()
        try:
            requests = [api.decode_request(body) for body in bodies]
            return await asyncio.gather(*(batcher.submit(r) for r in requests))
        finally:
            batcher.stop()

    return asyncio.run(together())


@pytest.mark.parametrize("instances", [1, 2])
def test_instances_run_batches_at_once_each_single_threaded(tabular: tuple, instances: int) -> None:
    model, dm, rows = tabular
    api = PredictionAPI.for_model(
        model, dm, runtime="onnxruntime", threads=2, instances=instances, max_batch_size=1
    )
    api.setup("cpu")
    options = api.runtime.session._session.get_session_options()
    assert options.intra_op_num_threads == 2 // instances
    # each batch waits until two run at once: only two instances can answer both
    together = threading.Barrier(2, timeout=3)
    run = api.runtime.session.run

    def run_when_two_are_running(feed: dict) -> dict:
        together.wait()
        return run(feed)

    api.runtime.session.run = run_when_two_are_running
    answers = _submit_together(api, [{"inputs": [row]} for row in rows[:2]])
    if instances == 2:
        assert [len(a) for a in answers] == [1, 1] and {"label"} <= set(answers[0][0])
    else:  # one instance: the first batch waited alone
        assert any(isinstance(a, _Rejected) and a.status == 500 for a in answers), answers


def test_images_are_encoded_per_request_before_batching(images: tuple, tabular: tuple) -> None:
    model, dm, good = images
    api = PredictionAPI.for_model(model, dm, runtime="torch")
    assert Batcher(api, 1.0).encoder is not None  # images: encoded as they come
    batches: list[int] = []
    predict = api.predict

    def counted(requests: list) -> list:
        batches.append(len(requests))
        return predict(requests)

    api.predict = counted
    bad = base64.b64encode(b"GIF89a but no image").decode()
    bodies = [{"inputs": [base64.b64encode(g).decode()]} for g in good] + [{"inputs": [bad]}]
    *answers, rejected = _submit_together(api, bodies)
    assert all(len(a) == 1 and a[0]["label"] in dm.classes for a in answers)
    assert rejected.status == 422 and "input 0: not a usable image" in rejected.message
    assert sum(batches) == len(good)  # the bad request never reached a batch
    # rows cost less encoded together: they are encoded with their batch
    assert Batcher(PredictionAPI(tabular[0], tabular[1]), 1.0).encoder is None


@pytest.mark.parametrize(("cutoff_ms", "instances"), [(0.0, 2), (float("inf"), 1)])
def test_auto_instances_time_one_input_on_one_thread(
    tabular: tuple, monkeypatch: pytest.MonkeyPatch, cutoff_ms: float, instances: int
) -> None:
    # auto: a network whose one input takes >= AUTO_INSTANCES_MS gets an instance per thread
    monkeypatch.setattr(runtime_module, "AUTO_INSTANCES_MS", cutoff_ms)
    model, dm, rows = tabular
    api = PredictionAPI.for_model(model, dm, runtime="onnxruntime", threads=2)
    assert api.runtime.instances is None
    api.setup("cpu")
    assert api.runtime.instances == instances
    options = api.runtime.session._session.get_session_options()
    assert options.intra_op_num_threads == 2 // instances
    assert Batcher(api, 1.0).instances == instances
    (answer,) = api.predict([_Raw(rows[:2])])
    assert len(answer) == 2


def _held(function, release: threading.Event):
    """``function``, made to wait (up to 10 s) until ``release`` is set."""

    def held(*args):
        release.wait(10)
        return function(*args)

    return held


def test_requests_still_running_when_the_drain_timeout_ends_get_a_503_naming_it(
    tabular: tuple, caplog: pytest.LogCaptureFixture
) -> None:
    # issue 29, defect 8: uvicorn cancels what is left when --drain_timeout runs out, and each
    # such request got a 500 and a traceback in the log
    import socket
    import time
    import urllib.error
    import urllib.request

    import uvicorn

    model, dm, rows = tabular
    api = PredictionAPI(model, dm)
    release = threading.Event()
    api.predict = _held(api.predict, release)  # still running when the drain ends
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        build_app(api), host="127.0.0.1", port=port, log_level="warning",
        timeout_graceful_shutdown=0.5, lifespan="on",
    )  # fmt: skip
    server = uvicorn.Server(config)
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    answer: dict = {}

    def send() -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            data=json.dumps({"inputs": rows[:1]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                answer["status"] = response.status
        except urllib.error.HTTPError as err:
            answer["status"], answer["body"] = err.code, err.read().decode()
        except OSError as err:  # the connection closed without an answer
            answer["status"], answer["error"] = None, repr(err)

    client = threading.Thread(target=send)
    with caplog.at_level(logging.ERROR):
        client.start()
        time.sleep(0.5)  # the request is in the slow batch
        server.should_exit = True  # what SIGTERM does in a worker
        client.join(20)
        release.set()
        serving.join(20)
    assert answer["status"] == 503, answer
    assert "--drain_timeout" in json.loads(answer["body"])["detail"]
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_health_tells_when_encoding_one_request_takes_longer_than_the_timeout(
    images: tuple,
) -> None:
    # issue 29, defect 4: the worker's one encoding thread could be kept busy while /health
    # said ok; now it says which stage is stuck, as it does for a batch
    model, dm, files = images
    api = PredictionAPI(model, dm)
    release = threading.Event()
    api.encode_request = _held(api.encode_request, release)

    async def scenario() -> tuple:
        batcher = Batcher(api, 0.3)
        assert batcher.encoder is not None  # images are encoded per request
        batcher.start()
        try:
            answer = asyncio.create_task(batcher.submit(api.decode_files(files[:1])))
            await asyncio.sleep(0.5)
            busy = batcher.health()
            release.set()
            rejected = await answer
            await asyncio.sleep(0.1)
            return busy, rejected, batcher.health()
        finally:
            release.set()
            batcher.stop()

    busy, rejected, after = asyncio.run(scenario())
    assert busy is not None and "encoding a request" in busy and "0.3 s" in busy
    assert rejected.status == 504  # the client got its answer at the timeout, not a hang
    assert after is None  # ready again once the encoding ended


def test_serving_without_batching_says_nothing_misleading(tabular: tuple) -> None:
    # LitServe warns "max_batch_size was not set" at max_batch_size=1 because PredictionAPI
    # defines batch/unbatch; 1 is how a user turns batching off (--max_batch_size 1)
    import warnings

    model, dm, rows = tabular
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        api = PredictionAPI.for_model(model, dm, runtime="torch", max_batch_size=1)
    assert api.max_batch_size == 1
    assert len(_answers(api, rows[:2])) == 2
