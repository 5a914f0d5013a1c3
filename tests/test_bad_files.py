"""Every command x every kind of bad file: exit code 2, one line naming the file, no
traceback, nothing executed from the file, and what was there before left untouched."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cdml.cli import main
from cdml.viz.contact_sheet import contact_sheet

KINDS = ["missing", "folder", "empty", "random", "truncated", "pickle", "other-kind"]


class Marker:
    """Unpickling it would create a file: the proof that a pickle was executed."""

    path = ""

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def valid(tiny_checkpoint, tmp_path_factory):
    """A trained checkpoint, its run, an index, embeddings, a config, a CSV and an image."""
    root = tmp_path_factory.mktemp("valid")
    checkpoint = tiny_checkpoint
    run = checkpoint.parent.parent
    images = root / "images"
    images.mkdir()
    for i in range(4):
        Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(images / f"{i}.png")
    index = root / "index"
    argv = ["index", "--checkpoint", str(checkpoint), "--images", str(images), "--out", str(index)]
    assert main(argv) == 0
    embeddings = root / "e.npz"
    np.savez(embeddings, embeddings=np.eye(6, dtype=np.float32), labels=np.arange(6) % 2)
    config = root / "config.yaml"
    config.write_text("data:\n  dataset: digits\nloss:\n  name: triplet\n")
    csv = root / "list.csv"
    rows = "".join(f"c{i % 2},images/{i}.png,train\n" for i in range(4))
    csv.write_text("label,path,split\n" + rows)
    return {
        "ckpt": checkpoint, "run": run, "index": index, "npz": embeddings, "yaml": config,
        "csv": csv, "png": images / "0.png", "images": images,
    }  # fmt: skip


def bad_file(kind, valid_file, other_file, folder, name):
    """A file at ``folder/name`` of ``kind`` standing for ``valid_file``."""
    path = folder / name
    if kind == "folder":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "truncated":
        data = valid_file.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "pickle":
        Marker.path = str(folder / "EXECUTED")
        path.write_bytes(pickle.dumps({"state_dict": Marker()}))
    elif kind == "other-kind":
        path.write_bytes(other_file.read_bytes())
    return path


def check_refused(argv, culprit, capsys, folder, untouched=()):
    before = {path: path.read_bytes() for path in untouched}
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert str(culprit) in err, err
    assert not (folder / "EXECUTED").exists()
    for path, data in before.items():
        assert path.read_bytes() == data, f"{path} was changed"


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_checkpoint(kind, valid, tmp_path, capsys):
    ckpt = bad_file(kind, valid["ckpt"], valid["png"], tmp_path, "model.ckpt")
    out = tmp_path / "out.npz"  # embeddings of an earlier run, which embed may replace
    np.savez(out, embeddings=np.ones((2, 2), np.float32))
    gallery = ["--images", valid["images"]]
    for argv in (
        ["embed", "--checkpoint", ckpt, "--dataset", "digits", "--out", out],
        ["evaluate", "--checkpoint", ckpt, "--dataset", "digits"],
        ["index", "--checkpoint", ckpt, *gallery, "--out", tmp_path / "new-index"],
        ["search", valid["png"], "--index", valid["index"], "--checkpoint", ckpt],
    ):
        check_refused(argv, ckpt, capsys, tmp_path, untouched=[out])
    assert not (tmp_path / "new-index").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_resume_checkpoint(kind, valid, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(valid["run"], run)
    last = run / "checkpoints" / "last.ckpt"
    last.unlink()
    bad = bad_file(kind, valid["ckpt"], valid["png"], run / "checkpoints", "last.ckpt")
    kept = [run / "config.yaml", run / "metrics.json"]
    argv = ["train", "--out", run, "--resume", "--epochs", "2"]
    check_refused(argv, bad, capsys, tmp_path, untouched=kept)


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_embeddings_file(kind, valid, tmp_path, capsys):
    npz = bad_file(kind, valid["npz"], valid["png"], tmp_path, "e.npz")
    out = contact_sheet([np.zeros((4, 4, 3), np.uint8)], tmp_path / "out.png")  # plot's own
    for argv in (
        ["evaluate", npz],
        ["plot", "--embeddings", npz, "--out", out],
        ["plot", "--embeddings", npz, "--out", out, "--retrieval"],
    ):
        check_refused(argv, npz, capsys, tmp_path, untouched=[out])


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_config_file(kind, valid, tmp_path, capsys):
    config = bad_file(kind, valid["yaml"], valid["png"], tmp_path, "config.yaml")
    argv = ["train", "--config", config, "--out", tmp_path / "run"]
    check_refused(argv, config, capsys, tmp_path)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_csv_file(kind, valid, tiny_run, tmp_path, capsys):
    csv = bad_file(kind, valid["csv"], valid["png"], tmp_path, "list.csv")
    for argv in (
        ["train", *tiny_run, "--dataset", "csv", "--data-root", csv, "--out", tmp_path / "run"],
        ["embed", "--checkpoint", valid["ckpt"], "--dataset", "csv", "--data-root", csv,
         "--out", tmp_path / "e.npz"],
    ):  # fmt: skip
        check_refused(argv, csv, capsys, tmp_path)
    assert not (tmp_path / "run" / "config.yaml").exists() and not (tmp_path / "e.npz").exists()


IMAGE_KINDS = ["empty", "random", "truncated", "pickle", "other-kind", "bomb"]


def bad_image(kind, valid, folder):
    if kind == "bomb":
        path = folder / "bomb.png"
        Image.new("1", (20_000, 10_000)).save(path)  # 200 million pixels, a few kilobytes
        return path
    big = folder / "big.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)).save(big)
    path = bad_file(kind, big, valid["npz"], folder, "bad.png")
    big.unlink()
    return path


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_a_bad_image(kind, valid, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(images / "good.png")
    image = bad_image(kind, valid, images)
    out = tmp_path / "out.npz"  # embeddings of an earlier run, which embed may replace
    np.savez(out, embeddings=np.ones((2, 2), np.float32))
    index = tmp_path / "index"
    ckpt = valid["ckpt"]
    for argv in (
        ["embed", "--checkpoint", ckpt, "--images", images, "--out", out],
        ["index", "--checkpoint", ckpt, "--images", images, "--out", index],
        ["search", image, "--index", valid["index"], "--checkpoint", ckpt],
    ):
        check_refused(argv, image, capsys, tmp_path, untouched=[out])
    assert not index.exists()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("part", ["index.faiss", "items.npz", "meta.json"])
def test_a_bad_index_folder(part, kind, valid, tmp_path, capsys):
    import shutil

    index = tmp_path / "index"
    shutil.copytree(valid["index"], index)
    (index / part).unlink()
    if kind == "missing":
        bad = index / part
    else:
        other = valid["png"] if part != "meta.json" else valid["npz"]
        bad = bad_file(kind, valid["index"] / part, other, index, part)
    kept = [p for p in index.iterdir() if p.is_file()]
    ckpt = valid["ckpt"]
    for argv in (
        ["search", valid["png"], "--index", index, "--checkpoint", ckpt],
        ["index", "--checkpoint", ckpt, "--images", valid["images"], "--out", index, "--extend"],
    ):
        check_refused(argv, bad, capsys, tmp_path, untouched=kept)


def test_an_unreadable_file_is_named(valid, tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root reads every file: permissions cannot be tested")
    npz = tmp_path / "e.npz"
    npz.write_bytes(valid["npz"].read_bytes())
    npz.chmod(0)
    check_refused(["evaluate", npz], npz, capsys, tmp_path)


def image_list(folder, *bad, rows_per_class=3):
    """A CSV of two training and two test classes of good images, and the ``bad`` ones (files
    under ``folder``)."""
    lines = ["label,path,split"]
    for label, split in (("a", "train"), ("b", "train"), ("c", "test"), ("d", "test")):
        for i in range(rows_per_class):
            name = f"{label}{i}.png"
            Image.fromarray(np.full((20, 20, 3), 20 * i + 60 * (label > "b"), np.uint8)).save(
                folder / name
            )
            lines.append(f"{label},{name},{split}")
    lines += [f"c,{path.relative_to(folder)},test" for path in bad]  # every test image is read
    csv = folder / "list.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv


UNREADABLE = ["bomb", "truncated", "empty"]


@pytest.mark.parametrize("kind", UNREADABLE)
def test_a_csv_naming_a_bad_image_is_refused(kind, valid, tmp_path, capsys):
    image = bad_image(kind, valid, tmp_path)
    csv = image_list(tmp_path, image)
    source = ["--dataset", "csv", "--data-root", csv, "--split", "test"]
    argv = ["embed", "--checkpoint", valid["ckpt"], *source, "--out", tmp_path / "e.npz"]
    check_refused(argv, image, capsys, tmp_path)


def test_training_skips_the_bad_images_of_a_csv_with_a_report(valid, tiny_run, tmp_path):
    images = []
    for kind in UNREADABLE:
        (tmp_path / kind).mkdir()
        images.append(bad_image(kind, valid, tmp_path / kind))
    csv = image_list(tmp_path, *images)
    train = ["train", *tiny_run, "--dataset", "csv", "--data-root", csv, "--classes-per-batch", "2",
             "--batch-size", "4", "--set", "data.max_eval_per_class=null"]  # fmt: skip
    out = tmp_path / "run"
    # As a user runs it: the images are read in a loading worker, which reports them on stderr.
    command = [sys.executable, "-m", "cdml", *train, "--set", "data.skip_bad=true", "--out", out]
    run = subprocess.run([str(a) for a in command], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    for image in images:
        assert f"skipped unreadable image {image}" in run.stderr
