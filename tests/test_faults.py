"""Faults a user meets, each one ``dlzoo: error`` line rather than a traceback or a server that
refuses everything (issue 29, defect 7)."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import pytest

from dlzoo.checkpoints import CheckpointError, read_checkpoint
from dlzoo.cli import main
from dlzoo.deploy import ServerError
from dlzoo.deploy.host import bind
from dlzoo.deploy.requests import Limits
from dlzoo.models import FeedForwardNet


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--workers", "0", "--workers must be a whole number of at least 1"),
        ("--workers", "-2", "--workers must be a whole number of at least 1"),
        ("--port", "70000", "--port must be a TCP port from 0 to 65535"),
        ("--timeout", "0", "--timeout must be above 0 seconds"),
        ("--max_inputs", "0", "--max_inputs must be a whole number of at least 1"),
        ("--max_request_mb", "-1", "--max_request_mb must be above 0"),
    ],
)
def test_serving_options_no_server_can_run_with_are_refused_before_loading(
    tmp_path: Path, flag: str, value: str, says: str
) -> None:
    # the bundle folder does not even exist: the options are refused first
    with pytest.raises(ValueError, match=says):
        main(["serve", "--bundle", str(tmp_path / "no-bundle"), flag, value])


def test_serve_options_are_declared_once_and_both_entry_points_offer_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # one declaration (ServeOptions, which holds the budgets of Limits): the config path's
    # signature forwards them (LightningCLI reads ServeOptions' fields and help through it),
    # and `dlzoo serve --bundle` has jsonargparse read them too: the same help on both
    import dataclasses
    import inspect

    from dlzoo.cli.trainer import DlzooTrainer
    from dlzoo.deploy.server import ServeOptions

    declared = {f.name: f.default for f in dataclasses.fields(ServeOptions)}
    assert {f.name for f in dataclasses.fields(Limits)} <= set(declared)
    assert not set(declared) & set(inspect.signature(DlzooTrainer.serve).parameters)
    for argv in (["serve", "--config", "bank_ffn", "--help"], ["serve", "--bundle", "x", "-h"]):
        with pytest.raises(SystemExit):
            main(argv)
        shown = " ".join(capsys.readouterr().out.split())
        for name, default in declared.items():
            default = "null" if default is None else default
            flag = rf"--{name} {name.upper()} "  # then its help, up to the next flag's
            text = rf"(?:(?!--\w+ [A-Z_]+ ).)*?default: {re.escape(str(default))}\)"
            assert re.search(flag + text, shown), (argv, name, default)
        assert "--port PORT the TCP port. (type: int, default: 8000)" in shown
    with pytest.raises(ValueError, match="--drain_timeout must be 0 seconds or more"):
        ServeOptions(drain_timeout=-1)
    with pytest.raises(ValueError, match="--max_inputs must be a whole number"):
        ServeOptions(max_inputs=0)  # a budget, checked as a serve option too


def test_budgets_of_zero_are_refused_from_python_too() -> None:
    with pytest.raises(ValueError, match="--max_text_chars must be a whole number"):
        Limits(max_text_chars=0)
    with pytest.raises(ValueError, match="--max_image_aspect must be 1 or more"):
        Limits(max_image_aspect=0.5)


def test_a_port_in_use_is_one_line_naming_it() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        with pytest.raises(ServerError, match=rf"cannot listen on 127\.0\.0\.1:{port}: .*--port"):
            bind("127.0.0.1", port)
    finally:
        taken.close()


def test_a_folder_or_a_text_file_as_checkpoint_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint"):
        read_checkpoint(tmp_path)
    text = tmp_path / "notes.ckpt"
    text.write_text("everything went well\n")  # torch's legacy reader: KeyError(101)
    with pytest.raises(CheckpointError, match="is not a readable checkpoint"):
        read_checkpoint(text)


def test_a_folder_as_ckpt_path_is_refused_by_the_command(config_file: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint"):
        main(["validate", "--config", str(config_file), "--ckpt_path", str(tmp_path)])


def test_weights_of_another_shape_are_one_line(tmp_path: Path) -> None:
    other = FeedForwardNet(num_features=5, hidden_sizes=[4]).state_dict()
    model = FeedForwardNet(num_features=3, hidden_sizes=[4])
    with pytest.raises(ValueError, match=r"do not fit FeedForwardNet as configured: size mismatch"):
        model.load_state_dict(other)


def test_an_abbreviated_option_is_refused_not_read_as_another(
    config_file: Path, capsys: pytest.CaptureFixture
) -> None:
    # `--trainer.max_epoch 1` was taken as a prefix of --trainer.max_epochs
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--config", str(config_file), "--trainer.max_epoch", "1"])
    assert stop.value.code == 2
    assert "--trainer.max_epoch" in capsys.readouterr().err


def test_an_image_folder_with_one_class_is_one_line_naming_it(tmp_path: Path) -> None:
    # the reason was on line 4 of a jsonargparse Union message ("num_classes must be at least 2")
    from conftest import write_image_tree

    root = write_image_tree(tmp_path / "pets", {"train": 4}, classes=("cats",))
    args = ["fit", "--model", "convnet", "--data", "image_folder"]
    args += ["--data.init_args.data_dir", str(root), "--data.init_args.image_size", "32"]
    with pytest.raises(ValueError, match=r"one class folder \('cats'\).*two or more"):
        main([*args, "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(tmp_path)])


def test_a_full_disk_during_fit_is_one_line(capsys: pytest.CaptureFixture) -> None:
    import errno

    from dlzoo.command import run_command

    def fit() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/best.ckpt")

    with pytest.raises(SystemExit) as stop:
        run_command(fit)
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "dlzoo: error: No space left on device writing /runs/best.ckpt: free some" in err
    assert "Traceback" not in err

    def bug() -> None:
        raise OSError(errno.EBADF, "Bad file descriptor")

    with pytest.raises(OSError, match="Bad file descriptor"):  # not a user's error: shown
        run_command(bug)


def test_a_killed_last_grid_point_is_failed_and_queued_outside_the_optimise_loop() -> None:
    """The points of a grid are all visited and one was left RUNNING by a killed process:
    failing it (``study.tell``) must not ask Optuna's grid to stop a study that is not
    optimising (``RuntimeError: Study.stop is supposed to be invoked inside an objective``)."""
    import optuna

    from dlzoo.sweep.storage import (
        HOST_KEY,
        PID_KEY,
        RETRY_KEY,
        _fail_dead_local_trials,
        _retrying_grid,
    )

    gone = subprocess.Popen(["true"])
    gone.wait()  # a process id that no longer runs
    study = optuna.create_study(sampler=_retrying_grid()({"lr": [0.1, 0.2]}, seed=0))
    doomed = study.ask()
    doomed.set_user_attr(HOST_KEY, socket.gethostname())
    doomed.set_user_attr(PID_KEY, gone.pid)
    finished = study.ask()
    study.tell(finished, 1.0)
    _fail_dead_local_trials(study)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states[:2] == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    assert study.get_trials(deepcopy=False)[2].state == optuna.trial.TrialState.WAITING
    queued = study.get_trials(deepcopy=False)[2]
    assert queued.user_attrs[RETRY_KEY] == doomed.number  # the killed point runs again


@pytest.mark.slow  # an Optuna sweep that trains its grid points
def test_a_killed_point_queued_again_runs_though_a_skipped_duplicate_holds_it(
    tmp_path: Path,
) -> None:
    """The CI failure of stop 30: a killed worker left its grid point RUNNING; the other worker
    finished the rest, skipped that point as a duplicate (PRUNED) and stopped. The next worker
    fails the killed trial and queues its point again: the duplicate never ran the point, so the
    queued one must run, not be skipped as "the same grid point" as the duplicate."""
    import optuna

    from conftest import grid_sweep
    from dlzoo.sweep import run_sweep
    from dlzoo.sweep.search import Search
    from dlzoo.sweep.storage import (
        DUPLICATE_KEY,
        HOST_KEY,
        PID_KEY,
        _not_optimising,
        _sampler,
    )

    lrs = [0.01, 0.02]
    _, root = grid_sweep(tmp_path, lrs)
    search = Search.from_file(tmp_path / "grid.yaml")
    (param,) = search.params
    root.mkdir()
    study = optuna.create_study(
        study_name="grid",
        storage=f"sqlite:///{root / 'study.db'}",
        sampler=_sampler(search),
        direction="maximize",
    )
    gone = subprocess.Popen(["true"])
    gone.wait()  # a process id that no longer runs
    killed = study.ask()  # left RUNNING by the killed worker
    killed.set_user_attr(HOST_KEY, socket.gethostname())
    killed.set_user_attr(PID_KEY, gone.pid)
    killed_lr = param.suggest(killed)
    other = study.ask()
    param.suggest(other)
    study.tell(other, 0.9)
    duplicate = study.ask()  # the grid's one unfinished point: the killed trial's
    assert param.suggest(duplicate) == killed_lr
    duplicate.set_user_attr(DUPLICATE_KEY, killed.number)
    with _not_optimising(study):  # the helper stopped here
        study.tell(duplicate, state=optuna.trial.TrialState.PRUNED)

    done = run_sweep(tmp_path / "run.yaml", tmp_path / "grid.yaml", root=root)
    complete = done.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert sorted(t.params[param.path] for t in complete) == lrs  # the killed point ran
