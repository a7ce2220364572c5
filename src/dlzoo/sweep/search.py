"""A search file of ``dlzoo sweep``: its parameters (:class:`Param`), their ranges and grids,
the ``dlzoo fit`` arguments a sampled point becomes, and the check of every path against the
``dlzoo fit`` parser before any trial runs."""

from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")


class SweepError(ValueError):
    """A search file, path or range that cannot be used; the message names it."""


@dataclass
class Param:
    """One searched ``dlzoo fit`` path: a float or int range, or a list of values."""

    path: str
    kind: str  # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] = field(default_factory=list)

    @property
    def group(self) -> bool:
        """Each choice sets several paths together (``{path: value, ...}``); the name is a label."""
        return self.kind == "categorical" and all(isinstance(c, dict) for c in self.choices)

    @property
    def grid(self) -> list[Any]:
        """The values a grid search tries: the choices, or every step of an int range."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int" and not self.log:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        raise SweepError(
            f"{self.path}: a grid needs a list of values or an int range with a step, "
            f"not a {'log ' if self.log else ''}{self.kind} range"
        )

    def encoded(self) -> list[Any]:
        """The choices as Optuna stores them (lists and dicts as JSON text)."""
        return [_encode(c) for c in self.choices]

    def suggest(self, trial: Any) -> Any:
        if self.kind == "categorical":
            return _decode(trial.suggest_categorical(self.path, self.encoded()))
        if self.kind == "int":
            step = int(self.step or 1)
            return trial.suggest_int(
                self.path, int(self.low), int(self.high), step=step, log=self.log
            )
        return trial.suggest_float(self.path, self.low, self.high, step=self.step, log=self.log)

    def extremes(self) -> list[Any]:
        """Values that together cover the range's checks: both ends, or every choice."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]


def _encode(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list | dict) else value


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(value)
    return value


def _number(path: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SweepError(f"{path}: {name} must be a finite number, got {value!r}")
    return value


def parse_param(path: str, spec: Any) -> Param:
    """A ``params`` entry as a :class:`Param`; :class:`SweepError` names what is wrong."""
    if not isinstance(path, str) or not path or path.startswith("-"):
        raise SweepError(f"{path!r}: a parameter is a dlzoo fit path such as model.init_args.lr")
    if isinstance(spec, list):
        spec = {"choices": spec}
    for choice in spec.get("choices") or [] if isinstance(spec, dict) else []:
        if isinstance(choice, dict) and not all(isinstance(k, str) and "." in k for k in choice):
            raise SweepError(
                f"{path}: a choice that is a mapping sets dlzoo fit paths together "
                f"(model.init_args.l1_lambda: 0.001), got {choice!r}"
            )
    if not isinstance(spec, dict):
        raise SweepError(f"{path}: give a list of values or {{low, high}}, got {spec!r}")
    unknown = set(spec) - {"type", "low", "high", "log", "step", "choices", "grid"}
    if unknown:
        raise SweepError(
            f"{path}: unknown key(s) {sorted(unknown)} (type, low, high, log, step, choices)"
        )
    choices = spec.get("choices", spec.get("grid"))
    if choices is not None:
        if not isinstance(choices, list) or not choices:
            raise SweepError(f"{path}: choices must be a non-empty list, got {choices!r}")
        if len({json.dumps(c, sort_keys=True) for c in choices}) != len(choices):
            raise SweepError(f"{path}: choices repeat a value: {choices}")
        return Param(path, "categorical", choices=list(choices))
    if "low" not in spec or "high" not in spec:
        raise SweepError(f"{path}: a range needs low and high (or give choices)")
    low, high = _number(path, "low", spec["low"]), _number(path, "high", spec["high"])
    kind = spec.get("type") or (
        "int" if isinstance(low, int) and isinstance(high, int) else "float"
    )
    if kind not in ("int", "float"):
        raise SweepError(f"{path}: type must be int or float, got {kind!r}")
    if low >= high:
        raise SweepError(f"{path}: low ({low}) must be below high ({high})")
    log_scale = bool(spec.get("log", False))
    if log_scale and low <= 0:
        raise SweepError(f"{path}: a log range needs low > 0, got {low}")
    step = spec.get("step")
    if step is not None:
        step = _number(path, "step", step)
        if step <= 0 or step > high - low:
            raise SweepError(f"{path}: step must be in (0, high - low], got {step}")
        if log_scale:
            raise SweepError(f"{path}: a log range takes no step")
    return Param(path, kind, low=low, high=high, log=log_scale, step=step)


@dataclass
class Search:
    """A parsed search file."""

    params: list[Param]
    metric: str | None = None
    direction: str | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int | None = 0
    trials: int | None = None
    #: paths every trial sets (e.g. fewer epochs than the recipe)
    fixed: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: str | Path) -> Search:
        from dlzoo.cli.names import read_yaml  # the CLI's reader: one line naming the place

        try:
            data = read_yaml(Path(path))
        except FileNotFoundError:
            raise SweepError(f"{path}: no such search file") from None
        except ValueError as err:  # not valid YAML (the message names the file), or not UTF-8
            message = str(err)
            raise SweepError(message if str(path) in message else f"{path}: {message}") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "search") -> Search:
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("params"), dict)
            or not data["params"]
        ):
            raise SweepError(
                f"{source}: a search needs params: a mapping of dlzoo fit paths to ranges"
            )
        unknown = set(data) - {
            "params",
            "metric",
            "direction",
            "sampler",
            "pruner",
            "seed",
            "trials",
            "fixed",
        }
        if unknown:
            raise SweepError(f"{source}: unknown key(s) {sorted(unknown)}")
        search = cls(
            params=[parse_param(p, s) for p, s in data["params"].items()],
            metric=data.get("metric"),
            direction=data.get("direction"),
            sampler=data.get("sampler", "tpe"),
            pruner=data.get("pruner", "median"),
            seed=data.get("seed", 0),
            trials=data.get("trials"),
            fixed=dict(data.get("fixed") or {}),
        )
        if search.sampler not in SAMPLERS:
            raise SweepError(f"{source}: sampler must be one of {SAMPLERS}, got {search.sampler!r}")
        if search.pruner not in PRUNERS:
            raise SweepError(f"{source}: pruner must be one of {PRUNERS}, got {search.pruner!r}")
        if search.direction not in (None, "maximize", "minimize"):
            raise SweepError(f"{source}: direction must be maximize or minimize")
        if search.trials is not None and (not isinstance(search.trials, int) or search.trials < 1):
            raise SweepError(f"{source}: trials must be a positive integer")
        if search.sampler == "grid":
            for param in search.params:
                param.grid  # noqa: B018 - raises for a range a grid cannot take
        return search

    def grid_size(self) -> int:
        return math.prod(len(p.grid) for p in self.params)


