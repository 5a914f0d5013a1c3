"""``make demo``: a short facility-location run on a built-in dataset, no download.

Fashion-MNIST (the Debian package ``dataset-fashion-mnist``) when its files are present,
scikit-learn's bundled digits otherwise; the model trains on classes 0-4 and is tested on the
unseen classes 5-9 beside the untrained model, then the t-SNE map of the test embeddings is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cdml.console import console
from cdml.data.builtin import FASHION_MNIST_FILES, FASHION_MNIST_ROOT
from cdml.inference import embed_test_sample
from cdml.report import report_run
from cdml.training import RunConfig, apply_overrides
from cdml.training.resolve import resolve
from cdml.training.results import run_tables
from cdml.viz import plot_tsne

TSNE_POINTS = 2000
DEMO_MARK = ".cdml-demo"  # written in a demo's run folder: the folder a later demo may replace


def fashion_mnist_available() -> bool:
    """Whether the Debian package's Fashion-MNIST files are present."""
    return all(
        (FASHION_MNIST_ROOT / name).is_file()
        for pair in FASHION_MNIST_FILES.values()
        for name in pair
    )


def demo_config(
    out: Path,
    loss: str = "facility",
    dataset: str | None = None,
    seed: int = 0,
    epochs: int | None = None,
    overrides: dict[str, Any] | None = None,
) -> RunConfig:
    """The demo's settings and budget, for any loss: 5 training classes, 60-image batches of
    5 x 12, 32-pixel images (flipped, not cropped), frozen BatchNorm statistics, RMSprop, 4
    epochs of 25 steps (15 on digits), 1,000 test images per unseen class; ``overrides``
    (dotted keys) change any of it. ``dataset`` defaults to Fashion-MNIST when present, else
    digits."""
    dataset = dataset or ("fashion-mnist" if fashion_mnist_available() else "digits")
    settings = {
        "out": str(out),
        "data.dataset": dataset,
        "data.image_size": 32,
        "data.max_eval_per_class": 1000,
        "data.resize_ratio": 1.0,
        # 28-pixel sources: a random crop of a small share of one destroys it; flips only.
        "data.crop_scale": [1.0, 1.0],
        "data.batch_size": 60,
        "data.classes_per_batch": 5,
        # Five training classes are too few to hold some out: the last epoch is kept.
        "data.val_fraction": 0.0,
        "loss.name": loss,
        # The demo's rows in docs/results.md normalise every loss but lifted and N-pairs.
        "model.normalize": loss not in ("lifted", "npairs"),
        # Five classes of small grey images: BatchNorm statistics re-estimated on them do not
        # transfer to the unseen classes, the pretrained ones do.
        "model.freeze_bn": True,
        # Seed 000's optimiser and learning rates (head 10x the backbone's).
        "optim.name": "rmsprop",
        "optim.backbone_lr": 1e-5,
        "optim.head_lr": 1e-4,
        "optim.loss_lr": 1e-3,  # the Group Loss's classifier, as in docs/results.md's rows
        "trainer.seed": seed,
        "trainer.epochs": 4 if epochs is None else epochs,
        "trainer.limit_train_batches": 25 if dataset == "fashion-mnist" else 15,
    }
    return apply_overrides(RunConfig(), {**settings, **(overrides or {})})


def prepare_demo_folder(out: Path) -> None:
    """Empty ``out`` if an earlier demo wrote it; refuse any other non-empty folder."""
    out = Path(out)
    here = Path.cwd().resolve()
    if out.resolve() == here or out.resolve() in here.parents:
        raise ValueError(f"--out {out} is the current folder or holds it; give a new folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / DEMO_MARK).is_file():
            raise ValueError(
                f"--out {out} exists and is not a demo's run folder; nothing was changed "
                "(give a new or empty folder)"
            )
        import shutil

        shutil.rmtree(out)
    elif out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    out.mkdir(parents=True, exist_ok=True)


def run_demo(
    out: str | Path = "runs/demo",
    loss: str = "facility",
    dataset: str | None = None,
    seed: int = 0,
    epochs: int | None = None,
    plot: bool = True,
    overrides: dict[str, Any] | None = None,
) -> dict:
    """Train, print test metrics beside the untrained model's, write ``out/tsne.png``.

    Each demo starts afresh: a folder an earlier demo wrote is replaced; any other existing
    folder that is not empty is refused (``ValueError``), as is the current folder or one
    above it.

    Args:
        out: the run folder.
        loss: the training method.
        dataset: the dataset; default Fashion-MNIST when its Debian package is installed,
            else digits.
        seed: seed of everything random.
        epochs: training epochs; default 4.
        plot: the t-SNE map of the test embeddings.
        overrides: config values by dotted key, e.g. {"loss.params.margin": 0.5}.
    """
    from cdml.training.run import train  # Lightning loads only when the demo runs

    out = Path(out)
    config = resolve(demo_config(out, loss, dataset, seed, epochs, overrides))
    prepare_demo_folder(out)
    console.print(f"demo: {loss} loss on {config.data.dataset}, run folder {out.resolve()}")
    (out / DEMO_MARK).touch()
    results = train(config)
    for table in run_tables(results, loss, config.data.dataset):
        console.print(table)
    report_run(config, results)
    if not plot:
        return results
    test = embed_test_sample(out / results["checkpoint"], TSNE_POINTS)
    figure = plot_tsne(
        test.embeddings,
        test.labels,
        out / "tsne.png",
        images=test.images,
        class_names=test.class_names,
        title=f"t-SNE of the test embeddings ({config.data.dataset}, unseen classes)",
    )
    console.print(f"t-SNE map: {figure}")
    return results
