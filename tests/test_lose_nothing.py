"""Each command run as a user would, where it used to lose a file, leave a run that could
neither resume nor rerun, mix settings silently, hang or exit without naming the problem:
exit code 2 with one line naming it (or the right thing done), and no user file changed."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from cdml.cli import main

# A run of seconds with validation classes (the tiny run of conftest.py holds out none).
TINY = [
    "--dataset", "digits", "--loss", "facility", "--image-size", "16",
    "--backbone", "test_resnet", "--set", "model.pretrained=false",
    "--batch-size", "12", "--classes-per-batch", "3", "--no-baseline",
    "--set", "data.val_fraction=0.4", "--set", "data.max_eval_per_class=20",
    "--set", "trainer.limit_train_batches=2", "--set", "trainer.progress_bar=false",
    "--set", "trainer.report=false",
]  # fmt: skip


def refused(argv, capsys, *messages):
    """Run ``cdml argv``: exit code 2, one line on stderr holding every one of ``messages``."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for message in messages:
        assert str(message) in err, err
    return err


def ok(argv):
    """Run ``cdml argv``; it succeeds."""
    assert main([str(a) for a in argv]) == 0


def snapshot(folder):
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished one-epoch run with validation classes."""
    out = tmp_path_factory.mktemp("lose-nothing") / "run"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    return out


@pytest.fixture
def ck(run):
    return run / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    """Six images of noise (each unlike the others)."""
    folder = tmp_path_factory.mktemp("gallery")
    rng = np.random.default_rng(0)
    for i in range(6):
        pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    return folder


@pytest.fixture
def embeddings(tmp_path, ck, gallery):
    out = tmp_path / "e.npz"
    ok(["embed", "--checkpoint", ck, "--images", gallery, "--out", out])
    return out


# 1. A folder of the user's files is not a run folder --------------------------------------
def test_train_refuses_a_folder_holding_the_users_files(tmp_path, capsys):
    user = tmp_path / "u"
    user.mkdir()
    (user / "config.yaml").write_text("mine\n")
    (user / "report.html").write_text("x\n")
    (user / "untrained.json").write_text('{"a":1}\n')
    before = snapshot(user)
    argv = ["train", *TINY, "--epochs", "1", "--set", "trainer.report=true", "--out", user]
    refused(argv, capsys, "holds files and is not a cdml run", "nothing was changed")
    assert snapshot(user) == before


def test_train_takes_an_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    assert main(["train", *TINY, "--epochs", "1", "--out", str(tmp_path / "empty")]) == 0


# 2. An atomic writer writes exactly the path it reports ------------------------------------
def test_embed_writes_exactly_the_path_it_names(tmp_path, ck, gallery, capsys):
    out = tmp_path / "newemb"  # no .npz suffix: numpy would add one to a file name
    ok(["embed", "--checkpoint", ck, "--images", gallery, "--out", out])
    assert f"6 embeddings written to {out}" in " ".join(capsys.readouterr().out.split())
    with np.load(out) as archive:
        assert archive["embeddings"].shape[0] == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["newemb"]  # no hidden leftovers
    # An embeddings file cdml wrote may be replaced; another file may not.
    ok(["embed", "--checkpoint", ck, "--images", gallery, "--out", out])
    precious = tmp_path / "precious"
    precious.write_text("the user's notes\n")
    argv = ["embed", "--checkpoint", ck, "--images", gallery, "--out", precious]
    refused(argv, capsys, f"--out {precious} exists and is not an embeddings file")
    assert precious.read_text() == "the user's notes\n"


def test_write_npz_keeps_the_name_and_atomic_writers_leave_no_temporaries(tmp_path):
    from cdml.io import write_npz

    write_npz(tmp_path / "plain", {"a": np.arange(3)})
    with np.load(tmp_path / "plain") as archive:
        assert archive["a"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["plain"]


# 3. An output that is an input of the same command -----------------------------------------
def test_export_refuses_to_overwrite_its_own_checkpoint(tmp_path, ck, capsys):
    mine = tmp_path / "mine.ckpt"
    shutil.copy(ck, mine)
    before = mine.read_bytes()
    argv = ["export", "--checkpoint", mine, "--out", mine, "--format", "torchscript"]
    refused(argv, capsys, f"--out {mine} is the --checkpoint file too")
    assert mine.read_bytes() == before
    assert not (tmp_path / "mine.ckpt.json").exists()


def test_export_replaces_only_a_model_it_exported(tmp_path, ck, capsys):
    model = tmp_path / "model.pt"
    argv = ["export", "--checkpoint", ck, "--out", model, "--format", "torchscript"]
    assert main([str(a) for a in argv]) == 0
    assert main([str(a) for a in argv]) == 0  # its own export: replaced
    notes = tmp_path / "notes.pt"
    notes.write_text("mine\n")
    refused(["export", "--checkpoint", ck, "--out", notes], capsys, "is not an exported model")
    sidecar = tmp_path / "other.pt.json"
    sidecar.write_text('{"mine": 1}\n')
    refused(["export", "--checkpoint", ck, "--out", tmp_path / "other.pt"], capsys,
            "sidecar", "is not an exported model's sidecar")  # fmt: skip
    assert notes.read_text() == "mine\n" and sidecar.read_text() == '{"mine": 1}\n'


@pytest.mark.parametrize("command", ["embed", "evaluate", "plot", "cluster", "report", "index"])
def test_no_command_writes_over_one_of_its_inputs(command, tmp_path, run, ck, gallery,
                                                  embeddings, capsys):  # fmt: skip
    mine = tmp_path / "mine.ckpt"
    shutil.copy(ck, mine)
    argv, victim, message = {
        "embed": (["embed", "--checkpoint", mine, "--images", gallery, "--out", mine], mine,
                  "is the --checkpoint file too"),
        "evaluate": (["evaluate", embeddings, "--json", embeddings], embeddings,
                     "is the EMBEDDINGS file too"),
        "plot": (["plot", "--embeddings", embeddings, "--out", embeddings], embeddings,
                 "is the --embeddings file too"),
        "cluster": (["cluster", "--embeddings", embeddings, "--k", "2", "--out", tmp_path],
                    embeddings, "holds the --embeddings"),
        "report": (["report", "--run", run, "--out", run / "metrics.json"],
                   run / "metrics.json", "is not a run report"),
        "index": (["index", "--checkpoint", tmp_path / "g" / "mine.ckpt", "--images", gallery,
                   "--out", tmp_path / "g", "--extend"], tmp_path / "g" / "mine.ckpt",
                  "holds the --checkpoint"),
    }[command]  # fmt: skip
    if command == "index":
        (tmp_path / "g").mkdir()
        shutil.copy(ck, victim)
    before = victim.read_bytes()
    refused(argv, capsys, message)
    assert victim.read_bytes() == before


# 4. A first epoch interrupted with validation classes resumes -----------------------------
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL])
def test_a_first_epoch_interrupted_resumes(stop, tmp_path, capsys):
    out = tmp_path / "s02"
    argv = [*TINY, "--epochs", "2", "--set", "trainer.limit_train_batches=400", "--out", out]
    argv = [str(a) for a in argv]
    env = {**os.environ, "CDML_DEBUG": ""}
    process = subprocess.Popen([sys.executable, "-m", "cdml", "train", *argv], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out / "untrained.json").is_file() and process.poll() is None:
        assert time.monotonic() < deadline, "the run never reached its first epoch"
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(stop)
    _, err = process.communicate(timeout=60)
    assert process.returncode == (143 if stop == signal.SIGTERM else -signal.SIGKILL), err
    assert not (out / "checkpoints" / "last.ckpt").exists()  # no epoch had finished
    if stop == signal.SIGTERM:
        assert b"--resume continues" in err
    refused(["train", *argv], capsys, "already holds a run; pass --resume")
    assert main(["train", *argv, "--resume"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "no epoch had finished, so the run starts again" in said
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and "untrained_val" in metrics


# 5. An index keeps the preprocessing it was built with ------------------------------------
def test_an_index_searches_and_extends_at_its_own_image_size(tmp_path, ck, gallery, capsys):
    index = tmp_path / "g.index"
    argv = ["index", "--checkpoint", ck, "--images", gallery, "--out", index, "--image-size", 24]
    assert main([str(a) for a in argv]) == 0
    assert json.loads((index / "meta.json").read_text())["image_size"] == 24
    capsys.readouterr()
    query = gallery / "3.png"
    assert main(["search", str(query), "--index", str(index), "--checkpoint", str(ck),
                 "--json", "-k", "2"]) == 0  # fmt: skip
    first = json.loads(capsys.readouterr().out)[0]["neighbours"][0]
    assert first["path"] == str(query) and first["distance"] < 1e-3
    more = tmp_path / "more"
    more.mkdir()
    shutil.copy(gallery / "0.png", more / "new.png")
    before = snapshot(index)
    extend = ["index", "--checkpoint", ck, "--images", more, "--out", index, "--extend"]
    refused([*extend, "--image-size", 32], capsys, "embedded at image size 24, not 32")
    assert snapshot(index) == before
    assert main([str(a) for a in extend]) == 0  # at the index's own size
    capsys.readouterr()
    assert main(["search", str(more / "new.png"), "--index", str(index), "--checkpoint",
                 str(ck), "--json", "-k", "2"]) == 0  # fmt: skip
    distances = [n["distance"] for n in json.loads(capsys.readouterr().out)[0]["neighbours"]]
    assert distances[0] < 1e-3 and distances[1] < 1e-3  # itself and its copy 0.png


# 6. --resume checks the checkpoint's own config -------------------------------------------
@pytest.mark.parametrize(("edit", "message"), [
    (("name: facility", "name: triplet"), "loss.name is 'facility' in the run"),
    (("embedding_size: 64", "embedding_size: 32"), "model.embedding_size is 64 in the run"),
])  # fmt: skip
def test_resume_checks_the_checkpoints_config_not_the_editable_one(edit, message, run,
                                                                   tmp_path, capsys):  # fmt: skip
    out = tmp_path / "run"
    shutil.copytree(run, out)
    config = out / "config.yaml"
    config.write_text(config.read_text().replace(*edit))
    before = snapshot(out)
    refused(["train", "--out", out, "--resume", "--epochs", "2"], capsys, message,
            out / "checkpoints" / "last.ckpt")  # fmt: skip
    assert snapshot(out) == before


# 7. Labels of an embeddings file -----------------------------------------------------------
@pytest.mark.parametrize("labels", [np.arange(8) / 2 + 0.5, np.array(list("abcdabcd"))])
def test_cluster_refuses_labels_that_are_no_class_ids(labels, tmp_path, capsys):
    path = tmp_path / "x.npz"
    np.savez(path, embeddings=np.eye(8, dtype=np.float32), labels=labels,
             paths=np.array([f"{i}.png" for i in range(8)]))  # fmt: skip
    out = tmp_path / "clusters"
    refused(["cluster", "--embeddings", path, "--k", "4", "--out", out], capsys, path,
            "'labels' must be integer class ids")  # fmt: skip
    assert not out.exists()


def test_cluster_names_the_file_without_image_paths_before_writing(tmp_path, capsys):
    path = tmp_path / "x.npz"
    np.savez(path, embeddings=np.eye(8, dtype=np.float32), labels=np.arange(8) % 4)
    out = tmp_path / "clusters"
    refused(["cluster", "--embeddings", path, "--k", "4", "--out", out], capsys,
            f"{path}: has no 'paths' or 'dataset' entry")  # fmt: skip
    assert not out.exists()


def test_integral_float_labels_are_read_as_class_ids(tmp_path):
    from cdml.inference import load_embeddings

    path = tmp_path / "x.npz"
    np.savez(path, embeddings=np.eye(4, dtype=np.float32), labels=np.array([0.0, 1, 1, 0]))
    labels = load_embeddings(path)["labels"]
    assert labels.dtype == np.int64 and labels.tolist() == [0, 1, 1, 0]


# 8. No silent substitutions ----------------------------------------------------------------
@pytest.mark.parametrize("size", ["0", "4"])
@pytest.mark.parametrize("command", ["embed", "export"])
def test_an_image_size_too_small_is_refused(command, size, tmp_path, ck, gallery, capsys):
    out = tmp_path / "out"
    argv = {
        "embed": ["embed", "--checkpoint", ck, "--images", gallery, "--out", out],
        "export": ["export", "--checkpoint", ck, "--out", out, "--format", "torchscript"],
    }[command]
    refused([*argv, "--image-size", size], capsys, "--image-size must be an integer of at "
            f"least 16, got {size}")  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_demo_refuses_zero_epochs(tmp_path, capsys):
    out = tmp_path / "demo"
    refused(["demo", "--dataset", "digits", "--epochs", "0", "--out", out], capsys,
            "trainer.epochs (--epochs) must be at least 1, got 0")  # fmt: skip
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="16-bit precision runs on a GPU")
def test_16_bit_precision_on_the_cpu_is_refused_not_replaced(tmp_path, capsys):
    out = tmp_path / "run"
    refused(["train", *TINY, "--precision", "16-mixed", "--out", out], capsys,
            "trainer.precision (--precision)", "bf16-mixed")  # fmt: skip
    assert not out.exists()


# 9, 10, 12, 13, 14. Settings that cannot work are refused before any work -------------------
@pytest.mark.parametrize(("flags", "message"), [
    (["--batch-size", "99999999"], "a batch of 99999999 images of 16 x 16 pixels needs"),
    (["--batch-size", "5000"], "holds 543 images; give at most 543"),
    (["--image-size", "100000"], "of 100000 x 100000 pixels needs at least"),
    (["--num-nodes", "2"], "trainer.num_nodes (--num-nodes) must be 1 without a launcher"),
    (["--seed", "-1"], "trainer.seed (--seed) must be an integer in 0..4294967295, got -1"),
    (["--set", "data.mean=[.nan,0,0]"], "data.mean must be 3 finite numbers"),
    (["--set", "data.std=[0,1,1]"], "data.std must be positive"),
])  # fmt: skip
def test_a_run_that_cannot_work_is_refused_at_once(flags, message, tmp_path, monkeypatch,
                                                   capsys):  # fmt: skip
    for launcher in ("NODE_RANK", "SLURM_NTASKS", "SLURM_JOB_NAME", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(launcher, raising=False)
    out = tmp_path / "run"
    start = time.monotonic()
    refused(["train", *TINY, *flags, "--out", out], capsys, message)
    assert time.monotonic() - start < 60
    assert not (out / "config.yaml").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="-1 means every GPU where there are some")
def test_all_devices_on_the_cpu_is_refused_by_name(tmp_path, capsys):
    refused(["train", *TINY, "--devices", "-1", "--out", tmp_path / "run"], capsys,
            "trainer.devices (--devices)")  # fmt: skip


def test_a_run_refused_after_loading_its_data_can_be_rerun(tmp_path, capsys):
    out = tmp_path / "run"
    refused(["train", *TINY, "--batch-size", "5000", "--out", out], capsys, "give at most")
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0


@pytest.mark.parametrize("command", ["plot", "cluster"])
def test_a_negative_seed_names_the_flag(command, tmp_path, embeddings, capsys):
    argv = {
        "plot": ["plot", "--embeddings", embeddings, "--out", tmp_path / "p.png"],
        "cluster": ["cluster", "--embeddings", embeddings, "--out", tmp_path / "c"],
    }[command]
    refused([*argv, "--seed", "-1"], capsys, "--seed must be an integer in 0..4294967295")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.npz"]


# 11. A full disk while saving a checkpoint -------------------------------------------------
def test_a_full_disk_is_named_and_the_last_checkpoint_kept(run, tmp_path, capsys):
    """On a real full disk: the run copied onto a small tmpfs that has no room for another
    checkpoint."""
    disk = tmp_path / "disk"
    disk.mkdir()
    size = sum(p.stat().st_size for p in run.rglob("*") if p.is_file())
    room = size + (run / "checkpoints" / "last.ckpt").stat().st_size // 2
    mount = ["mount", "-t", "tmpfs", "-o", f"size={room}", "tmpfs", str(disk)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("needs permission to mount a tmpfs (root)")
    try:
        out = disk / "run"
        shutil.copytree(run, out)
        last = out / "checkpoints" / "last.ckpt"
        before = last.read_bytes()
        refused(["train", "--out", out, "--resume", "--epochs", "2"], capsys,
                f"cannot write checkpoint {last}: the disk is full",
                "the previous one is kept")  # fmt: skip
        assert last.read_bytes() == before
        assert sorted(p.name for p in last.parent.iterdir()) == ["best.ckpt", "last.ckpt"]
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_checkpoint_write_failing_inside_torch_is_named_as_a_full_disk(tmp_path, monkeypatch):
    from cdml.training import callbacks

    path = tmp_path / "last.ckpt"

    def torch_full_disk(checkpoint, file):  # what torch's zip writer raises on ENOSPC
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64")

    monkeypatch.setattr(callbacks.torch, "save", torch_full_disk)
    monkeypatch.setattr(callbacks.shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(1, 1, 0))
    with pytest.raises(OSError, match="the disk is full .0 MiB free"):
        callbacks.AtomicCheckpointIO().save_checkpoint({"w": torch.ones(1 << 20)}, path)


def test_temporaries_of_a_killed_save_are_removed_when_the_run_resumes(run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    stale = out / "checkpoints" / ".last.x1y2.tmp.ckpt"
    stale.write_bytes(b"half a checkpoint")
    assert main(["train", "--out", str(out), "--resume", "--epochs", "1"]) == 0
    assert not stale.exists()


# 12. Edited or inconsistent files exit 2 ---------------------------------------------------
def test_an_index_whose_kind_was_edited_is_named(tmp_path, ck, gallery, capsys):
    index = tmp_path / "g"
    assert main(["index", "--checkpoint", str(ck), "--images", str(gallery), "--out",
                 str(index)]) == 0  # fmt: skip
    for kind in ("ivf", "hnsw", "bogus"):
        meta = json.loads((index / "meta.json").read_text())
        (index / "meta.json").write_text(json.dumps({**meta, "kind": kind}))
        refused(["search", gallery / "0.png", "--index", index, "--checkpoint", ck], capsys,
                index / "meta.json", f"kind {kind!r} does not describe the index")  # fmt: skip


def test_plot_of_a_file_with_fewer_paths_than_embeddings_is_named(tmp_path, capsys):
    path = tmp_path / "x.npz"
    np.savez(path, embeddings=np.eye(6, dtype=np.float32), labels=np.arange(6) % 2,
             paths=np.array(["a.png", "b.png"]))  # fmt: skip
    refused(["plot", "--embeddings", path, "--out", tmp_path / "p.png", "--retrieval"], capsys,
            path, "'paths' has shape (2,)")  # fmt: skip
    assert not (tmp_path / "p.png").exists()


# 15. A damaged file of a run is named before any work --------------------------------------
def test_a_damaged_untrained_json_is_named_before_training(run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    (out / "untrained.json").write_text("{bad")
    before = snapshot(out)
    refused(["train", "--out", out, "--resume", "--epochs", "2"], capsys,
            f"{out / 'untrained.json'}: unreadable")  # fmt: skip
    assert snapshot(out) == before


def test_an_unknown_setting_in_a_checkpoint_names_the_checkpoint(tmp_path, ck, gallery, capsys):
    checkpoint = torch.load(ck, weights_only=True)
    checkpoint["hyper_parameters"]["data"]["future_option"] = 1
    future = tmp_path / "future.ckpt"
    torch.save(checkpoint, future)
    refused(["embed", "--checkpoint", future, "--images", gallery, "--out", tmp_path / "e.npz"],
            capsys, f"{future}: the config saved in the checkpoint: unknown setting "
            "'data.future_option'")  # fmt: skip


# 16. --config with --resume is honoured, not ignored ---------------------------------------
def test_resume_with_a_config_file_checks_and_uses_it(run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    other = tmp_path / "other.yaml"
    other.write_text((out / "config.yaml").read_text().replace("name: facility", "name: triplet"))
    refused(["train", "--config", other, "--out", out, "--resume"], capsys,
            "loss.name is 'facility' in the run")  # fmt: skip
    longer = tmp_path / "longer.yaml"
    longer.write_text((out / "config.yaml").read_text().replace("epochs: 1", "epochs: 2"))
    assert main(["train", "--config", str(longer), "--out", str(out), "--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2


# 17. A checkpoint holds its weights ---------------------------------------------------------
def test_a_checkpoint_embeds_after_its_backbone_weights_file_is_gone(tmp_path, gallery):
    import timm

    weights = tmp_path / "backbone.pt"
    torch.save(timm.create_model("test_resnet", num_classes=0).state_dict(), weights)
    out = tmp_path / "run"
    argv = [*TINY, "--set", f"model.weights={weights}", "--epochs", "1", "--out", str(out)]
    assert main(["train", *argv]) == 0
    weights.unlink()
    assert main(["embed", "--checkpoint", str(out / "checkpoints" / "last.ckpt"), "--images",
                 str(gallery), "--out", str(tmp_path / "e.npz")]) == 0  # fmt: skip


# Found on review: seeds beyond faiss's, an index folder with the user's files, a clustering
# of images inside its own output, a flag that is not valid YAML.
def test_the_largest_seed_clusters(tmp_path):
    from cdml.clustering import cluster

    points = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    for method in ("kmeans", "spectral"):
        assert cluster(points, 3, method, seed=2**32 - 1).k == 3


def test_an_index_is_not_saved_over_a_folder_holding_other_files(tmp_path):
    from cdml.retrieval import GalleryIndex

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    gallery = GalleryIndex.create(4)
    gallery.add(np.eye(4, dtype=np.float32), list("abcd"))
    with pytest.raises(ValueError, match="holds files that are not an index's \\(notes.txt\\)"):
        gallery.save(folder)
    assert (folder / "notes.txt").read_text() == "mine\n"


def test_cluster_refuses_images_inside_its_output(tmp_path, ck, gallery, capsys):
    out = tmp_path / "c"
    shutil.copytree(gallery, out / "photos")
    refused(["cluster", "--checkpoint", ck, "--images", out / "photos", "--out", out], capsys,
            f"--out {out} holds the --images")  # fmt: skip


def test_a_flag_that_is_not_valid_yaml_names_the_flag(tmp_path, capsys):
    refused(["train", *TINY, "--epochs", "[", "--out", tmp_path / "r"], capsys,
            "--epochs: cannot read '['")  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cluster", "--embeddings", "e.npz", "--out", "c", "--k", "0"], "argument --k:"),
        (["train", "--epochs"], "argument --epochs: expected one argument"),
        (["bogus"], "invalid choice: 'bogus'"),
    ],
)
def test_an_argument_the_parser_refuses_is_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
