"""``cdml tune``: hyper-parameter search with Optuna on validation classes only.

The first trial trains the config as given (:func:`cdml.tuning.space.starting_point`); each
later one trains it with the values its sampler (TPE) draws from the search space
(:func:`cdml.tuning.space.search_space`). A trial scores the best epoch on the held-out training
classes; a trial whose per-epoch validation metric falls below the median of the earlier
trials at the same epoch is pruned. No trial loads the test split. The study lives in the
tune folder (``study.db``, SQLite), so a killed search continues where it stopped.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from cdml.console import console
from cdml.data import load_dataset, validation_classes
from cdml.io import is_empty, write_json, write_text
from cdml.training.config import RunConfig, apply_overrides, load_config
from cdml.training.resolve import Facts, resolve
from cdml.training.run_folder import run_lock
from cdml.tuning.space import search_space, starting_point

TUNE_MARK = ".cdml-tune"  # what makes a folder a tune folder
STUDY_FILE = "study.db"
BEST_CONFIG = "best.yaml"
SUMMARY_FILE = "tune.json"
STUDY_NAME = "cdml"


@dataclass(frozen=True)
class TuneResult:
    """What :func:`tune` found: ``value`` of ``metric`` (validation, 0-1) of trial
    ``trial``, its ``overrides`` of the config, the ``config`` file written with them, the
    numbers of trials by state, and the best config's run results when it was trained."""

    metric: str
    value: float
    trial: int
    overrides: dict[str, Any]
    config: Path
    states: dict[str, int]
    trained: dict[str, Any] | None = None


def tune(
    config: RunConfig,
    trials: int = 20,
    timeout: float | None = None,
    train_best: bool = False,
) -> TuneResult:
    """Search the settings of ``config`` on its validation classes and write the best ones.

    ``config.out`` is the tune folder: ``study.db`` (the Optuna study; a rerun of the same
    search continues it), ``trials/NNNN/`` (each trial's run folder, its checkpoints
    removed), ``best.yaml`` (``config`` with the best trial's values: ``cdml train --config``
    takes it unchanged) and ``tune.json`` (every trial's values and score). The score is
    ``config.trainer.monitor`` (default validation Recall@1) of the trial's best epoch.

    Args:
        config: the base config (its method, dataset and budget: ``trainer.epochs`` is the
            most a trial trains); it needs validation classes (``data.val_fraction``, by
            default resolved from the data; for an unsupervised method give one: its
            validation classes are labelled, as the papers' reported numbers assume).
        trials: trials finished (complete or pruned) at which the search stops, counting
            those of an earlier, interrupted run of the same search.
        timeout: seconds after which no new trial starts.
        train_best: train the best config in ``out/best`` and test it on the unseen classes.
    """
    try:
        import optuna
    except ImportError:
        raise ValueError("cdml tune needs Optuna: pip install 'cdml[tune]'") from None
    if trials < 1:
        raise ValueError(f"--trials must be at least 1, got {trials}")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"--timeout must be positive, got {timeout}")
    config = resolve(config)  # every check that needs no data, before any work
    out = Path(config.out)
    complete, train_classes = _complete(config)
    if not complete.data.val_fraction:
        raise ValueError(
            "cdml tune needs validation classes: data.val_fraction resolved to 0 for "
            f"{config.data.dataset} with {config.loss.name}; give --set data.val_fraction=0.2"
        )
    _prepare(out)
    space = search_space(complete, train_classes)
    monitor = config.trainer.monitor
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with run_lock(out):
        storage = optuna.storages.RDBStorage(f"sqlite:///{(out / STUDY_FILE).resolve()}")
        study = optuna.create_study(
            study_name=STUDY_NAME,
            storage=storage,
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=config.trainer.seed),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
            load_if_exists=True,
        )
        _fail_interrupted(study, storage, out)
        finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        waiting = (optuna.trial.TrialState.WAITING,)
        if not study.get_trials(states=finished + waiting):  # a new search, or its first killed
            study.enqueue_trial(starting_point(complete, space))
        done = len(study.get_trials(states=finished))
        if done:
            console.print(f"{out}: continuing the search after {done} finished trials")
        console.print(
            f"tuning {config.loss.name} on {config.data.dataset}: {len(space)} settings "
            f"({', '.join(space)}), {monitor} on {train_classes} training classes' held-out "
            "validation classes"
        )
        if done < trials:
            study.optimize(
                _Objective(config, space, out),
                timeout=timeout,
                callbacks=[
                    optuna.study.MaxTrialsCallback(trials, states=finished),
                    lambda study, trial: console.print(progress_line(study, trial, trials)),
                ],
                gc_after_trial=True,
            )
        result = _write_results(study, config, out, monitor)
    if train_best:
        from cdml.training.run import train

        best = replace(load_config(result.config), out=str(out / "best"))
        result = replace(result, trained=train(best))
    return result


