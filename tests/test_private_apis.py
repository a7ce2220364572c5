"""One test per entry of ``dlzoo.cli.private.PRIVATE_APIS``: each fails loudly when Lightning or
jsonargparse changes the private behaviour dlzoo relies on."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from jsonargparse import ArgumentParser
from lightning.pytorch.cli import LightningCLI

from dlzoo.cli import make_cli
from dlzoo.cli.main import DlzooCLI
from dlzoo.cli.private import PRIVATE_APIS
from dlzoo.models import FeedForwardNet


def test_every_private_api_has_a_test_here() -> None:
    assert len(PRIVATE_APIS) == 6  # one test below per entry: add one with each new entry


def test_lightning_cli_builds_subcommands_through_add_subcommands(
    monkeypatch: pytest.MonkeyPatch, config_file: Path
) -> None:
    calls = []
    original = DlzooCLI._add_subcommands

    def spy(self, parser, **kwargs):
        original(self, parser, **kwargs)
        calls.append(sorted(self._subcommand_parsers))

    monkeypatch.setattr(DlzooCLI, "_add_subcommands", spy)
    with pytest.raises(SystemExit):
        make_cli(["fit", "--config", str(config_file), "--print_config"])
    assert calls == [["fit"]]  # Lightning called it, and dlzoo built one parser


def test_lightning_cli_calls_parse_ckpt_path_and_has_subcommand_parsers() -> None:
    import inspect

    source = inspect.getsource(LightningCLI)
    assert "self._parse_ckpt_path()" in source, "LightningCLI no longer calls _parse_ckpt_path"
    assert "self._subcommand_parsers" in source, "LightningCLI has no _subcommand_parsers"


def test_cli_checkpoints_record_the_model_class_path(config_file: Path, tmp_path: Path) -> None:
    from conftest import run_dirs
    from dlzoo.cli import main

    main(["fit", "--config", str(config_file), "--trainer.max_epochs", "1"])
    (run,) = run_dirs(tmp_path / "runs")
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["_class_path"].endswith("FeedForwardNet")


def test_hparams_live_in_the_private_dicts_keep_own_hparams_edits() -> None:
    model = FeedForwardNet(num_features=3)
    assert model._hparams is model.hparams
    assert "num_features" in model._hparams_initial


def test_jsonargparse_wraps_link_errors_with_compute_fn_of_link() -> None:
    class Source:
        def __init__(self, size: int = 1) -> None:
            self.size = size

    class Target:
        def __init__(self, width: int = 1) -> None:
            self.width = width

    def broken(source: Source) -> int:
        raise FileNotFoundError("the data is missing")

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(Source, "source")
    parser.add_class_arguments(Target, "target")
    parser.link_arguments("source", "target.width", compute_fn=broken, apply_on="instantiate")
    with pytest.raises(ValueError, match="compute_fn of link") as caught:
        parser.instantiate_classes(parser.parse_args([]))
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_pl_module_is_importable_for_the_cli() -> None:
    assert issubclass(DlzooCLI, LightningCLI) and pl.LightningModule
