"""cdml tune: a search on validation classes only, resumable, whose best config trains as
written."""

import inspect
import json

import numpy as np
import optuna
import pytest
from PIL import Image

from cdml.cli import main
from cdml.losses import METHODS, VIEWS, create_method
from cdml.losses._method import RunInfo
from cdml.training.config import RunConfig, apply_overrides
from cdml.training.resolve import Facts, resolve
from cdml.tuning.space import search_space, starting_point
from cdml.tuning.study import STUDY_FILE, STUDY_NAME, TUNE_MARK, knob_importance

# A search of seconds: timm's small test network on 16-pixel digits.
TINY = [
    "--loss", "facility", "--image-size", "16", "--backbone", "test_resnet",
    "--set", "model.pretrained=false", "--batch-size", "12", "--epochs", "2",
    "--set", "data.val_fraction=0.4", "--set", "trainer.limit_train_batches=2",
]  # fmt: skip


def write_digits_csv(folder, shuffle_test_labels=False):
    """scikit-learn's digits as a CSV: 0-5 train, 6-9 test (their labels permuted when
    asked: a search that never reads them cannot tell)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows, test_labels = [], []
    for digit in range(10):
        for n, index in enumerate(np.flatnonzero(digits.target == digit)[:15]):
            pixels = (digits.images[index] * 255 / 16).astype(np.uint8)
            Image.fromarray(pixels).resize((16, 16)).save(folder / f"{digit}_{n}.png")
            split = "train" if digit < 6 else "test"
            rows.append([f"d{digit}", f"{digit}_{n}.png", split])
            if split == "test":
                test_labels.append(f"d{digit}")
    if shuffle_test_labels:
        permuted = iter(np.random.default_rng(0).permutation(test_labels).tolist())
        rows = [[next(permuted), path, s] if s == "test" else [c, path, s] for c, path, s in rows]
    lines = ["label,path,split", *(",".join(row) for row in rows)]
    (folder / "list.csv").write_text("\n".join(lines) + "\n")
    return folder / "list.csv"


def run_tune(csv, out, *extra):
    argv = ["tune", *TINY, "--dataset", "csv", "--data-root", str(csv), "--out", str(out)]
    return main([*argv, *extra])


def study_of(out):
    return json.loads((out / "tune.json").read_text())


def test_the_study_never_reads_a_test_label(tmp_path):
    studies = []
    for shuffled in (False, True):
        folder = tmp_path / f"shuffled-{shuffled}"
        folder.mkdir()
        assert run_tune(write_digits_csv(folder, shuffled), folder / "tune", "--trials", "3") == 0
        studies.append(study_of(folder / "tune"))
    values = [[(t["value"], t["overrides"], t["epochs"]) for t in s["trials"]] for s in studies]
    assert len(values[0]) == 3 and values[0] == values[1]


def test_a_killed_search_continues_and_its_best_config_trains(tmp_path, capsys):
    csv = write_digits_csv(tmp_path)
    out = tmp_path / "tune"
    assert run_tune(csv, out, "--trials", "2") == 0
    # A kill leaves the running trial RUNNING in the study.
    storage = f"sqlite:///{out / STUDY_FILE}"
    optuna.load_study(study_name=STUDY_NAME, storage=storage).ask()
    assert run_tune(csv, out, "--trials", "3", "--train-best") == 0
    printed = " ".join(capsys.readouterr().out.split())  # the console wraps lines
    assert "continuing the search after 2 finished trials" in printed
    states = [t["state"] for t in study_of(out)["trials"]]
    assert states.count("fail") == 1 and len(states) == 4  # the killed one, then one more
    assert "unseen test classes" in printed  # the best config trained and tested
    best = json.loads((out / "best" / "metrics.json").read_text())
    assert "test" in best and "val" in best
    # best.yaml is a config cdml train takes unchanged (into a folder of its own).
    assert (
        main(["train", "--config", str(out / "best.yaml"), "--out", str(tmp_path / "again")]) == 0
    )


def test_a_search_killed_in_its_first_trial_starts_again_from_the_config(tmp_path):
    csv = write_digits_csv(tmp_path)
    fresh, killed = tmp_path / "fresh", tmp_path / "killed"
    assert run_tune(csv, fresh, "--trials", "1") == 0
    killed.mkdir()
    (killed / TUNE_MARK).touch()
    storage = f"sqlite:///{killed / STUDY_FILE}"
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage, direction="maximize")
    study.enqueue_trial({"optim.name": "sgd"})
    study.ask()  # its first trial, running when the search was killed
    assert run_tune(csv, killed, "--trials", "1") == 0
    trials = study_of(killed)["trials"]
    assert [t["state"] for t in trials] == ["fail", "complete"]
    assert trials[1]["overrides"] == study_of(fresh)["trials"][0]["overrides"]


def test_a_folder_of_other_files_and_bad_counts_are_refused(tmp_path, capsys):
    csv = write_digits_csv(tmp_path)
    assert run_tune(csv, tmp_path / "t", "--trials", "0") == 2
    assert "--trials must be at least 1" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert run_tune(csv, busy, "--trials", "1") == 2
    assert "is not a cdml tune folder" in capsys.readouterr().err
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_has_a_search_space_its_runs_take(name):
    labels = np.repeat(np.arange(20), 10)
    settings = {"loss.name": name, "data.val_fraction": 0.2}
    config = resolve(apply_overrides(RunConfig(), settings), Facts(labels))
    space = search_space(config, train_classes=16)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    drawn = {key: knob.suggest(trial, key) for key, knob in space.items()}
    tried = resolve(apply_overrides(config, drawn), Facts(labels))  # every value is valid
    assert tried.trainer.epochs <= config.trainer.epochs
    if METHODS[name].batch_kind != VIEWS:
        assert 2 <= tried.data.classes_per_batch <= 16
    own = {k.removeprefix("loss.params."): v for k, v in drawn.items() if k.startswith("loss.")}
    assert set(own) <= set(METHODS[name].search_space)
    if "model" not in METHODS[name].needs:  # CBSwR's constructor builds on the model
        create_method(name, RunInfo(embedding_size=64, num_classes=16), **own)


@pytest.mark.parametrize("name", list(METHODS))
def test_the_first_trial_trains_the_config_as_given(name):
    labels = np.repeat(np.arange(20), 10)
    settings = {"loss.name": name, "data.val_fraction": 0.2, "optim.backbone_lr": 2e-5}
    config = resolve(apply_overrides(RunConfig(), settings), Facts(labels))
    space = search_space(config, train_classes=16)
    point = starting_point(config, space)
    common = {"optim.backbone_lr", "optim.head_lr", "optim.name", "data.crop_scale"}
    assert common | {"trainer.epochs"} <= set(point) and point["optim.backbone_lr"] == 2e-5
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(point)
    trial = study.ask()
    drawn = {key: knob.suggest(trial, key) for key, knob in space.items()}
    tried = resolve(apply_overrides(config, drawn), Facts(labels))
    defaults = inspect.signature(METHODS[name]).parameters
    for key in point:
        *parents, leaf = key.split(".")
        if parents == ["loss", "params"]:  # the constructor's default, now written
            assert tried.loss.params[leaf] == defaults[leaf].default
        else:
            assert getattr(getattr(tried, parents[0]), leaf) == getattr(
                getattr(config, parents[0]), leaf
            ), key


def test_the_knob_that_moves_the_score_is_the_important_one():
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    study.optimize(
        lambda t: t.suggest_float("rate", 0, 1) + 0.01 * t.suggest_float("noise", 0, 1), 20
    )
    importance = knob_importance(study)
    assert list(importance) == ["rate", "noise"] and importance["rate"] > 0.9
    flat = optuna.create_study()
    flat.optimize(lambda t: t.suggest_float("rate", 0, 1) * 0, 3)
    assert knob_importance(flat) is None  # nothing to explain
