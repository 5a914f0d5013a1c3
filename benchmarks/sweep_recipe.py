"""The sweep behind cdml's default training recipe, on the glyphs benchmark's validation classes.

Each recipe trains the facility-location loss (or ``--loss``) with the same budget and is
scored on the held-out *training* classes only (20 % of glyphs' training characters): the
validation gain over the untrained model, which every run measures before training. The test
classes are never looked at (runs pass ``--no-baseline`` and the table reads only ``val``).
Runs whose ``metrics.json`` exists are read, not repeated.

A loss with knobs of its own (``LOSS_VARIANTS``) is swept over variants of the default recipe
instead: ``--loss group`` tries the Group Loss's classifier rate, prior temperature, warm-up
and classes per batch on top of it.

Run: ``.venv/bin/python benchmarks/sweep_recipe.py [--loss triplet] [--recipes a,b]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cached_run import cached_run

# The budget of every run: 2 epochs of 15 batches of 128 (3,840 images), 20 validation
# images per class.
BUDGET = [
    "--epochs", "2",
    "--set", "trainer.limit_train_batches=15",
    "--set", "data.max_eval_per_class=20",
    "--set", "trainer.progress_bar=false",
]  # fmt: skip


def recipe(bn: str, lr: tuple[str, str], crop: str, optimiser: str = "rmsprop") -> list[str]:
    """The settings of one recipe (every knob the sweep varies, so no default leaks in)."""
    return [
        "--set", f"model.freeze_bn={'true' if bn == 'frozen' else 'false'}",
        "--set", f"optim.backbone_lr={lr[0]}", "--set", f"optim.head_lr={lr[1]}",
        "--set", f"data.crop_scale=[{crop}]", "--set", f"optim.name={optimiser}",
    ]  # fmt: skip


# recipe name -> its settings. Appended, never reordered: a run's folder is its index.
RECIPES: dict[str, list[str]] = {
    "bn-trained, lr 1e-4/1e-3, crop 0.08-1": recipe("trained", ("1e-4", "1e-3"), "0.08,1"),
    "bn-frozen, lr 1e-4/1e-3, crop 0.08-1": recipe("frozen", ("1e-4", "1e-3"), "0.08,1"),
    "bn-frozen, lr 1e-5/1e-4, crop 0.08-1": recipe("frozen", ("1e-5", "1e-4"), "0.08,1"),
    "bn-frozen, lr 1e-5/1e-4, crop 0.5-1": recipe("frozen", ("1e-5", "1e-4"), "0.5,1"),
    "bn-frozen, lr 1e-5/1e-4, crop 1-1": recipe("frozen", ("1e-5", "1e-4"), "1,1"),
    "bn-frozen, lr 3e-5/3e-4, crop 0.5-1": recipe("frozen", ("3e-5", "3e-4"), "0.5,1"),
    "bn-frozen, adam 1e-5/1e-4, crop 0.5-1": recipe("frozen", ("1e-5", "1e-4"), "0.5,1", "adam"),
    "bn-frozen, lr 1e-4/1e-3, crop 0.5-1": recipe("frozen", ("1e-4", "1e-3"), "0.5,1"),
}

DEFAULT_RECIPE = RECIPES["bn-frozen, lr 3e-5/3e-4, crop 0.5-1"]


def setting(key: str, value: str) -> list[str]:
    return ["--set", f"{key}={value}"]


# The Group Loss's batches, 14 classes of 9 images (the released 9 per class) or 32 of 4, and
# its classifier's learning rate (1e-3 unless a variant says otherwise).
NINE = setting("data.classes_per_batch", "14")
FOUR = setting("data.classes_per_batch", "32")
SLOW = setting("optim.loss_lr", "1e-3")
FAST = setting("optim.loss_lr", "1e-2")

# loss -> variant name -> its settings on top of the default recipe (appended, never reordered).
LOSS_VARIANTS: dict[str, dict[str, list[str]]] = {
    "group": {
        "14 classes x 9, classifier 1e-3, temperature 24 (the former default)": NINE + SLOW,
        "14 x 9, classifier 1e-2": NINE + FAST,
        "14 x 9, classifier 1e-3, prior temperature 1": NINE
        + SLOW
        + setting("loss.params.temperature", "1"),
        "32 x 4, classifier 1e-3": FOUR + SLOW,
        "14 x 9, classifier 1e-3, lr 1e-4/1e-3": NINE
        + SLOW
        + setting("optim.backbone_lr", "1e-4")
        + setting("optim.head_lr", "1e-3"),
        "14 x 9, classifier 1e-3, 1 warm-up epoch (cross-entropy only)": NINE
        + SLOW
        + setting("loss.params.warmup_epochs", "1"),
        "32 x 4, classifier 1e-2 (the default)": FOUR + FAST,
    },
}

COLUMNS = ("recall@1", "nmi", "map@r")


def recipes_of(loss: str) -> dict[str, list[str]]:
    """The recipes swept for ``loss``: its variants of the default, or every recipe."""
    if loss in LOSS_VARIANTS:
        return {name: DEFAULT_RECIPE + extra for name, extra in LOSS_VARIANTS[loss].items()}
    return RECIPES


def run(name: str, loss: str, seed: int, root: Path) -> dict:
    recipes = recipes_of(loss)
    argv = ["train", "--dataset", "glyphs", "--loss", loss, "--seed", str(seed)]
    argv += [*BUDGET, *recipes[name], "--no-baseline"]
    return cached_run(argv, root / loss / f"{list(recipes).index(name)}-{seed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", default="facility")
    parser.add_argument(
        "--recipes", help="indices of the recipes swept for --loss, comma-separated (default all)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/sweep"))
    args = parser.parse_args()
    names = list(recipes_of(args.loss))
    if args.recipes:
        names = [names[int(i)] for i in args.recipes.split(",")]
    header = "| recipe | " + " | ".join(f"val {c} (gain)" for c in COLUMNS) + " | best epoch |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for name in names:
        metrics = run(name, args.loss, args.seed, args.out)
        val, floor = metrics["val"], metrics["untrained_val"]
        cells = [f"{100 * val[c]:.1f} ({100 * (val[c] - floor[c]):+.1f})" for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {metrics['best_epoch']} |")
        print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
