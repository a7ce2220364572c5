"""The ``dlzoo`` command: LightningCLI with dlzoo's defaults and argument links.

``dlzoo fit --config examples/configs/bank_ffn.yaml`` trains; ``validate``, ``test`` and
``predict`` take ``--ckpt_path``. Every artifact of a run (checkpoints, ``metrics.csv``,
``config.yaml``, plots, predictions) lands in ``<default_root_dir>/lightning_logs/version_<N>/``.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import warnings
from argparse import RawDescriptionHelpFormatter
from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import yaml
from jsonargparse import ArgumentParser, DefaultHelpFormatter
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar, TQDMProgressBar
from lightning.pytorch.cli import (
    ArgsType,
    LightningArgumentParser,
    LightningCLI,
    SaveConfigCallback,
)
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from dlzoo.callbacks import (
    EpochSeed,
    PredictionWriter,
    ProgressBar,
    RunArtifacts,
)
from dlzoo.cli.checkpoint import (
    AtomicCheckpointIO,
    RunCheckpoint,
    checkpoint_model_class,
    read_checkpoint,
    refuse_a_checkpoint_without_its_run,
    refuse_stretched_schedule,
)
from dlzoo.cli.names import expand_registered_names, recipes_text, registered_help
from dlzoo.cli.trainer import DlzooTrainer, default_loggers
from dlzoo.command import run_command, show_dlzoo_logs
from dlzoo.data.base import DataModule
from dlzoo.models.base import TASK_SETTINGS, TaskModule
from dlzoo.parsing import ErrorFirst
from dlzoo.registry import init_arguments, load_builtins
from dlzoo.tasks import Task, classification_task, get_task

#: subcommands that use a trained model (they need --ckpt_path and leave its run as it is)
EVALUATING = ("validate", "test", "predict", "export", "serve")

#: what a DataModule describes of its data and a model is built with (each where the model
#: class takes it): the task, sizes, classes or targets, target scaling, vocabulary and vectors
DESCRIBED = (
    "task",
    "num_features",
    "num_classes",
    "num_targets",
    "target_names",
    "target_transform",
    "input_shape",
    "vocab_size",
    "pad_index",
    "pretrained_embeddings",
    "max_length",
    "category_sizes",
)


class DlzooArgumentParser(ErrorFirst, LightningArgumentParser):
    """LightningCLI's parser, whose errors read error-first: the one line that says what is
    wrong, then a short usage line and where the full help is (not 90 lines of usage first)."""


class DlzooCLI(LightningCLI):
    """LightningCLI with dlzoo's checkpoints and callbacks, the run built in one place.

    :meth:`instantiate_classes` builds a run in this order: the DataModule; its fitted state
    from ``--ckpt_path`` (scaler, category maps, vocabulary, classes) or its ``prepare_data()``;
    its description (task, sizes, classes, target scaling: what the model class takes of
    :data:`DESCRIBED`); the model from the config and that description; the best checkpoint's
    monitor from the model's task; the Trainer. With ``--ckpt_path``, the model's arguments are
    the checkpoint's (only those its class takes; only a class registered in dlzoo or named by
    the config is imported). LightningCLI's public extension points are used, and the private
    behaviours listed in :mod:`dlzoo.cli.private`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._checkpoint: dict[str, Any] | None = None  # of --ckpt_path, without the weights
        self._ckpt_path: str | None = None  # kept from the config while LightningCLI parses
        self._description: dict[str, Any] = {}  # what the data decides of the model's arguments
        given = kwargs.get("args")
        tokens = sys.argv[1:] if given is None else given
        first = tokens[0] if isinstance(tokens, list | tuple) and tokens else None
        if first in self.subcommands():
            # Build the parser of the subcommand that runs, not all six (each takes the
            # Trainer's, the model's and the DataModule's signatures: ~0.1 s apiece). Without a
            # subcommand first (`dlzoo --help`, a typo), all are built and listed.
            every = type(self).subcommands()
            only = {first: every[first]}
            self.subcommands = lambda: only  # LightningCLI asks the instance for its subcommands
            parser_kwargs = kwargs.get("parser_kwargs") or {}
            kwargs["parser_kwargs"] = {
                k: v for k, v in parser_kwargs.items() if k == first or k not in every
            }
        super().__init__(*args, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Lightning's four, and ``export`` and ``serve`` (methods of :class:`DlzooTrainer`)."""
        return {
            **LightningCLI.subcommands(),
            "export": {"model", "datamodule"},
            "serve": {"model", "datamodule"},
        }

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Two checkpoints: the best by a monitored metric, and last.ckpt rewritten every epoch.
        # Lightning 2.6 writes ModelCheckpoint(save_last=True)'s last.ckpt only when a new top-k
        # checkpoint is saved in the same step, so last.ckpt could be many epochs old on resume.
        # RunCheckpoint: Lightning's, keeping the best across a resume into a new run folder
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_top_k": 1, "checkpoint.save_last": False})
        parser.add_lightning_class_args(RunCheckpoint, "last_checkpoint")
        parser.set_defaults(
            {
                "last_checkpoint.filename": "last",
                "last_checkpoint.monitor": None,
                "last_checkpoint.save_top_k": 1,
                "last_checkpoint.enable_version_counter": False,
            }
        )
        parser.add_lightning_class_args(RunArtifacts, "artifacts")
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")
        parser.add_lightning_class_args(EpochSeed, "epoch_seed")
        for size in DESCRIBED:
            # the hand-off of what instantiate_classes described before anything was built: the
            # link reads a value, it computes nothing (a model without the argument skips it)
            parser.link_arguments(
                "data",
                f"model.init_args.{size}",
                compute_fn=partial(self._described, size),
                apply_on="instantiate",
            )

    def _described(self, size: str, datamodule: pl.LightningDataModule) -> Any:
        if size in self._description:
            return self._description[size]
        return (self._section().model.get("init_args") or {}).get(size)

    def _section(self) -> Any:
        return self.config[self.subcommand] if self.subcommand else self.config

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Parse, after turning registered names (``--model ffn``, ``class_path: tabular``) into
        import paths: registry names, class names and import paths all work. Then take the
        model's arguments from ``--ckpt_path`` (:meth:`_model_from_checkpoint`)."""
        if isinstance(args, dict | type(None)) and args is not None:
            super().parse_arguments(parser, args)
            return
        given = list(sys.argv[1:] if args is None else args)
        refuse_a_checkpoint_without_its_run(given)
        expanded = expand_registered_names(given)
        printing = [a for a in expanded if a.split("=", 1)[0] == "--print_config"]
        if printing and expanded and expanded[0] in self.subcommands():
            # jsonargparse prints while parsing, before dlzoo fills in the checkpoint's monitor,
            # mode and filename: print here instead, what will run
            subcommand = expanded[0]
            self.config = parser.parse_args([a for a in expanded if a not in printing])
            section = self.config[subcommand]
            self._default_checkpoint(section, _configured_task(section, {}))
            dumped = yaml.safe_load(parser.dump(self.config, skip_none=False))[subcommand]
            dumped.pop("config", None)
            print(yaml.safe_dump(dumped, sort_keys=False), end="")
            raise SystemExit(0)
        if args is None and expanded == given:
            super().parse_arguments(parser, None)
        else:
            self.config = parser.parse_args(expanded)
        self._model_from_checkpoint()

    # ---------------------------------------------------------------------------- checkpoints
    def _model_from_checkpoint(self) -> None:
        """With ``--ckpt_path``, the model of the config becomes the checkpoint's: its class and
        the arguments it was trained with (only those the class takes; only a dlzoo model or the
        class of the user's config is imported). The path is held back from the config until
        :meth:`before_instantiate_classes`, so that nothing else reads the file meanwhile."""
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        ckpt_path = config.get("ckpt_path")
        if ckpt_path and Path(ckpt_path).is_dir():
            read_checkpoint(ckpt_path)  # a folder: its one-line error
        if not ckpt_path or not Path(ckpt_path).is_file():
            return  # none, or a URL: Lightning reads it when the run starts
        weights_only = config.get("weights_only")
        checkpoint = read_checkpoint(ckpt_path, True if weights_only is None else weights_only)
        for heavy in ("state_dict", "optimizer_states"):
            checkpoint.pop(heavy, None)
        self._checkpoint, self._ckpt_path = checkpoint, ckpt_path
        config.ckpt_path = None
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        configured = config.model.class_path if config.get("model") else None
        model_class = checkpoint_model_class(checkpoint, configured, ckpt_path)
        if model_class is None:
            if not configured:
                return
            model_class = _import(configured)
        accepted = init_arguments(model_class)
        init_args = {k: v for k, v in hparams.items() if k in accepted}
        model = {"class_path": f"{model_class.__module__}.{model_class.__qualname__}"}
        self.config = self.parser.parse_object(
            {subcommand: {"model": {**model, "init_args": init_args}}}, self.config
        )

    def before_instantiate_classes(self) -> None:
        config = self._section()
        if self._ckpt_path is not None:
            config.ckpt_path = self._ckpt_path
        if self.subcommand in EVALUATING and not config.get("ckpt_path"):
            # without a checkpoint the model's weights are random: refuse rather than report
            # metrics or predictions of an untrained network
            raise ValueError(
                f"dlzoo {self.subcommand} needs --ckpt_path: a checkpoint written by dlzoo fit, "
                "e.g. <run>/checkpoints/last.ckpt or best-*.ckpt, with --config <run>/config.yaml"
            )
        if config.get("weights_only", False) is None:
            # Lightning's None means torch's safe default for local files but full unpickling
            # for http(s) checkpoints: here nothing unpickles arbitrary objects unless the user
            # says --weights_only false.
            config.weights_only = True
        if self.subcommand == "fit" and self._checkpoint is not None:
            refuse_stretched_schedule(self._checkpoint, config.trainer.max_epochs, config.ckpt_path)

    # ------------------------------------------------------------------------ building a run
    def instantiate_classes(self) -> None:
        """Data; what the model needs of it (before it is read); its description; model; Trainer."""
        config = self._section()
        datamodule = self._datamodule(config) if config.get("data") else None
        if datamodule is not None and config.get("model"):
            model_class = _import(config.model.class_path)
            if isinstance(datamodule, DataModule) and issubclass(model_class, TaskModule):
                datamodule.connect(**model_class.data_settings(config.model.get("init_args") or {}))
            self._description = self._describe(datamodule, model_class)
        self._default_checkpoint(config, _configured_task(config, self._description))
        try:
            super().instantiate_classes()
        except ValueError as err:
            raise _constructor_error(err) from None
        if datamodule is not None:
            # the instance that was prepared and described (LightningCLI built a twin of it)
            self.datamodule = datamodule
            (self.config_init[self.subcommand] if self.subcommand else self.config_init)["data"] = (
                datamodule
            )

    def _datamodule(self, config: Any) -> pl.LightningDataModule:
        """The configured DataModule, with the checkpoint's fitted state or its data prepared."""
        parser = ArgumentParser(exit_on_error=False)
        parser.add_subclass_arguments(pl.LightningDataModule, "data", fail_untyped=False)
        parsed = parser.parse_object({"data": config.data.as_dict()})
        with warnings.catch_warnings():
            # renamed `instantiate` in jsonargparse 4.49; the lowest version dlzoo allows (4.39)
            # has only this name, and LightningCLI itself calls it
            warnings.filterwarnings("ignore", message=r"\s*``instantiate_classes`` was deprecated")
            datamodule = parser.instantiate_classes(parsed).data
        if self._checkpoint is not None:
            if isinstance(datamodule, DataModule):
                datamodule.restore(self._checkpoint)
            elif (state := self._checkpoint.get(type(datamodule).__qualname__)) is not None:
                datamodule.load_state_dict(state)  # a LightningDataModule of the user's
        else:
            # downloads happen here, explicitly, before the first size is read: no property
            # downloads anything (with a checkpoint, its sizes are used instead)
            datamodule.prepare_data()
        return datamodule

    def _describe(self, datamodule: pl.LightningDataModule, model_class: type) -> dict[str, Any]:
        """What the data decides of a model's arguments (:data:`DESCRIBED`): from the checkpoint
        when there is one (the weights were trained for them, and nothing is read from training
        data that may not be here), else from the DataModule. A size the DataModule lacks (or
        gives as ``None``), and the task settings of a model of a fixed task, are the config's."""
        saved = (self._checkpoint or {}).get("hyper_parameters") or {}
        fixed = issubclass(model_class, TaskModule) and model_class.fixed_task
        described: dict[str, Any] = {}
        for size in DESCRIBED:
            value = saved[size] if size in saved else getattr(datamodule, size, None)
            if value is not None and not (fixed and size in TASK_SETTINGS):
                described[size] = value
        return described

    def _default_checkpoint(self, config: Any, task: Task | None) -> None:
        """Keep the best checkpoint by the task's metric (val AUROC for classifiers, val RMSE
        for regression), unless the config names a monitor."""
        checkpoint = config.get("checkpoint")
        if checkpoint is None or checkpoint.monitor is not None or not config.get("model"):
            return
        monitor, mode = task.monitor if task else ("val_loss", "min")
        checkpoint.monitor, checkpoint.mode = monitor, mode
        if checkpoint.filename is None:
            checkpoint.filename = "best-{epoch:03d}-{" + monitor + ":.4f}"

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        trainer_config = config.trainer
        evaluating = self.subcommand in EVALUATING
        if trainer_config.logger in (None, True) and "logger" not in kwargs:
            # training runs in lightning_logs/version_N; validate/test in validate|test/version_N;
            # predict, export and serve log nothing (their outputs go where the user says)
            root = trainer_config.default_root_dir or os.getcwd()
            name = self.subcommand if evaluating else "lightning_logs"
            kwargs["logger"] = (
                False
                if self.subcommand in ("predict", "export", "serve")
                else default_loggers(root, name)
            )
        if not trainer_config.get("plugins") and "plugins" not in kwargs:
            kwargs["plugins"] = [AtomicCheckpointIO()]  # no truncated checkpoint under a valid name
        if trainer_config.get("enable_model_summary") is None:
            kwargs["enable_model_summary"] = False  # the model logs its parameter counts instead
        callbacks = list(trainer_config.get("callbacks") or [])
        if trainer_config.get("enable_progress_bar") is not False and not any(
            isinstance(c, TQDMProgressBar | RichProgressBar) for c in callbacks
        ):
            kwargs["callbacks"] = [*callbacks, ProgressBar()]
        trainer = super().instantiate_trainer(**kwargs)
        if evaluating:
            # nothing to checkpoint, and the training run's checkpoints stay as they are
            # (predict has no run folder for a config.yaml either)
            drop = (ModelCheckpoint,) if trainer.loggers else (ModelCheckpoint, SaveConfigCallback)
            trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, drop)]
        return trainer


