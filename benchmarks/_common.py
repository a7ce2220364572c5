"""Helpers shared by the benchmark scripts: the device line and BENCHMARKS.md sections."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import lightning.pytorch as pl
import torch


def device_line() -> str:
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{os.cpu_count()} CPU cores ({cpu}), {gpu}; torch {torch.__version__}, "
        f"lightning {pl.__version__}, Python {platform.python_version()}"
    )


def write_section(out: Path, start: str, end: str, section: str) -> None:
    """Replace the text between ``start`` and ``end`` in ``out`` (or append the section)."""
    text = out.read_text() if out.is_file() else "# Benchmarks\n"
    if start in text:
        text = re.sub(f"{re.escape(start)}.*?{re.escape(end)}", lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    out.write_text(text)
    print(f"wrote {out}")