def _prepare(out: Path) -> None:
    """``out`` is new, empty or a tune folder; anything else is refused untouched."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {out} is a file; give a folder")
    if out.is_dir() and not is_empty(out) and not (out / TUNE_MARK).is_file():
        raise ValueError(
            f"output folder {out} holds files and is not a cdml tune folder; nothing was "
            "changed (give a new or empty folder)"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / TUNE_MARK).touch()


def _complete(config: RunConfig) -> tuple[RunConfig, int]:
    """``config`` resolved with its training labels (the data's facts a search space needs:
    the batch and the validation classes), and the training classes left after those."""
    data = config.data
    labels = load_dataset(data.dataset, data.root, "train", skip_bad=data.skip_bad).labels
    complete = resolve(config, Facts(labels))
    classes = len(set(labels.tolist()))
    if complete.data.val_fraction:
        fraction, how = complete.data.val_fraction, complete.data.val_split
        classes -= len(validation_classes(labels, fraction, config.trainer.seed, how))
    return complete, classes


def _fail_interrupted(study: Any, storage: Any, out: Path) -> None:
    """Mark the trials a killed search left running as failed (their folders are removed):
    this process holds the folder's lock, so no other search runs them."""
    import optuna

    for trial in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
        storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        shutil.rmtree(_trial_folder(out, trial.number), ignore_errors=True)


def _trial_folder(out: Path, number: int) -> Path:
    return out / "trials" / f"{number:04d}"


class _Objective:
    """One trial: train with the drawn values, report each epoch, score the best one."""

    def __init__(self, config: RunConfig, space: dict[str, Any], out: Path) -> None:
        self.config, self.space, self.out = config, space, out

    def __call__(self, trial: Any) -> float:
        from cdml.training.run import train

        overrides = {key: knob.suggest(trial, key) for key, knob in self.space.items()}
        trial.set_user_attr("overrides", overrides)
        folder = _trial_folder(self.out, trial.number)
        shutil.rmtree(folder, ignore_errors=True)
        config = apply_overrides(self.config, {**overrides, "out": str(folder)})
        config = apply_overrides(config, {"trainer.progress_bar": False, "trainer.report": False})
        started = time.monotonic()
        report = _ReportToTrial(trial, self.config.trainer.monitor)
        try:
            results = train(config, baseline=False, test=False, callbacks=[report])
        finally:
            shutil.rmtree(folder / "checkpoints", ignore_errors=True)
            trial.set_user_attr("seconds", round(time.monotonic() - started, 1))
        return float(results["val"][self.config.trainer.monitor.removeprefix("val/")])


class _ReportToTrial(Callback):
    """Reports the monitored validation metric of every training epoch to an Optuna trial
    and stops the trial when its pruner says so."""

    def __init__(self, trial: Any, monitor: str) -> None:
        self.trial, self.name = trial, monitor.removeprefix("val/")

    def on_validation_end(self, trainer: Any, module: Any) -> None:
        import optuna

        if trainer.state.fn != "fit" or self.name not in module.last_eval_metrics:
            return  # the untrained model's and the final validations
        self.trial.report(module.last_eval_metrics[self.name], step=trainer.current_epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {trainer.current_epoch}")


def progress_line(study: Any, trial: Any, trials: int) -> str:
    """One line on a finished trial (numbered as its folder, ``trials/NNNN``), the best so
    far and the trials finished of ``trials``."""
    import optuna

    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=finished))
    state = trial.state
    seconds = trial.user_attrs.get("seconds", 0)
    if state == optuna.trial.TrialState.COMPLETE:
        what = f"{100 * trial.value:.2f} %"
    elif state == optuna.trial.TrialState.PRUNED:
        epochs = len(trial.intermediate_values)
        what = f"pruned after {epochs} epoch{'s' * (epochs != 1)}"
    else:
        what = state.name.lower()
    try:
        best = study.best_trial
        so_far = f"best {100 * best.value:.2f} % (trial {best.number})"
    except ValueError:
        so_far = "no complete trial yet"
    return f"trial {trial.number}: {what} in {seconds:.0f} s; {so_far}; {done}/{trials} done"


def _write_results(study: Any, config: RunConfig, out: Path, monitor: str) -> TuneResult:
    import optuna

    try:
        best = study.best_trial
    except ValueError:
        raise ValueError(f"{out}: no trial completed (see {out / 'trials'})") from None
    overrides = best.user_attrs["overrides"]
    best_config = apply_overrides(config, {**overrides, "out": str(out / "best")})
    path = out / BEST_CONFIG
    write_text(path, best_config.to_yaml())
    states = {s.name.lower(): 0 for s in optuna.trial.TrialState if s.is_finished()}
    rows = []
    for trial in study.get_trials():
        states[trial.state.name.lower()] = states.get(trial.state.name.lower(), 0) + 1
        rows.append({
            "number": trial.number, "state": trial.state.name.lower(), "value": trial.value,
            "overrides": trial.user_attrs.get("overrides"),
            "epochs": {str(k): v for k, v in trial.intermediate_values.items()},
            "seconds": trial.user_attrs.get("seconds"),
        })  # fmt: skip
    write_json(out / SUMMARY_FILE, {
        "metric": monitor, "best_trial": best.number, "value": best.value,
        "overrides": overrides, "importance": knob_importance(study), "states": states,
        "trials": rows,
    })  # fmt: skip
    return TuneResult(monitor, float(best.value), best.number, overrides, path, states)


def knob_importance(study: Any) -> dict[str, float] | None:
    """Each knob's share of the variation of the complete trials' scores (fANOVA on a
    seeded random forest), highest first; ``None`` until two complete trials differ."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len({trial.value for trial in complete}) < 2:
        return None
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    importance = optuna.importance.get_param_importances(study, evaluator=evaluator)
    return {name: round(float(share), 4) for name, share in importance.items()}
