"""Reading a user's files: CSVs with errors that name the file, the line and the problem."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def read_csv(
    path: str | Path, what: str = "CSV file", na_values: list[str] | None = None
) -> pd.DataFrame:
    """Read a CSV with errors that name the file and the problem; ``na_values`` as in pandas."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        frame = pd.read_csv(path, skipinitialspace=True, na_values=na_values)
    except UnicodeDecodeError as err:
        line, text = _first_non_utf8_line(path)
        raise ValueError(
            f"{what} {path} is not UTF-8 text: line {line} reads {text!r} ({err.reason}). "
            "Re-save the file as UTF-8 (e.g. from Latin-1: iconv -f latin1 -t utf-8)."
        ) from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{what} {path} is empty: expected a header line and data rows") from None
    except pd.errors.ParserError as err:
        raise ValueError(f"{what} {path} is not a well-formed CSV: {err}") from None
    if frame.empty:
        raise ValueError(f"{what} {path} has a header but no data rows")
    return frame


def _first_non_utf8_line(path: Path) -> tuple[int, str]:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number, raw.decode("utf-8", errors="replace").rstrip()[:80]
    return 0, ""


__all__ = ["read_csv"]