def _configured_task(config: Any, described: dict[str, Any]) -> Task | None:
    """The task of the model a config builds: the model class's fixed task (the autoencoder's),
    else the described or configured ``task`` (the model's, then the data's), else from
    ``num_classes`` for a dlzoo model; ``None`` for another LightningModule."""
    if not config.get("model"):
        return None
    model_class = _import(config.model.class_path)
    dlzoo_model = issubclass(model_class, TaskModule)
    if dlzoo_model and model_class.fixed_task:
        return get_task(model_class.fixed_task)
    model_args = {**(config.model.get("init_args") or {}), **described}
    data_args = (config.get("data") or {}).get("init_args") or {}
    for init_args in (model_args, data_args):
        if init_args.get("task"):
            return get_task(init_args["task"])
    if not dlzoo_model:
        return None
    return get_task(classification_task(int(model_args.get("num_classes") or 2)))


def _constructor_error(err: ValueError) -> Exception:
    """What a class's constructor raised, rather than jsonargparse's wrapper of it ("Does not
    validate against any of the Union subtypes", then every argument of the configuration):
    the first exception of the chain of causes."""
    cause: BaseException = err
    while cause.__cause__ is not None:
        cause = cause.__cause__
    return cause if isinstance(cause, Exception) else err


class _HelpFormatter(RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """jsonargparse's help, with the description's lines kept as written."""


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")  # Lightning's product advertisements


def _hide_known_noise() -> None:
    """Silence, by message, what a dlzoo user cannot act on (called by the command only)."""
    for message in (
        r".*isinstance\(treespec, LeafSpec\)",  # a deprecation inside lightning 2.6
        r"The number of training batches \(\d+\) is smaller than the logging interval",  # we
        # log once per epoch, not per step
        # validate/test/predict run without the checkpoint callbacks on purpose
        r"Be aware that when using `ckpt_path`, callbacks used to create the checkpoint",
    ):
        warnings.filterwarnings("ignore", message=message)
    # lightning 2.6's own calls of jsonargparse APIs deprecated in jsonargparse 4.49: for
    # Lightning to change, nothing a dlzoo user can do
    for message in (r"\s*.* was deprecated in v4\.\d+\.0", r"\s*By default only one Jsonargparse"):
        warnings.filterwarnings("ignore", message=message, module=r"lightning\.pytorch\.cli")
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropTips) for f in rank_zero.filters):
        rank_zero.addFilter(_DropTips())