def paths(values: dict[str, Any], params: list[Param]) -> dict[str, Any]:
    """Sampled values as ``dlzoo fit`` paths: a group's choice sets its paths together."""
    groups = {p.path for p in params if p.group}
    flat: dict[str, Any] = {}
    for name, value in values.items():
        flat.update(value if name in groups else {name: value})
    return flat


def overrides(values: dict[str, Any]) -> list[str]:
    """``dlzoo fit`` arguments setting each path to its value (YAML/JSON text)."""
    args = []
    for path, value in values.items():
        args += [f"--{path}", json.dumps(value) if not isinstance(value, str) else value]
    return args


# ------------------------------------------------------------------------ checking
#: lines of jsonargparse's messages that say how it tried, not what is wrong
_NOISE = ("Does not validate", "Subtypes:", "Errors:", "- Expected a <class 'NoneType'>", "Given")


def _reason(message: str) -> str:
    """jsonargparse's refusal as one line: what is wrong, without the union bookkeeping."""
    lines = [line.strip() for line in message.splitlines()]
    return " ".join(line for line in lines if line and not line.startswith(_NOISE))


def check_paths(config: str, search: Search) -> None:
    """Parse ``dlzoo fit --config CONFIG`` with every path at each of its extremes (both ends of
    a range, every choice) without running anything; raise :class:`SweepError` naming the first
    path or value the parser refuses."""
    from jsonargparse import ArgumentError

    from dlzoo.cli import make_cli

    rounds = max(len(p.extremes()) for p in search.params)
    for r in range(rounds):
        sampled = {p.path: p.extremes()[r % len(p.extremes())] for p in search.params}
        values = {**search.fixed, **paths(sampled, search.params)}
        args = ["fit", "--config", config, *overrides(values), "--print_config"]
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the printed config
                make_cli(args, exit_on_error=False)
        except SystemExit as stop:  # --print_config printed it: the values parse
            if stop.code in (0, None):
                continue
            raise
        except ArgumentError as err:
            reason = _reason(str(err))
            named = [p for p in values if p in reason or p.split(".")[-1] in reason]
            where = f"{named[0]} = {values[named[0]]!r}" if named else f"the values {values}"
            raise SweepError(f"dlzoo fit refuses {where}: {reason}") from None


__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "Param",
    "Search",
    "SweepError",
    "check_paths",
    "overrides",
    "parse_param",
    "paths",
]
