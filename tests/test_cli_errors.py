"""The CLI's error paths: one line that names the problem, before anything is written."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_dirs, write_config
from dlzoo.cli import main

RECIPES = REPO / "src" / "dlzoo" / "recipes"


def run_command(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys) -> tuple[int, str]:
    """``main()`` as the console script calls it (sys.argv); its exit status and stderr."""
    monkeypatch.setattr(sys, "argv", ["dlzoo", *args])
    try:
        main()
        status = 0
    except SystemExit as exit:
        status = exit.code if isinstance(exit.code, int) else 1
    return status, capsys.readouterr().err


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "error" in line.lower()]


def test_a_mistyped_option_prints_the_error_first_and_little_usage(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    status, err = run_command(
        ["fit", "--config", str(config_file), "--trainer.max_epocs", "2"], monkeypatch, capsys
    )
    lines = err.strip().splitlines()
    assert status == 2
    assert lines[0] == "dlzoo fit: error: unrecognized arguments: --trainer.max_epocs 2"
    assert len(lines) <= 3 and "dlzoo fit --help" in lines[-1]


def test_a_bad_value_names_the_option_first(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    status, err = run_command(
        ["fit", "--config", str(config_file), "--model.init_args.dropout", "abc"],
        monkeypatch,
        capsys,
    )
    assert status == 2
    assert err.startswith("dlzoo fit: error:") and "dropout" in err and "abc" in err
    assert len(err.strip().splitlines()) <= 14


def test_a_yaml_syntax_error_is_one_line_naming_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  class_path: ffn\n  init_args: {hidden_sizes: [8}\n")
    status, err = run_command(["fit", "--config", str(bad)], monkeypatch, capsys)
    assert status == 1
    (line,) = _error_lines(err)
    assert line.startswith(f"dlzoo: error: {bad} is not valid YAML") and "line 3" in line
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A one-cycle FFN fit for 2 epochs: its config and last checkpoint."""
    from conftest import make_frame

    root = tmp_path_factory.mktemp("fitted")
    csv = root / "train.csv"
    make_frame().to_csv(csv, index=False)
    config = write_config(root / "config.yaml", csv, root / "runs", max_epochs=2)
    settings = yaml.safe_load(config.read_text())
    settings["model"]["init_args"]["lr_scheduler"] = "onecycle"
    config.write_text(yaml.safe_dump(settings))
    main(["fit", "--config", str(config), "--trainer.enable_progress_bar", "false"])
    (run,) = run_dirs(root / "runs")
    return config, run / "checkpoints" / "last.ckpt"


