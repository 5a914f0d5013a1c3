"""Locating and parsing annotation files, with errors naming the file and line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def require_dir(root: str | Path | None, dataset: str, expected: str) -> Path:
    """``root`` as a ``Path``: ``ValueError`` when it is None, ``FileNotFoundError`` when it
    is not an existing folder; ``expected`` describes what it should hold, for the message.
    """
    if root is None:
        raise ValueError(f"{dataset}: root is required ({expected})")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{dataset}: root folder {root} does not exist ({expected})")
    return root


def require_file(path: Path, dataset: str) -> Path:
    """``path`` unchanged; ``FileNotFoundError`` naming it when it is not a file."""
    if not path.is_file():
        raise FileNotFoundError(f"{dataset}: missing annotation file {path}")
    return path


def read_table(
    path: Path, fields: Sequence[str], header: bool = False, integers: Sequence[str] = ()
) -> list[list[str | int]]:
    """Rows of a whitespace-separated text file, each split into ``len(fields)`` values.

    The last field takes the rest of the line (it may hold spaces); blank lines are skipped.
    With ``header`` the first line must be exactly the field names and is not returned.
    Fields named in ``integers`` are converted to ``int``. Errors name the file and line.
    """
    lines = path.read_text().splitlines()
    first = 0
    if header:
        if not lines or lines[0].split() != list(fields):
            raise ValueError(f"{path} line 1: expected the header {' '.join(fields)!r}")
        first = 1
    as_int = [name in integers for name in fields]
    rows = []
    for number, line in enumerate(lines[first:], start=first + 1):
        if not line.strip():
            continue
        values: list[str | int] = list(line.split(maxsplit=len(fields) - 1))
        if len(values) != len(fields):
            raise ValueError(
                f"{path} line {number}: expected {len(fields)} fields "
                f"({' '.join(fields)}), got {line!r}"
            )
        for i, name in enumerate(fields):
            if as_int[i]:
                try:
                    values[i] = int(values[i])
                except ValueError:
                    raise ValueError(
                        f"{path} line {number}: {name} {values[i]!r} is not an integer"
                    ) from None
        rows.append(values)
    return rows
