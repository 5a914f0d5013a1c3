"""``cdml embed`` into parts: a kill loses one part at most, a rerun continues, every engine
writes the same parts, unreadable images are skipped and listed when asked."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cdml.cli import main
from cdml.data.folder import find_images
from cdml.parts import PartsFolder
from cdml.parts.listing import walk_images


def write_images(folder: Path, count: int, seed: int = 0) -> Path:
    """``count`` small distinct images in nested folders (names sort differently as paths
    and as strings: ``a/`` and ``a.png``)."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        sub = folder / f"{i % 7}" / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(sub / f"{i}.png")
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(folder / "0.png")
    return folder


@pytest.fixture(scope="module")
def many_images(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("many"), 19_999)  # and 0.png: 20,000


def embed_argv(checkpoint, images, out, *more):
    return ["embed", "--checkpoint", str(checkpoint), "--images", str(images), "--out",
            str(out), "--parts", "--threads", "1", *map(str, more)]  # fmt: skip


def assert_same_parts(one: Path, other: Path) -> None:
    first, second = PartsFolder(one), PartsFolder(other)
    assert first.manifest["parts"] == second.manifest["parts"]
    for (a, a_items), (b, b_items) in zip(first.parts(), second.parts(), strict=True):
        np.testing.assert_array_equal(a, b)  # bit for bit
        assert a_items.equals(b_items)


def test_the_listing_order_is_find_images_order(many_images):
    assert list(walk_images(many_images)) == [str(p) for p in find_images(many_images)]


def test_a_kill_loses_at_most_the_part_in_progress(tiny_checkpoint, many_images, tmp_path, capsys):
    argv = ["--part-size", 2000]
    assert main(embed_argv(tiny_checkpoint, many_images, tmp_path / "whole", *argv)) == 0
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "cdml", *embed_argv(tiny_checkpoint, many_images, killed, *argv)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while len(list(killed.glob("part-*.json"))) < 2 and time.monotonic() < deadline:
        assert process.poll() is None, "the job ended before it could be killed"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = {p: p.stat().st_mtime_ns for p in killed.glob("part-*")}
    done = len(list(killed.glob("part-*.json")))
    assert 2 <= done < 10
    capsys.readouterr()
    assert main(embed_argv(tiny_checkpoint, many_images, killed, *argv)) == 0
    assert f"20,000 embeddings in 10 parts in {killed} ({10 - done} embedded now)" in " ".join(
        capsys.readouterr().out.split()
    )
    assert all(path.stat().st_mtime_ns == when for path, when in finished.items())
    assert_same_parts(killed, tmp_path / "whole")
    assert not [name for name in os.listdir(killed) if ".tmp" in name]  # no leftovers


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_every_engine_writes_the_same_parts(engine, tiny_checkpoint, tmp_path):
    if engine == "ray":
        pytest.importorskip("ray")
    images = write_images(tmp_path / "images", 300)
    argv = ["--part-size", 80]
    assert main(embed_argv(tiny_checkpoint, images, tmp_path / "one", *argv)) == 0
    more = ["--processes", 2, "--engine", engine]
    assert main(embed_argv(tiny_checkpoint, images, tmp_path / engine, *argv, *more)) == 0
    assert_same_parts(tmp_path / engine, tmp_path / "one")


def test_unreadable_images_stop_the_job_or_are_skipped_and_listed(
    tiny_checkpoint, tmp_path, capsys
):
    images = write_images(tmp_path / "images", 50)  # and 0.png: 51
    broken = sorted(images.rglob("*.png"))[30]
    broken.write_bytes(b"not a png")
    out = tmp_path / "parts"
    assert main(embed_argv(tiny_checkpoint, images, out, "--part-size", 20)) == 2
    assert str(broken) in capsys.readouterr().err
    assert PartsFolder(out).todo() == [1, 2]  # the part before it is kept
    (out / ".part-00001.x1y2.tmp.npy").write_bytes(b"half written")  # as a kill leaves it
    assert main(embed_argv(tiny_checkpoint, images, out, "--part-size", 20, "--skip-bad")) == 0
    assert "50 embeddings in 3 parts" in " ".join(capsys.readouterr().out.split())
    skipped = PartsFolder(out).skipped()
    assert [item["path"] for item in skipped] == [str(broken)]
    assert "cannot read image" in skipped[0]["error"]
    paths = [p for _, items in PartsFolder(out).parts() for p in items.column("path").to_pylist()]
    assert len(paths) == 50 and str(broken) not in paths
    assert not list(out.glob(".*.tmp*"))


def test_a_folder_of_another_job_or_parts_options_for_a_file_are_refused(
    tiny_checkpoint, tmp_path, capsys
):
    images = write_images(tmp_path / "images", 10)
    out = tmp_path / "parts"
    assert main(embed_argv(tiny_checkpoint, images, out, "--part-size", 5)) == 0
    assert main(embed_argv(tiny_checkpoint, images, out, "--part-size", 4)) == 2
    assert "another job (part_size differ)" in capsys.readouterr().err
    for flag in ("--batch-size", "--part-size", "--processes"):
        assert main(embed_argv(tiny_checkpoint, images, tmp_path / "zero", flag, 0)) == 2
        assert f"{flag} must be at least 1, got 0" in capsys.readouterr().err
    zero_threads = embed_argv(tiny_checkpoint, images, tmp_path / "zero")
    zero_threads[zero_threads.index("--threads") + 1] = "0"
    assert main(zero_threads) == 2
    assert "--threads must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "zero").exists()
    file_argv = ["embed", "--checkpoint", str(tiny_checkpoint), "--images", str(images)]
    assert main([*file_argv, "--out", str(tmp_path / "x.npz"), "--processes", "2"]) == 2
    assert "--processes: only for parts (add --parts)" in capsys.readouterr().err
    begun = tmp_path / "begun"  # killed while listing: no manifest yet
    begun.mkdir()
    (begun / "items.parquet").write_bytes(b"half a listing")
    assert main(embed_argv(tiny_checkpoint, images, begun, "--part-size", 5)) == 0
    assert_same_parts(begun, out)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert main(embed_argv(tiny_checkpoint, images, tmp_path / "other")) == 2
    assert "holds files and is not a folder of parts" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "other").iterdir()] == ["notes.txt"]
    listed = tmp_path / "list.txt"
    listed.write_text("# two of them\n" + "\n".join(str(p) for p in find_images(images)[:2]))
    assert main(embed_argv(tiny_checkpoint, listed, tmp_path / "listed")) == 0
    ((embeddings, items),) = PartsFolder(tmp_path / "listed").parts()
    assert items.column("path").to_pylist() == [str(p) for p in find_images(images)[:2]]
    assert embeddings.shape == (2, 64) and pq.read_metadata(tmp_path / "listed" / "items.parquet")
