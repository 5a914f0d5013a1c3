import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from cdml.cli import main


@pytest.fixture
def embeddings_file(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 10)
    embeddings = rng.normal(size=(6, 8))[labels] + 0.3 * rng.normal(size=(60, 8))
    path = tmp_path / "emb.npz"
    np.savez(path, embeddings=embeddings, labels=labels)
    return path


def test_evaluate_prints_table_and_writes_json(embeddings_file, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    assert main(["evaluate", str(embeddings_file), "--ks", "1,10", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "R@10" in printed and "MAP@R" in printed
    metrics = json.loads(out.read_text())
    assert list(metrics) == ["recall@1", "recall@10", "nmi", "ami", "ari", "purity", "map@r"]
    assert metrics["recall@1"] > 0.9


def test_evaluate_averages_clustering_scores_over_nmi_runs(embeddings_file, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    argv = ["evaluate", str(embeddings_file), "--nmi-runs", "4", "--json", str(out)]
    assert main(argv) == 0
    assert json.loads(out.read_text())["nmi_std"] >= 0
    assert main(["evaluate", str(embeddings_file), "--nmi-runs", "0"]) == 2
    assert "nmi_runs must be at least 1" in capsys.readouterr().err


def _write(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("make_file", "message"),
    [
        (lambda d: d / "absent.npz", "no such file"),
        (lambda d: (d / "x.npz").write_text("hello") and d / "x.npz", "not a .npz archive"),
        (lambda d: _write(d, "a.npz", embeddings=np.zeros((4, 2))), "no array 'labels'"),
        (
            lambda d: _write(d, "b.npz", embeddings=np.zeros((4, 2)), labels=np.zeros(3, int)),
            "4 rows but 'labels' has shape (3,)",
        ),
        (
            lambda d: _write(d, "c.npz", embeddings=np.zeros((4, 2)), labels=np.arange(4)),
            "fewer than two",
        ),
    ],
)
def test_evaluate_bad_input_is_one_line_and_exit_2(tmp_path, capsys, make_file, message):
    path = make_file(tmp_path)
    assert main(["evaluate", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_json_is_not_written_when_evaluation_fails(tmp_path):
    bad = _write(tmp_path, "b.npz", embeddings=np.zeros((4, 2)), labels=np.arange(4))
    out = tmp_path / "metrics.json"
    out.write_text("previous")
    assert main(["evaluate", str(bad), "--json", str(out)]) == 2
    assert out.read_text() == "previous"


def test_console_script_exit_code(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cdml.cli", "evaluate", str(tmp_path / "absent.npz")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"cdml evaluate: error: {tmp_path / 'absent.npz'}: no such file"


def test_bad_ks_is_rejected_by_the_parser(embeddings_file):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(embeddings_file), "--ks", "1,x"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--epochs", "-1"], "trainer.epochs (--epochs) must be at least 1, got -1"),
        (["--epochs", "-5"], "trainer.epochs (--epochs) must be at least 1"),
        (["--epochs", "0"], "trainer.epochs (--epochs) must be at least 1"),
        (["--devices", "0"], "trainer.devices (--devices) must be a positive number"),
        (["--devices", "abc"], "trainer.devices (--devices) must be"),
        (["--image-size", "1"], "data.image_size (--image-size) must be at least 16"),
        (["--workers", "-2"], "data.num_workers (--workers) must be at least 0"),
        (["--set", "optim.head_lr=-1e-3"], "optim.head_lr must be finite and >= 0"),
        (["--set", "data.val_fraction=1.5"], "data.val_fraction must be in [0, 1)"),
        (["--set", "data.crop_scale=[0.9,0.1]"], "data.crop_scale must be [low, high]"),
        (["--set", "trainer.limit_train_batches=0"], "trainer.limit_train_batches must be"),
    ],
)
def test_out_of_range_settings_are_refused_before_any_work(extra, message, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--dataset", "digits", "--loss", "triplet", *extra, "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA"
)
def test_a_gpu_accelerator_without_cuda_is_refused(tmp_path, capsys):
    argv = ["train", "--dataset", "digits", "--loss", "triplet", "--out", str(tmp_path / "r")]
    assert main([*argv, "--set", "trainer.accelerator=gpu"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