def test_resuming_a_one_cycle_run_longer_is_refused_before_anything_is_written(
    fitted: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    config, last = fitted
    runs = last.parents[2]
    before = sorted(p.name for p in runs.iterdir())
    status, err = run_command(
        ["fit", "--config", str(config), "--ckpt_path", str(last), "--trainer.max_epochs", "5"],
        monkeypatch,
        capsys,
    )
    assert status == 1
    (line,) = _error_lines(err)
    assert "one-cycle" in line and "planned for 2 epochs" in line and "max_epochs 2" in line
    assert sorted(p.name for p in runs.iterdir()) == before  # no new version_N folder


def test_a_checkpoint_of_another_model_names_both_classes(
    fitted: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    config, last = fitted
    args = ["validate", "--config", str(config), "--ckpt_path", str(last)]
    status, err = run_command(
        [*args, "--model", "convnet", "--trainer.default_root_dir", str(tmp_path)],
        monkeypatch,
        capsys,
    )
    assert status == 1
    (line,) = _error_lines(err)
    assert "holds a FeedForwardNet checkpoint" in line and "asks for ConvNet" in line


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all\n" * 20, "truncated"])
def test_an_unreadable_checkpoint_is_one_line(
    content: bytes | str,
    fitted: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
) -> None:
    config, last = fitted
    broken = tmp_path / "broken.ckpt"
    data = last.read_bytes()
    broken.write_bytes(data[: len(data) // 2] if content == "truncated" else content)
    status, err = run_command(
        ["validate", "--config", str(config), "--ckpt_path", str(broken)], monkeypatch, capsys
    )
    assert status == 1
    (line,) = _error_lines(err)
    assert f"{broken}" in line and ("not a readable checkpoint" in line or "is empty" in line)
    assert "weights_only" not in err and "Traceback" not in err


def test_shipped_recipes_are_the_readable_copies_in_examples() -> None:
    shipped = {p.name: p.read_text() for p in RECIPES.glob("*.yaml")}
    copies = {p.name: p.read_text() for p in (REPO / "examples" / "configs").glob("*.yaml")}
    assert shipped and shipped == copies


def test_config_takes_a_recipe_by_name_and_a_path_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["fit", "--config", "bank_ffn", "--print_config"])
    assert "BankMarketingDataModule" in capsys.readouterr().out
    (tmp_path / "bank_ffn.yaml").write_text(
        "model:\n  class_path: ffn\n  init_args:\n    hidden_sizes: [7]\ndata: bank_marketing\n"
    )
    with pytest.raises(SystemExit):
        main(["fit", "--config", "bank_ffn.yaml", "--print_config"])
    assert "- 7" in capsys.readouterr().out  # the local file, not the recipe
    status, err = run_command(["fit", "--config", "bank_fnn"], monkeypatch, capsys)
    assert status == 1 and "no recipe of that name" in err and "bank_ffn" in err


def test_dlzoo_recipes_lists_every_shipped_recipe(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["dlzoo", "recipes"])
    main()
    out = capsys.readouterr().out
    for path in RECIPES.glob("*.yaml"):
        assert f"  {path.stem} " in out


def test_a_value_the_model_refuses_is_its_own_one_line_not_a_union_dump(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # the model's constructor raises; jsonargparse wrapped that in "Does not validate against
    # any of the Union subtypes" with the whole configuration after it
    monkeypatch.chdir(tmp_path)
    # dlzoo's log handler, made afresh on this test's stderr (not an earlier test's)
    monkeypatch.setattr(logging.getLogger("dlzoo"), "handlers", [])
    args = ["fit", "--config", "bank_tabm", "--model.init_args.dropout", "1.5"]
    status, err = run_command(args, monkeypatch, capsys)
    lines = err.strip().splitlines()
    assert status == 1
    assert lines[-2:] == [
        "dlzoo: error: dropout must be in [0, 1), got 1.5",
        "(DLZOO_TRACEBACK=1 shows where it happened)",
    ]
    assert len(lines) == 3 and "Union" not in err  # after the line that names the task
    assert not (tmp_path / "runs").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("given", "first"),
    [
        (["--max_inputz", "3"], "unrecognized arguments: --max_inputz 3"),
        (["--max_inputs", "abc"], 'Parser key "max_inputs":'),
    ],
)
def test_serving_a_bundle_reads_its_errors_first_as_every_subcommand_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, given: list[str], first: str
) -> None:
    """``dlzoo serve --bundle`` has its own parser (no Lightning): a mistyped option is said in
    the first line, not after 12 lines of usage."""
    from dlzoo.__main__ import main as dlzoo_main

    monkeypatch.setattr(sys, "argv", ["dlzoo", "serve", "--bundle", str(tmp_path), *given])
    with pytest.raises(SystemExit) as exit:
        dlzoo_main()
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit.value.code == 2
    assert lines[0] == f"dlzoo serve: error: {first}"
    assert len(lines) <= 3
    assert lines[-1] == (
        "usage: dlzoo serve --bundle DIR [options]; "
        "'dlzoo serve --bundle DIR --help' lists every option"
    )


@pytest.mark.parametrize("beside", [True, False])
def test_a_checkpoint_given_without_its_config_is_told_where_the_config_is(
    tmp_path: Path, beside: bool
) -> None:
    """``dlzoo predict --ckpt_path RUN/checkpoints/last.ckpt`` alone does not say which model and
    data: the error names the run's config (dlzoo fit wrote it beside ``checkpoints/``), instead
    of jsonargparse's "arguments are required: predict.data, predict.model"."""
    run = tmp_path / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = run / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(b"")
    if beside:
        (run / "config.yaml").write_text("model: ffn\n")
    expected = (
        f"dlzoo predict --ckpt_path needs the run's config: add --config {run / 'config.yaml'}"
        if beside
        else "dlzoo predict --ckpt_path needs the run's config (--config RUN/config.yaml, which "
        "dlzoo fit writes in the run folder) or --model and --data"
    )
    for given in (["--ckpt_path", str(ckpt)], [f"--ckpt_path={ckpt}", "--data.batch_size", "8"]):
        with pytest.raises(ValueError) as error:
            main(["predict", *given])
        assert str(error.value) == expected


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        (["--trainer.accelerator", "mps"], "`MPSAccelerator` can not run on your system"),
        (["--trainer.devices", "0"], "`Trainer(devices='0')` value is not a valid input"),
    ],
)
def test_a_trainer_setting_this_machine_cannot_run_is_one_line(
    config_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
    setting: list[str],
    said: str,
) -> None:
    """Lightning refuses these while building the Trainer (``MisconfigurationException``): the
    command says so in one line, as for any other config mistake, not with a traceback."""
    monkeypatch.setattr(logging.getLogger("dlzoo"), "handlers", [])  # a new stderr each test
    root = ["--trainer.default_root_dir", str(tmp_path / "runs")]
    status, err = run_command(
        ["fit", "--config", str(config_file), *setting, *root], monkeypatch, capsys
    )
    assert status == 1
    errors = [line for line in err.splitlines() if line.startswith("dlzoo: error: ")]
    assert len(errors) == 1 and said in errors[0]
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing written
