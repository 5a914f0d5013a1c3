"""A run's folder: what makes one, the checks before a run writes into it (new, or resumable
with the settings its checkpoint allows), and its lock."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cdml.console import console
from cdml.inference import read_checkpoint
from cdml.io import is_empty
from cdml.training.config import RunConfig, checkpoint_config, load_config
from cdml.training.results import METRICS_FILE

LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINT = "best.ckpt"
# Settings a resumed run may change; any other must equal the config saved in its checkpoint
# (the checkpoint's model, method, data and batches would not fit them).
RESUMABLE = frozenset({
    "out", "trainer.epochs", "trainer.progress_bar", "trainer.log_every_n_steps",
    "trainer.accelerator", "trainer.devices", "trainer.num_nodes", "trainer.strategy",
    "trainer.precision", "trainer.loggers", "trainer.report", "data.num_workers", "eval.ks",
    "eval.nmi",
})  # fmt: skip


RUN_MARK = ".cdml-run"  # written first into a run's folder: what makes it one


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a cdml training run that got as far as its config (also one
    of a cdml before the mark); a run refused before that left nothing to resume."""
    return (folder / "config.yaml").is_file() and (
        (folder / RUN_MARK).is_file() or (folder / "checkpoints").is_dir()
    )


def prepare_output(out: Path, resume: bool) -> Path | None:
    """Check that ``out`` can hold this run; return the checkpoint to resume from, or None
    to start from the beginning (also when resuming a run stopped before its first epoch
    ended). The checkpoint is read as ``cdml embed`` reads one (tensors and plain data).

    A new run needs a new or empty folder: one that holds a run needs ``resume``, and one
    that holds other files is refused, so that nothing of the user's is overwritten."""
    last = out / "checkpoints" / LAST_CHECKPOINT
    if resume:
        if not is_run_folder(out):
            raise ValueError(f"--resume: {out} holds no cdml run to resume")
        if not last.is_file() and (out / METRICS_FILE).is_file():
            raise ValueError(f"--resume: no checkpoint to resume from at {last}")
        if not last.is_file():
            console.print(
                f"{out}: no epoch had finished, so the run starts again from the beginning"
            )
            return None
        read_checkpoint(last, mmap=True)  # refused now if it is not one
        return last
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {out} is a file; give a folder")
    if out.is_dir() and is_run_folder(out):
        raise ValueError(
            f"{out} already holds a run; pass --resume to continue it or choose another --out"
        )
    if out.is_dir() and not is_empty(out):
        raise ValueError(
            f"output folder {out} holds files and is not a cdml run; nothing was changed "
            "(give a new or empty folder)"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / RUN_MARK).touch()
    except OSError as error:
        raise ValueError(f"output folder {out} is not writable ({error.strerror})") from None
    return None


LOCK_FILE = ".cdml-lock"


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.cdml-lock`` (this process's host and PID) while a run trains in ``out``: a
    second process is refused, naming the holder; a lock left by a process of this host that
    no longer runs (a crash) is taken over."""
    lock = out / LOCK_FILE
    holder = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            host, _, pid = lock.read_text(errors="replace").strip().partition(" ")
            if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            raise ValueError(
                f"{out} is in use by another cdml run (process {pid or '?'} on {host or '?'}, "
                f"{lock}); wait for it, or delete {lock} if that process is gone"
            ) from None
        with os.fdopen(fd, "w") as file:
            file.write(holder + "\n")
        break
    try:
        yield
    finally:
        if lock.is_file() and lock.read_text(errors="replace").strip() == holder:
            lock.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def check_resumable(config: RunConfig, out: Path, checkpoint: Path | None) -> None:
    """``ValueError`` naming the first setting of ``config`` (resolved) that a resumed run
    cannot change (not in :data:`RESUMABLE`) and that differs from the run's: the config
    saved in ``checkpoint``, what its weights were trained with, or without one (no epoch
    had finished) the run's ``config.yaml``."""
    if checkpoint is not None:
        hyper_parameters = read_checkpoint(checkpoint, mmap=True).get("hyper_parameters")
        recorded, source = checkpoint_config(checkpoint, hyper_parameters), checkpoint
    else:
        recorded, source = load_config(out / "config.yaml"), out / "config.yaml"
    old, new = _flatten(recorded.to_dict()), _flatten(config.to_dict())
    for key in sorted(old.keys() | new.keys()):
        if key not in RESUMABLE and old.get(key) != new.get(key):
            raise ValueError(
                f"--resume: {key} is {old.get(key)!r} in the run ({source}), not "
                f"{new.get(key)!r}; the checkpoint cannot honour the change (only "
                f"{', '.join(sorted(RESUMABLE - {'out'}))} may change)"
            )


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "params":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
