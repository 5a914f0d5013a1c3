"""Forward + backward time of the cdml losses, against the literal facility-location reference
and against a training step of the default backbone.

    python benchmarks/bench_losses.py [--threads 1] [--repeats 5] [--device cpu]
                                      [--skip-reference] [--skip-backbone] [--skip-compile]
                                      [--image-size 64] [--step-sizes 128,512,1024]

Batches of 64-d L2-normalised embeddings with 4 samples per class: n = 128 (the paper's
setting, 32 classes), 256, 512 and 1024. Each loss time is the median of ``--repeats`` runs
after a warm-up.

The facility-location loss is also put against a floor: the arithmetic of its greedy search
alone, ``K`` steps each taking the minimum of every candidate's distances with each point's
nearest medoid over the ``n x n`` float64 matrix and summing them (``K n^2`` distance-min
operations, about 33 M at n = 512), timed as one torch pass per step on the same thread. The
loss adds the margin's clustering scores, the refinement, the distances and the backward.

The literal reference (tests/losses/reference_facility.py: one scikit-learn call per
candidate) runs once at n = 128.

The training step is timm's ``efficientnet_lite0`` (random weights, 64-d output, L2
normalised) and the facility-location loss, forward + backward, on ``n`` images of
``--image-size`` pixels (cdml's default, 64), for each of ``--step-sizes``, with torch's
default number of threads: one warm-up and two timed steps, then the loss alone on the
embeddings of that step, for its share of the step. It runs eager, then with the backbone
under ``torch.compile`` (the warm-up compiles it) unless ``--skip-compile``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from cdml.losses import LABELLED, METHODS, RunInfo, create_method

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.losses.reference_facility import facility_location_reference  # noqa: E402

SIZES = (128, 256, 512, 1024)
PER_CLASS = 4
DIM = 64
LOSSES = [name for name, cls in METHODS.items() if cls.batch_kind == LABELLED]


def batch(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    embeddings = F.normalize(torch.randn(n, DIM, generator=generator), dim=1)
    return embeddings, torch.arange(n // PER_CLASS).repeat_interleave(PER_CLASS)


def make_loss(name: str, n: int) -> torch.nn.Module:
    return create_method(name, RunInfo(embedding_size=DIM, num_classes=n // PER_CLASS))


def median_seconds(
    step: Callable[[], None], repeats: int, warmup: int = 1, device: str = "cpu"
) -> float:
    """Median wall time of ``step``, waiting for ``device`` to finish each one."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        if device != "cpu":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def loss_seconds(name: str, n: int, repeats: int, device: str = "cpu") -> float:
    embeddings, labels = batch(n)  # the labels stay on the host, as a loader gives them
    embeddings = embeddings.to(device).requires_grad_()
    loss = make_loss(name, n).to(device)

    def step() -> None:
        embeddings.grad = None
        loss(embeddings, labels).backward()

    return median_seconds(step, repeats, device=device)


def floor_seconds(n: int, repeats: int, device: str = "cpu") -> float:
    """``K = n / 4`` passes of ``min(D, nearest)`` summed over the points, float64."""
    embeddings, _ = batch(n)
    dist = torch.cdist(embeddings, embeddings).double().to(device)
    nearest = dist[:, 0].clone()

    def search() -> None:
        for _ in range(n // PER_CLASS):
            torch.minimum(dist, nearest[:, None]).sum(0)

    return median_seconds(search, repeats, device=device)


def reference_seconds(n: int) -> float:
    embeddings, labels = batch(n)
    start = time.perf_counter()
    facility_location_reference(embeddings.double().numpy(), labels.numpy())
    return time.perf_counter() - start


def training_step_seconds(
    sizes: tuple[int, ...], image_size: int, compiled: bool, device: str = "cpu"
) -> dict[int, tuple[float, float]]:
    """For each batch size ``n``: the median time of a training step (backbone and
    facility-location loss, forward + backward) and of the loss alone within it, seconds."""
    import timm

    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=DIM)
    model = model.to(device)
    backbone = torch.compile(model) if compiled else model
    return {n: step_and_loss_seconds(model, backbone, n, image_size, device) for n in sizes}