def _import(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def make_cli(
    args: list[str] | None = None,
    run: bool = True,
    trainer_defaults: dict | None = None,
    exit_on_error: bool = True,
) -> DlzooCLI:
    """The ``dlzoo`` CLI on ``args``; ``run=False`` only builds the model, data and trainer
    (then ``args`` has no subcommand). ``trainer_defaults``: Trainer arguments under the
    config's (``callbacks`` are added to the config's, e.g. a sweep's pruning callback).
    ``exit_on_error=False``: a refused argument raises jsonargparse's ``ArgumentError`` (its
    message says what is wrong) instead of printing and exiting."""
    _hide_known_noise()
    show_dlzoo_logs()
    load_builtins()  # registered names and classes, for class_path short names and --help
    text = registered_help()
    subcommands = tuple(DlzooCLI.subcommands())
    # allow_abbrev: `--trainer.max_epoch` is an error, not a prefix of --trainer.max_epochs
    kwargs = {"description": text, "formatter_class": _HelpFormatter, "allow_abbrev": False}
    if not exit_on_error:
        kwargs["exit_on_error"] = False
    parser_kwargs: dict[str, Any] = dict(kwargs)
    if run:
        parser_kwargs.update({name: dict(kwargs) for name in subcommands})
    return DlzooCLI(
        model_class=pl.LightningModule,
        datamodule_class=pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=2020,
        save_config_kwargs={"overwrite": True},
        trainer_class=DlzooTrainer,
        parser_class=DlzooArgumentParser,
        parser_kwargs=parser_kwargs,
        trainer_defaults=trainer_defaults or {},
        args=args,
        run=run,
    )


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``dlzoo`` command (also ``python -m dlzoo``).

    Called with ``args`` (from Python), errors propagate. As the command, a data or config error
    prints dlzoo's one message and exits with status 1; ``DLZOO_TRACEBACK=1`` shows the traceback.
    """
    given = sys.argv[1:] if args is None else args
    if list(given[:1]) == ["recipes"]:
        print(recipes_text(), end="")
        return
    bundle = list(given[:1]) == ["serve"] and any(
        a == "--bundle" or a.startswith("--bundle=") for a in given
    )
    if list(given[:1]) == ["sweep"]:
        # the sweep runs this command for each trial: it sits above it (dlzoo.__main__)
        raise ValueError("dlzoo sweep: call dlzoo.__main__.main or dlzoo.sweep.main")
    if bundle:
        from dlzoo.deploy.server import bundle_main

        run = partial(bundle_main, given[1:])
    else:
        run = partial(make_cli, None if args is None else list(args))
    if args is not None:
        run()
        return
    # a Trainer setting this machine cannot run (no such accelerator, devices=0): the user's
    run_command(run, also=(MisconfigurationException,))


__all__ = ["DESCRIBED", "DlzooCLI", "main", "make_cli", "refuse_stretched_schedule"]
