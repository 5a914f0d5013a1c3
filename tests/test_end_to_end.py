"""The main job through the command line on tiny data: train, resume, embed, evaluate, plot."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cdml.cli import main

# A small randomly initialised backbone keeps the runs to seconds; the shipped weights of the
# default backbone are tested in tests/models.
TINY = [
    "--dataset", "digits", "--loss", "facility", "--image-size", "16",
    "--backbone", "test_resnet", "--set", "model.pretrained=false",
    "--batch-size", "12", "--classes-per-batch", "3",
    "--set", "data.val_fraction=0.4", "--set", "data.resize_ratio=1.0",
    "--set", "trainer.limit_train_batches=3", "--set", "trainer.progress_bar=false",
    "--set", "trainer.log_every_n_steps=1", "--set", "trainer.report=false",
]  # fmt: skip


def train(out, *extra):
    return main(["train", *TINY, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits"
    assert train(out, "--epochs", "1", "--set", "trainer.report=true") == 0
    return out


def test_train_writes_the_run_folder(trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert set(metrics) >= {"test", "val", "untrained", "untrained_val", "epochs", "checkpoint"}
    recalls = ("recall@1", "recall@2", "recall@4", "recall@8")
    assert list(metrics["test"]) == [*recalls, "nmi", "ami", "ari", "purity", "map@r"]
    assert metrics["epochs"] == 1
    assert (trained_run / "config.yaml").is_file()
    assert (trained_run / "checkpoints" / "best.ckpt").is_file()
    assert (trained_run / "checkpoints" / "last.ckpt").is_file()
    logged = (trained_run / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert "train/loss_step" in logged and "val/recall@1" in logged
    page = (trained_run / "report.html").read_text()  # written at the end of the run
    for section in ("config", "metrics", "curves", "tsne", "retrieval", "worst-queries"):
        assert f'<section id="{section}">' in page
    assert "train/clustering_score_step" in logged and "train/margin_multiplier" in logged
    assert list((trained_run / "logs" / "version_0").glob("events.out.tfevents.*"))


def test_the_untrained_model_is_the_first_validation_point(trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert set(metrics["untrained_val"]) == set(metrics["val"])
    rows = (trained_run / "logs" / "version_0" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    step, val = header.index("step"), header.index("val/recall@1")
    validated = [row.split(",") for row in rows[1:] if row.split(",")[val]]
    assert validated[0][step] == "0"  # before any training step
    assert float(validated[0][val]) == pytest.approx(metrics["untrained_val"]["recall@1"])
    assert metrics["best_epoch"] in (-1, 0)


def test_no_epoch_better_than_the_untrained_model_keeps_it(tmp_path, capsys):
    # Learning rates of 0 (and frozen BatchNorm statistics): every epoch validates exactly as
    # the untrained model, so none beats it.
    out = tmp_path / "unchanged"
    assert train(out, "--epochs", "2", "--no-baseline", "--set", "optim.backbone_lr=0",
                 "--set", "optim.head_lr=0") == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_epoch"] == -1
    assert metrics["val"] == pytest.approx(metrics["untrained_val"])
    printed = capsys.readouterr().out
    assert "No epoch beat the untrained model" in printed
    assert "change (points)" in printed and "validation classes" in printed


def test_resume_continues_and_refuses_to_overwrite(trained_run, capsys):
    assert train(trained_run, "--epochs", "1") == 2
    assert "already holds a run" in capsys.readouterr().err
    first_log = (trained_run / "logs" / "version_0" / "metrics.csv").read_text()
    assert main(["train", "--out", str(trained_run), "--resume", "--epochs", "2"]) == 0
    assert json.loads((trained_run / "metrics.json").read_text())["epochs"] == 2
    # The epochs before the interruption keep their log; the resumed ones get their own.
    assert (trained_run / "logs" / "version_0" / "metrics.csv").read_text() == first_log
    assert (trained_run / "logs" / "version_1" / "metrics.csv").is_file()


def test_embed_evaluate_and_plot(trained_run, tmp_path, capsys):
    checkpoint = trained_run / "checkpoints" / "best.ckpt"
    embeddings = tmp_path / "test.npz"
    args = ["--checkpoint", str(checkpoint), "--dataset", "digits", "--split", "test"]
    assert main(["embed", *args, "--out", str(embeddings)]) == 0
    with np.load(embeddings) as arrays:
        assert arrays["embeddings"].shape == (896, 64)
        assert np.allclose(np.linalg.norm(arrays["embeddings"], axis=1), 1, atol=1e-5)
        assert sorted(set(arrays["labels"].tolist())) == [0, 1, 2, 3, 4]

    report = tmp_path / "metrics.json"
    assert main(["evaluate", *args, "--json", str(report)]) == 0
    from_checkpoint = json.loads(report.read_text())
    assert main(["evaluate", str(embeddings), "--json", str(report)]) == 0
    assert json.loads(report.read_text()) == pytest.approx(from_checkpoint)

    tsne = tmp_path / "tsne.png"
    assert main(["plot", "--embeddings", str(embeddings), "--out", str(tsne), "--images"]) == 0
    grid = tmp_path / "grid.png"
    assert main(["plot", "--embeddings", str(embeddings), "--out", str(grid), "--retrieval"]) == 0
    for figure in (tsne, grid):
        assert Image.open(figure).format == "PNG"
    assert "written to" in capsys.readouterr().out


def test_embed_an_image_folder(trained_run, tmp_path):
    folder = tmp_path / "images" / "nested"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((20, 20, 3), 80 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "folder.npz"
    checkpoint = trained_run / "checkpoints" / "last.ckpt"
    assert main(["embed", "--checkpoint", str(checkpoint), "--images", str(tmp_path / "images"),
                 "--out", str(out)]) == 0  # fmt: skip
    with np.load(out) as arrays:
        assert arrays["embeddings"].shape == (3, 64)
        assert [p.rsplit("/", 1)[-1] for p in arrays["paths"]] == ["0.png", "1.png", "2.png"]


def test_interrupted_run_resumes_to_the_same_state(tmp_path):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert train(straight, "--epochs", "2", "--no-baseline") == 0
    assert train(interrupted, "--epochs", "1", "--no-baseline") == 0
    assert main(["train", "--out", str(interrupted), "--resume", "--epochs", "2"]) == 0
    a = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(interrupted / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["epoch"] == b["epoch"] and a["global_step"] == b["global_step"]
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=1e-6, msg=key)
    a_metrics = json.loads((straight / "metrics.json").read_text())
    b_metrics = json.loads((interrupted / "metrics.json").read_text())
    assert b_metrics["test"] == pytest.approx(a_metrics["test"], abs=1e-6)


@pytest.mark.parametrize("loss", ["facility", "group", "triplet", "lifted", "npairs"])
def test_every_loss_trains_in_bf16_mixed_precision(loss, tmp_path):
    # 32 px: at 16 px the last stage's stride-2 convolution sees a 1 x 1 map, whose bf16
    # weight gradient oneDNN returns as NaN on CPUs with AVX-512 BF16 / AMX (torch 2.14).
    argv = [*TINY, "--loss", loss, "--precision", "bf16-mixed", "--epochs", "1", "--no-baseline"]
    argv += ["--image-size", "32"]
    assert main(["train", *argv, "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert all(np.isfinite(value) for value in metrics["test"].values())
    logged = (tmp_path / "logs" / "version_0" / "metrics.csv").read_text().splitlines()
    column = logged[0].split(",").index("train/loss_step")
    losses = [float(row.split(",")[column]) for row in logged[1:] if row.split(",")[column]]
    assert losses and all(np.isfinite(losses))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--dataset", "digits"], "missing: --loss"),
        (["train", "--config", "absent.yaml"], "--config: no such file"),
        (["train", "--out", "nowhere", "--resume"], "no run to resume"),
        (["train", *TINY, "--set", "optim.colour=red"], "unknown setting 'optim.colour'"),
        (["train", *TINY, "--set", "novalue"], "--set expects KEY=VALUE"),
        (
            ["train", "--dataset", "cub200", "--data-root", "absent", "--loss", "facility"],
            "cub200",
        ),
        (
            ["embed", "--checkpoint", "absent.ckpt", "--dataset", "digits", "--out", "x.npz"],
            "no such checkpoint",
        ),
        (["embed", "--checkpoint", "absent.ckpt", "--out", "x.npz"], "either --dataset"),
        (["plot", "--embeddings", "absent.npz", "--out", "x.png"], "no such file"),
        (["evaluate"], "give either"),
    ],
)
def test_cli_errors_are_one_line_with_exit_2(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert train(blocker / "run", "--epochs", "1") == 2
    assert "not writable" in capsys.readouterr().err
    assert blocker.read_text() == "not a folder"


def test_bad_checkpoint_file_is_rejected(tmp_path, capsys):
    fake = tmp_path / "fake.ckpt"
    fake.write_bytes(b"\x80\x04not a checkpoint")
    args = [
        "embed",
        "--checkpoint",
        str(fake),
        "--dataset",
        "digits",
        "--out",
        str(tmp_path / "e.npz"),
    ]
    assert main(args) == 2
    assert "not a readable cdml checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "e.npz").exists()


def test_resume_refuses_what_the_checkpoint_cannot_honour_and_changes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, "--epochs", "1", "--no-baseline") == 0
    recorded = (out / "config.yaml").read_bytes()
    last = out / "checkpoints" / "last.ckpt"
    saved = last.read_bytes()
    resume = ["train", "--out", str(out), "--resume", "--epochs", "2"]
    for change, key in [
        (["--embedding-size", "16"], "model.embedding_size is 64 in the run"),
        (["--loss", "triplet"], "loss.name is 'facility' in the run"),
        (["--set", "data.classes_per_batch=2"], "data.classes_per_batch is 3 in the run"),
    ]:
        assert main([*resume, *change]) == 2
        err = capsys.readouterr().err
        assert key in err and "Traceback" not in err
        assert (out / "config.yaml").read_bytes() == recorded
    last.write_bytes(saved[: len(saved) // 2])  # a checkpoint truncated by a full disk
    assert main(resume) == 2
    assert "not a readable cdml checkpoint" in capsys.readouterr().err
    assert (out / "config.yaml").read_bytes() == recorded
    last.write_bytes(saved)
    assert main(resume) == 0  # a plain resume still continues the run
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2


def test_a_csv_without_test_rows_reports_no_test_metrics(tmp_path, capsys):
    rows = ["label,path,split"]
    for label in range(8):
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 30 * i + label, np.uint8)).save(
                tmp_path / f"{label}_{i}.png"
            )
            rows.append(f"c{label},{label}_{i}.png,train")
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    argv = ["train", *TINY, "--dataset", "csv", "--data-root", str(tmp_path / "list.csv")]
    assert main([*argv, "--set", "data.val_fraction=0.5", "--epochs", "1", "--out", str(out)]) == 0
    assert "no labelled test split (no test images)" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert "test" not in metrics and "untrained" not in metrics and "val" in metrics


def test_a_run_folder_in_use_is_refused_and_a_stale_lock_is_taken_over(tmp_path, capsys):
    import os
    import socket
    import subprocess

    from cdml.training.run_folder import LOCK_FILE

    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_FILE).write_text(f"{socket.gethostname()} {os.getpid()}\n")  # a live holder
    assert train(out, "--epochs", "1", "--no-baseline") == 2
    err = capsys.readouterr().err
    assert f"in use by another cdml run (process {os.getpid()}" in err
    assert not (out / "config.yaml").exists()
    gone = subprocess.Popen(["true"])
    gone.wait()
    (out / LOCK_FILE).write_text(f"{socket.gethostname()} {gone.pid}\n")  # left by a crash
    assert train(out, "--epochs", "1", "--no-baseline") == 0
    assert not (out / LOCK_FILE).exists()  # released at the end of the run


def test_saturated_validation_does_not_choose_the_checkpoint(tmp_path, monkeypatch, capsys):
    from cdml.training import module

    perfect = {"recall@1": 1.0, "recall@2": 1.0, "nmi": 0.9, "map@r": 1.0}
    monkeypatch.setattr(module, "evaluate", lambda *args, **kwargs: dict(perfect))
    out = tmp_path / "run"
    assert train(out, "--epochs", "1", "--no-baseline") == 0
    assert "already perfect on the validation classes" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["checkpoint"] == "checkpoints/last.ckpt" and "best_epoch" not in metrics


def test_the_monitored_metric_chooses_the_checkpoint(tmp_path, monkeypatch):
    import itertools

    from cdml.training import module

    def scripted_evaluate():
        # The untrained model, then epochs 0, 1, 2: Recall@1 is best at epoch 0, NMI at 2.
        values = itertools.chain([(0.5, 0.1), (0.9, 0.2), (0.6, 0.3), (0.55, 0.4)],
                                 itertools.repeat((0.5, 0.5)))  # fmt: skip

        def evaluate(embeddings, labels, **kwargs):
            recall, nmi = next(values)
            return {"recall@1": recall, "recall@2": recall, "nmi": nmi, "map@r": 0.5}

        return evaluate

    for monitor, best in (("val/nmi", 2), ("val/recall@1", 0)):
        monkeypatch.setattr(module, "evaluate", scripted_evaluate())
        out = tmp_path / monitor.replace("/", "-")
        assert (
            train(out, "--epochs", "3", "--no-baseline", "--set", f"trainer.monitor={monitor}") == 0
        )
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["monitor"] == monitor and metrics["best_epoch"] == best
    argv = ["train", *TINY, "--set", "trainer.monitor=val/loss", "--out", str(tmp_path / "r")]
    assert main(argv) == 2


def write_oml_csv(folder):
    """scikit-learn's digits as an open-metric-learning CSV: digits 0-4 train (marks left
    empty), 5-9 validation, in-shop style (each class's first four images query, the rest
    are the gallery), a category per row and OML's bounding-box columns."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows = ["label,path,split,is_query,is_gallery,category,x_1,x_2,y_1,y_2"]
    for digit in range(10):
        for n, index in enumerate(np.flatnonzero(digits.target == digit)[:12]):
            pixels = (digits.images[index] * 255 / 16).astype(np.uint8)
            Image.fromarray(pixels).resize((16, 16)).save(folder / f"{digit}_{n}.png")
            category = "round" if digit in (0, 6, 8, 9) else "straight"
            marks = ",," if digit < 5 else ("True,False" if n < 4 else "False,True")
            split = "train" if digit < 5 else "validation"
            rows.append(f"d{digit},{digit}_{n}.png,{split},{marks},{category},0,16,0,16")
    (folder / "oml.csv").write_text("\n".join(rows) + "\n")
    return folder / "oml.csv"


