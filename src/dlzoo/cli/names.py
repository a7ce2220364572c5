"""Registered names on the command line: ``--model ffn``, ``class_path: tabular`` and a
recipe's name after ``--config`` become what LightningCLI imports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from dlzoo.registry import DATAMODULES, MODELS, load_builtins, resolve_class

#: the book's experiments, shipped in the wheel: ``dlzoo fit --config bank_ffn``
RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def list_recipes() -> dict[str, str]:
    """Shipped recipes by name, with the first line of each one's comment."""
    recipes = {}
    for path in sorted(RECIPES.glob("*.yaml")):
        lines = [ln.lstrip("# ").strip() for ln in path.read_text().splitlines()]
        recipes[path.stem] = next((ln for ln in lines if ln), "")
    return recipes


def config_path(value: str) -> Path | None:
    """The file ``--config value`` means: a path, else a shipped recipe of that name (with or
    without ``.yaml``), else ``None`` (LightningCLI then says the file is missing). A path
    always wins over a recipe."""
    path = Path(value)
    if path.is_file():
        return path
    if path.parent == Path() and path.suffix in ("", ".yaml"):
        shipped = RECIPES / f"{path.stem}.yaml"
        if shipped.is_file():
            return shipped
    if path.parent == Path() and not path.exists():
        known = ", ".join(list_recipes())
        raise FileNotFoundError(
            f"--config {value}: no such file, and no recipe of that name (recipes: {known}; "
            "dlzoo recipes lists them)"
        )
    return None


def read_yaml(path: Path) -> Any:
    """A YAML file, with a syntax error as one line naming the file, line and problem."""
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        marked = err if isinstance(err, yaml.MarkedYAMLError) else None
        mark = marked and (marked.problem_mark or marked.context_mark)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = (marked and marked.problem) or str(err).splitlines()[0]
        raise ValueError(f"{path} is not valid YAML: {problem} at {where}") from None


def full_path(table: dict[str, type], name: Any) -> Any:
    cls = resolve_class(table, name) if isinstance(name, str) else None
    return f"{cls.__module__}.{cls.__qualname__}" if cls is not None else name


def _expand_section(section: Any, table: dict[str, type]) -> Any:
    if isinstance(section, str):
        return full_path(table, section)
    if isinstance(section, dict) and "class_path" in section:
        return {**section, "class_path": full_path(table, section["class_path"])}
    return section


def expand_registered_names(args: list[str]) -> list[str]:
    """``args`` with registered model and DataModule names (``ffn``, ``FeedForwardNet``) spelled
    as import paths, in ``--model X``, ``--data=X``, ``--model.class_path X``, ``--model.help X``
    and in the ``model``/``data`` sections of ``--config`` files (then passed on as YAML text)."""
    load_builtins()
    tables = {"model": MODELS, "data": DATAMODULES}
    out: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        key, eq, value = arg.partition("=")
        has_value = bool(eq) or index + 1 < len(args)
        value = value if eq else (args[index + 1] if index + 1 < len(args) else "")
        section = key.removeprefix("--").removesuffix(".class_path").removesuffix(".help")
        if key.startswith("--") and section in tables and has_value:
            out += [key, full_path(tables[section], value)]
        elif key == "--config" and has_value and (recipe := config_path(value)) is not None:
            config = read_yaml(recipe)
            value = str(recipe)  # a recipe's name: its file
            if isinstance(config, dict) and any(k in config for k in tables):
                expanded = {
                    k: _expand_section(v, tables[k]) if k in tables else v
                    for k, v in config.items()
                }
                if expanded != config:
                    value = yaml.safe_dump(expanded, sort_keys=False)
            out += [key, value]
        else:
            out.append(arg)
            index += 1
            continue
        index += 1 if eq else 2
    return out


#: a Sphinx cross-reference in a docstring (``:class:`~dlzoo.networks.ffn.FeedForwardNetwork```)
_ROLE = re.compile(r":\w+:`(~?)([\w.]+)`")


def plain_text(doc: str) -> str:
    """A docstring's line as a terminal shows it: ``:class:`~a.B``` is ``B``, ````x```` is ``x``."""
    text = _ROLE.sub(lambda m: m[2].rsplit(".", 1)[-1] if m[1] else m[2], doc)
    return text.replace("``", "")


def _summary(table: dict[str, type]) -> str:
    lines = []
    for name, cls in sorted(table.items()):
        first = (cls.__doc__ or "").strip().split("\n\n", 1)[0]  # the first paragraph
        line = f"  {name:<15} {cls.__name__}: {plain_text(' '.join(first.split()))}"
        lines.append(line if len(line) <= 100 else line[:97] + "...")
    return "\n".join(lines)


def registered_help() -> str:
    """What ``dlzoo --help`` lists: every registered model and DataModule, one line each, and the
    shipped recipes."""
    load_builtins()
    recipes = ", ".join(list_recipes())
    return (
        "Train, evaluate and use dlzoo's models from a YAML config (LightningCLI).\n"
        "--model and --data take a registered name, a class name or an import path\n"
        "('dlzoo fit --model.help ffn' lists one model's options, --data.help one DataModule's);\n"
        "--config takes a file or the name of a shipped recipe ('dlzoo recipes' lists them).\n\n"
        f"models:\n{_summary(MODELS)}\n\nDataModules:\n{_summary(DATAMODULES)}\n\n"
        f"recipes: {recipes}"
    )


def recipes_text() -> str:
    """What ``dlzoo recipes`` prints: each shipped recipe's name and what it is."""
    lines = [f"  {name:<40} {about}"[:110] for name, about in list_recipes().items()]
    return (
        "Recipes shipped with dlzoo (the book's experiments); run one by name:\n"
        "  dlzoo fit --config bank_ffn\n\n" + "\n".join(lines) + f"\n\nFiles: {RECIPES}\n"
    )
