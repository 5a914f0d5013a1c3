"""File output that loses nothing: atomic writes (a reader never sees a half-written file, a
failure leaves the old one), and the checks that an output may be written at all (it is no
input of the same command, and it replaces only a file cdml itself wrote)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

_UMASK = os.umask(0o022)
os.umask(_UMASK)
TEMPORARY = ".tmp"  # the temporary files' names: ``.{stem}.{random}.tmp{suffix}``


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    The temporary name keeps the suffix of ``path`` so that writers choosing a format by
    extension (matplotlib, numpy) behave as for the final name. The file gets the mode a plain
    ``open`` would give it (``0o666`` less the umask).
    """
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.stem}.", suffix=f"{TEMPORARY}{target.suffix}"
    )
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(0o666 & ~_UMASK)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(data, indent=2) + "\n")


def write_npz(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as an uncompressed ``.npz`` archive to exactly ``path`` (numpy adds
    ``.npz`` to a file name without it; through an open file it cannot), atomically."""
    with atomic_path(path) as tmp, tmp.open("wb") as file:
        np.savez(file, **arrays)


def remove_temporaries(folder: str | os.PathLike[str], suffix: str = "") -> list[Path]:
    """Delete the temporary files of :func:`atomic_path` (ending ``.tmp`` + ``suffix``) that a
    killed process left in ``folder``; call it only while no other process writes there (a
    run's lock). Returns what was deleted."""
    stale = sorted(Path(folder).glob(f".*{TEMPORARY}{suffix}"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether ``a`` and ``b`` name one file (also through links and ``..``)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they would be
        return Path(a).resolve() == Path(b).resolve()


def check_output(
    path: str | os.PathLike[str],
    *,
    what: str,
    owned: Callable[[Path], bool],
    inputs: Mapping[str, str | os.PathLike[str] | None] | None = None,
    name: str = "--out",
) -> Path:
    """``ValueError`` unless the output file ``path`` can be written without losing a file:
    it is none of the command's ``inputs`` (``{flag: path}``), its folder exists and is
    writable, and if it exists it is a file that ``owned(path)`` recognises as ``what``
    (e.g. ``"an embeddings file"``) written by cdml. ``name`` is the output's flag, for the
    messages. Returns ``path`` as a ``Path``."""
    path = Path(path)
    for flag, source in (inputs or {}).items():
        if source is not None and same_file(path, source):
            raise ValueError(f"{name} {path} is the {flag} file too; choose another {name}")
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(f"{name} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"{name} {path}: folder {folder} is not writable")
    if path.is_dir():
        raise ValueError(f"{name} {path} is a folder; give a file name")
    if path.exists() and not owned(path):
        raise ValueError(
            f"{name} {path} exists and is not {what} written by cdml; nothing was changed "
            f"(move it away or choose another {name})"
        )
    return path


def check_output_folder(
    folder: str | os.PathLike[str],
    *,
    what: str,
    owned: Callable[[Path], bool],
    inputs: Mapping[str, Any] | None = None,
    name: str = "--out",
) -> Path:
    """``ValueError`` unless the output folder ``folder`` can be written without losing a
    file: no input of ``inputs`` lies in it, and it is new, empty (cdml's own hidden marks
    ``.cdml-*`` aside) or, by ``owned(folder)``, ``what`` written by cdml. Returns it."""
    folder = check_not_inside(folder, inputs, name)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{name} {folder} is a file; give a folder")
    if folder.is_dir() and not is_empty(folder) and not owned(folder):
        raise ValueError(
            f"{name} {folder} holds files and is not {what} written by cdml; nothing was "
            f"changed (give a new or empty folder)"
        )
    return folder


def check_not_inside(
    folder: str | os.PathLike[str],
    inputs: Mapping[str, Any] | None,
    name: str = "--out",
) -> Path:
    """``ValueError`` when one of ``inputs`` (``{flag: path}``; values that are no path, such
    as None or a list of files, are passed over) lies in the output folder ``folder`` (which
    a command replaces or fills); returns ``folder`` as a ``Path``."""
    folder = Path(folder)
    for flag, source in (inputs or {}).items():
        if isinstance(source, str | os.PathLike) and _inside(Path(source), folder):
            raise ValueError(f"{name} {folder} holds the {flag} {source}; choose another {name}")
    return folder


def is_empty(folder: Path) -> bool:
    """Whether ``folder`` holds nothing but cdml's hidden marks (``.cdml-*``)."""
    return all(entry.name.startswith(".cdml-") for entry in folder.iterdir())


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def is_json_object(path: Path, *keys: str) -> bool:
    """Whether ``path`` is a JSON file holding an object with every one of ``keys``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and all(key in data for key in keys)
