"""Registered names on the command line: ``--model ffn``, ``class_path: tabular`` and a
recipe's name after ``--config`` become what LightningCLI imports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dlzoo.registry import DATAMODULES, MODELS, resolve_class


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
    as import paths, in ``--model X``, ``--data=X``, ``--model.class_path X`` and in the
    ``model``/``data`` sections of ``--config`` files (then passed on as YAML text)."""
    tables = {"model": MODELS, "data": DATAMODULES}
    out: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        key, eq, value = arg.partition("=")
        has_value = bool(eq) or index + 1 < len(args)
        value = value if eq else (args[index + 1] if index + 1 < len(args) else "")
        section = key.removeprefix("--").removesuffix(".class_path")
        if key.startswith("--") and section in tables and has_value:
            out += [key, full_path(tables[section], value)]
        elif key == "--config" and has_value and Path(value).is_file():
            config = yaml.safe_load(Path(value).read_text()) or {}
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


def _summary(table: dict[str, type]) -> str:
    lines = []
    for name, cls in sorted(table.items()):
        doc = (cls.__doc__ or "").strip().splitlines()
        line = f"  {name:<15} {cls.__name__}: {doc[0].replace('``', '') if doc else ''}"
        lines.append(line if len(line) <= 100 else line[:97] + "...")
    return "\n".join(lines)


def registered_help() -> str:
    """What ``dlzoo --help`` lists: every registered model and DataModule, one line each."""
    return (
        "Train, evaluate and use dlzoo's models from a YAML config (LightningCLI).\n"
        "--model and --data take a registered name, a class name or an import path.\n\n"
        f"models:\n{_summary(MODELS)}\n\nDataModules:\n{_summary(DATAMODULES)}"
    )
