"""Requests that break the parser are refused alone (issue 18, defect 1), in-process: the code
``dlzoo serve`` runs for a batch of requests, without starting a server."""

from __future__ import annotations

from pathlib import Path

from conftest import make_frame
from dlzoo.data import TabularDataModule
from dlzoo.deploy.serve import PredictionAPI, _Raw, _Rejected
from dlzoo.models import FeedForwardNet


def test_a_request_that_overflows_the_parser_fails_alone(tmp_path: Path) -> None:
    # a 400-digit number raised OverflowError in pandas, which the API did not catch, and
    # every request batched with it answered 500
    make_frame(n=120).to_csv(tmp_path / "rows.csv", index=False)
    dm = TabularDataModule(filename=str(tmp_path / "rows.csv"), target="target")
    model = FeedForwardNet(num_features=dm.num_features, hidden_sizes=[8]).eval()
    good = make_frame(n=2, seed=5).drop(columns="target").to_dict("records")
    bad = [{**good[0], "x1": int("9" * 400)}]  # what JSON parses a 400-digit number to
    api = PredictionAPI(model, dm)
    first, rejected, last = api.predict([_Raw(good), _Raw(bad), _Raw(good)])
    (alone,) = api.predict([_Raw(good)])
    assert first == alone and last == alone  # good answers, equal to a batch of their own
    assert isinstance(rejected, _Rejected) and rejected.status == 422
    assert "x1" in rejected.message