def step_and_loss_seconds(
    model: torch.nn.Module, backbone: Callable, n: int, image_size: int, device: str
) -> tuple[float, float]:
    _, labels = batch(n)
    loss = make_loss("facility", n).to(device)
    images = torch.randn(n, 3, image_size, image_size, device=device)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss(F.normalize(backbone(images), dim=1), labels).backward()

    step_time = median_seconds(step, repeats=2, device=device)
    with torch.no_grad():
        embeddings = F.normalize(backbone(images), dim=1).requires_grad_()

    def loss_step() -> None:
        embeddings.grad = None
        loss(embeddings, labels).backward()

    return step_time, median_seconds(loss_step, repeats=3, device=device)


def positive(text: str) -> int:
    """An integer >= 1, for argparse."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the losses")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--skip-backbone", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the losses, floor, backbone)")
    parser.add_argument("--skip-compile", action="store_true", help="the eager training step only")
    parser.add_argument(
        "--image-size", type=positive, default=64, help="of the training step's images"
    )
    parser.add_argument(
        "--step-sizes",
        type=lambda text: tuple(positive(size) for size in text.split(",")),
        default=(128, 512, 1024),
        help="the training step's batch sizes, comma-separated",
    )
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    console = Console()

    torch.set_num_threads(args.threads)
    milliseconds = {
        (name, n): 1e3 * loss_seconds(name, n, args.repeats, args.device)
        for name in LOSSES
        for n in SIZES
    }
    title = f"forward + backward, ms (d = {DIM}, {args.threads} thread(s), {args.device})"
    table = Table(title=title)
    table.add_column("loss")
    for n in SIZES:
        table.add_column(f"n = {n} ({n // PER_CLASS} x {PER_CLASS})", justify="right")
    for name in LOSSES:
        table.add_row(name, *(f"{milliseconds[name, n]:.2f}" for n in SIZES))
    console.print(table)

    floors = {n: 1e3 * floor_seconds(n, args.repeats, args.device) for n in SIZES}
    console.print(
        "facility location against the floor of its greedy's arithmetic (K n^2 distance-min "
        "operations): "
        + "; ".join(
            f"n = {n}: {milliseconds['facility', n]:.1f} ms, floor {floors[n]:.1f} ms, "
            f"[bold]{milliseconds['facility', n] / floors[n]:.1f}x[/bold]"
            for n in SIZES
        )
    )
    facility = milliseconds["facility", 128]
    if not args.skip_reference:
        reference = 1e3 * reference_seconds(128)
        console.print(
            f"literal facility-location reference, n = 128: {reference:.0f} ms; "
            f"vectorised loss {facility:.2f} ms: [bold]{reference / facility:.0f}x faster[/bold]"
        )
    if not args.skip_backbone:
        torch.set_num_threads(default_threads)
        modes = [False] if args.skip_compile else [False, True]
        steps = {
            compiled: training_step_seconds(args.step_sizes, args.image_size, compiled, args.device)
            for compiled in modes
        }
        title = (
            f"training step: efficientnet_lite0 + facility location, forward + backward, "
            f"{args.image_size} x {args.image_size} px, {default_threads} thread(s), "
            f"{args.device}"
        )
        table = Table(title=title)
        table.add_column("batch n")
        for compiled in modes:
            backbone = "compiled" if compiled else "eager"
            table.add_column(f"step, {backbone} (ms)", justify="right")
            table.add_column(f"loss share, {backbone}", justify="right")
        for n in args.step_sizes:
            cells = []
            for compiled in modes:
                step, loss = steps[compiled][n]
                cells += [f"{1e3 * step:.0f}", f"{100 * loss / step:.1f}% ({1e3 * loss:.1f} ms)"]
            table.add_row(str(n), *cells)
        console.print(table)


if __name__ == "__main__":
    main()
