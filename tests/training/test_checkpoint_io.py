"""Checkpoints are written atomically, in their own folder."""

import pytest
import torch

from cdml.training import callbacks
from cdml.training.callbacks import AtomicCheckpointIO


def test_a_failed_write_keeps_the_previous_checkpoint_and_leaves_no_temporary(
    tmp_path, monkeypatch
):
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}, "epoch": 1}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 1
    written = []

    def full_disk(checkpoint, file):
        written.append(file)
        with open(file, "wb") as stream:
            stream.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(callbacks.torch, "save", full_disk)
    with pytest.raises(OSError, match="the disk is full"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(2)}, "epoch": 2}, path)
    monkeypatch.undo()
    # The temporary file was beside the checkpoint (same file system), and is gone.
    assert written[0].parent == path.parent
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]
    assert torch.load(path, weights_only=True)["epoch"] == 1


def test_run_files_get_the_mode_of_the_umask(tmp_path):
    import os

    from cdml.io import write_json

    umask = os.umask(0o022)
    os.umask(umask)
    write_json(tmp_path / "metrics.json", {"a": 1})
    AtomicCheckpointIO().save_checkpoint({"epoch": 0}, tmp_path / "last.ckpt")
    for name in ("metrics.json", "last.ckpt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
