"""Training throughput of cdml on a folder of JPEGs against a bare timm loop reading the same
files, in one run.

The images (``--images`` JPEGs of ``--source-size`` pixels, ``--classes`` classes of smooth
random colour fields, written to a temporary folder and listed in a CSV) are read from disk
by both. cdml runs its whole training step with its default settings: the ``csv`` dataset,
its train pipeline (decode, random resized crop, flip, normalisation), the class-balanced
sampler with seeded batches, data-loading workers resolved from the machine, the Lightning
module with the facility-location loss, logging. The bare loop is a ``DataLoader`` over the
same files (PIL decode, the same crop, flip and normalisation, shuffled batches, the same
number of workers) feeding ``timm`` forward, a mean-square "loss", backward and an RMSprop
step, with the BatchNorm statistics frozen as cdml's default recipe keeps them (so that both
compute the same). The ratio is images/s of cdml over the bare loop (target: at least 0.9).
The bare loop runs first and its workers are stopped before cdml starts. Decoding and
augmentation alone are timed per image in this process before either.

Run: ``.venv/bin/python benchmarks/bench_train.py [--image-size 64] [--workers N]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import timm
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from cdml.data import build_transforms
from cdml.data.loading import default_workers
from cdml.models import build_model
from cdml.training.config import DataConfig, LossConfig, ModelConfig, RunConfig, TrainerConfig
from cdml.training.datamodule import load_data
from cdml.training.resolve import resolve
from cdml.training.run import build_module


def write_jpegs(folder: Path, images: int, classes: int, size: int) -> Path:
    """``images`` JPEGs (quality 90) of ``classes`` classes under ``folder`` and their CSV."""
    generator = np.random.default_rng(0)
    rows = ["label,path,split"]
    for index in range(images):
        label = index % classes
        coarse = generator.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
        path = folder / f"{label:03d}" / f"{index:05d}.jpg"
        path.parent.mkdir(exist_ok=True)
        image.save(path, quality=90)
        rows.append(f"c{label:03d},{path},train")
    listing = folder / "images.csv"
    listing.write_text("\n".join(rows) + "\n")
    return listing


class StepTimer(L.Callback):
    """Wall time of the training steps after the first ``warmup``."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start = 0.0
        self.end = 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.end = time.perf_counter()


def run_config(args, listing: Path) -> RunConfig:
    return RunConfig(
        data=DataConfig(dataset="csv", root=str(listing), image_size=args.image_size,
                        num_workers=args.workers, val_fraction=0.0),
        model=ModelConfig(backbone=args.backbone, pretrained=False),
        loss=LossConfig(name=args.loss),
        trainer=TrainerConfig(progress_bar=False, report=False),
    )  # fmt: skip


def cdml_images_per_second(args, listing: Path) -> tuple[float, float, int]:
    """cdml's images/s, its decoding and augmentation in ms per image, and its workers."""
    config = resolve(run_config(args, listing))
    model = build_model(config.model)
    mean, std = model.data_config["mean"], model.data_config["std"]
    config, data = load_data(config, mean, std, test=False)
    images = data.train_set
    images.transform = data.train_transform
    start = time.perf_counter()
    for index in range(args.decode_images):
        images[index]
    decode_ms = 1e3 * (time.perf_counter() - start) / args.decode_images
    module = build_module(config, model, data.num_train_classes)
    timer = StepTimer(args.warmup)
    trainer = L.Trainer(
        max_steps=args.warmup + args.steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=data)
    workers = data.loader_settings()["num_workers"]
    batch = config.data.batch_size
    return args.steps * batch / (timer.end - timer.start), decode_ms, workers


class Files(Dataset):
    """The listed JPEGs, decoded by PIL and transformed."""

    def __init__(self, listing: Path, transform) -> None:
        rows = [line.split(",") for line in listing.read_text().splitlines()[1:]]
        self.paths = [path for _, path, _ in rows]
        self.labels = [int(label[1:]) for label, _, _ in rows]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.paths[index]) as image:
            return self.transform(image.convert("RGB")), self.labels[index]


def bare_images_per_second(args, listing: Path, workers: int, batch: int) -> tuple[float, float]:
    transform = build_transforms(args.image_size, train=True, crop_scale=(0.5, 1.0))
    files = Files(listing, transform)
    start = time.perf_counter()
    for index in range(args.decode_images):
        files[index]
    decode_ms = 1e3 * (time.perf_counter() - start) / args.decode_images
    loader = DataLoader(
        files, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
        persistent_workers=workers > 0,
    )  # fmt: skip
    model = timm.create_model(args.backbone, pretrained=False, num_classes=64)
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-4)
    steps, start = 0, 0.0
    while steps < args.warmup + args.steps:
        for images, _ in loader:
            if steps == args.warmup:
                start = time.perf_counter()
            loss = model(images).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
            if steps == args.warmup + args.steps:
                break
    seconds = time.perf_counter() - start
    del loader  # stops its workers
    return args.steps * batch / seconds, decode_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--loss", default="facility")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--classes", type=int, default=64)
    parser.add_argument("--source-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=None, help="default: cdml's own")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--decode-images", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        listing = write_jpegs(Path(folder), args.images, args.classes, args.source_size)
        workers = default_workers() if args.workers is None else args.workers
        bare, bare_decode = bare_images_per_second(args, listing, workers, batch=128)
        ours, ours_decode, ours_workers = cdml_images_per_second(args, listing)
    if ours_workers != workers:
        raise RuntimeError(f"cdml used {ours_workers} workers, the bare loop {workers}")
    given = "given" if args.workers is not None else f"default of {default_workers()}"
    print(
        f"{args.backbone}, {args.images} JPEGs of {args.source_size} px -> {args.image_size} px, "
        f"batch 128, loss {args.loss}, {torch.get_num_threads()} threads, {workers} loading "
        f"workers ({given})"
    )
    print(f"decode + augment, ms per image: cdml {ours_decode:.2f}, bare {bare_decode:.2f}")
    print(f"bare timm loop : {bare:8.1f} images/s")
    print(f"cdml training  : {ours:8.1f} images/s")
    print(f"ratio cdml / bare: {ours / bare:.3f}")


if __name__ == "__main__":
    main()
