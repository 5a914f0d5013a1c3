"""The sweep behind cdml's default training recipe, on the glyphs benchmark's validation classes.

Each recipe trains the facility-location loss (or ``--loss``) with the same budget and is
scored on the held-out *training* classes only (20 % of glyphs' training characters): the
validation gain over the untrained model, which every run measures before training. The test
classes are never looked at (runs pass ``--no-baseline`` and the table reads only ``val``).
Runs whose ``metrics.json`` exists are read, not repeated.

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

COLUMNS = ("recall@1", "nmi", "map@r")


def run(name: str, loss: str, seed: int, root: Path) -> dict:
    argv = ["train", "--dataset", "glyphs", "--loss", loss, "--seed", str(seed)]
    argv += [*BUDGET, *RECIPES[name], "--no-baseline"]
    return cached_run(argv, root / loss / f"{list(RECIPES).index(name)}-{seed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", default="facility")
    parser.add_argument("--recipes", help="indices of RECIPES, comma-separated (default all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/sweep"))
    args = parser.parse_args()
    names = list(RECIPES)
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