def test_an_oml_csv_trains_and_evaluates_queries_against_the_gallery(tmp_path, capsys):
    from cdml.metrics import evaluate

    listing = write_oml_csv(tmp_path)
    data = ["--dataset", "csv", "--data-root", str(listing)]
    out = tmp_path / "run"
    argv = ["train", *TINY, *data, "--set", "data.val_fraction=0", "--epochs", "1"]
    assert main([*argv, "--out", str(out)]) == 0
    assert "per category" in capsys.readouterr().out
    test = json.loads((out / "metrics.json").read_text())["test"]
    # 20 queries (4 of each test class), 12 of them "round" (6, 8, 9), in 40 gallery images.
    for name in ("recall@1", "map@r"):
        weighted = 0.6 * test[f"{name}/round"] + 0.4 * test[f"{name}/straight"]
        assert test[name] == pytest.approx(weighted)

    embedded = tmp_path / "test.npz"
    checkpoint = str(out / "checkpoints" / "last.ckpt")
    assert main(["embed", "--checkpoint", checkpoint, *data, "--out", str(embedded)]) == 0
    arrays = np.load(embedded)
    assert arrays["is_query"].sum() == 20 and arrays["is_gallery"].sum() == 40
    assert main(["evaluate", str(embedded), "--json", str(tmp_path / "m.json")]) == 0
    assert "20 queries in a gallery of 40" in " ".join(capsys.readouterr().out.split())
    reported = json.loads((tmp_path / "m.json").read_text())
    marks = {k: arrays[k] for k in ("is_query", "is_gallery", "categories")}
    assert reported == evaluate(arrays["embeddings"], arrays["labels"], **marks)
    everyone = evaluate(arrays["embeddings"], arrays["labels"])  # each image queries the rest
    assert reported["map@r"] != everyone["map@r"]
