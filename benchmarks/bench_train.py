"""Training throughput of cdml against a bare timm forward/backward loop, in one run.

Both train the same backbone on the same in-memory batches (batch 128 of 32 classes x 4, the
facility-location setting) with RMSprop. cdml runs its whole training step: the Lightning
module, the class-balanced sampler with seeded batches, the embedding head, the loss with its
loss-augmented inference, logging. The bare loop runs ``timm`` forward, a mean-square
"loss", backward and the optimiser step. The ratio is images/s of cdml over the bare loop
(target: at least 0.9).

Run: ``.venv/bin/python benchmarks/bench_train.py [--loss facility] [--image-size 64]``
"""

from __future__ import annotations

import argparse
import time

import lightning as L
import numpy as np
import timm
import torch
from torch.utils.data import DataLoader, Dataset

from cdml.data import ClassBalancedBatchSampler
from cdml.data.seeding import SeededBatches, SeededItems
from cdml.losses import RunInfo, create_method
from cdml.models import EmbeddingModel
from cdml.training.config import OptimConfig
from cdml.training.module import MetricLearningModule


class RandomImages(Dataset):
    """``n`` fixed random images ``(3, S, S)`` with labels."""

    def __init__(self, labels: np.ndarray, image_size: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(len(labels), 3, image_size, image_size, generator=generator)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


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


def cdml_images_per_second(args, dataset: RandomImages) -> float:
    model = EmbeddingModel(args.backbone, args.embedding_size, pretrained=False)
    run = RunInfo(embedding_size=args.embedding_size, num_classes=32)
    module = MetricLearningModule(model, create_method(args.loss, run), OptimConfig(name="rmsprop"))
    sampler = ClassBalancedBatchSampler(dataset.labels, args.batch_size, args.batch_size // 4)
    loader = DataLoader(SeededItems(dataset), batch_sampler=SeededBatches(sampler, 0))
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
    )
    trainer.fit(module, train_dataloaders=loader)
    return args.steps * args.batch_size / (timer.end - timer.start)


def bare_images_per_second(args, dataset: RandomImages) -> float:
    model = timm.create_model(args.backbone, pretrained=False, num_classes=args.embedding_size)
    model.train()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-4)
    batch = dataset.images[: args.batch_size]
    start = 0.0
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            start = time.perf_counter()
        loss = model(batch).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return args.steps * args.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--loss", default="facility")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--embedding-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()

    labels = np.repeat(np.arange(32), 8)
    dataset = RandomImages(labels, args.image_size)
    bare = bare_images_per_second(args, dataset)
    ours = cdml_images_per_second(args, dataset)
    print(
        f"{args.backbone}, batch {args.batch_size}, {args.image_size}px, loss {args.loss}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"bare timm loop : {bare:8.1f} images/s")
    print(f"cdml training  : {ours:8.1f} images/s")
    print(f"ratio cdml / bare: {ours / bare:.3f}")


if __name__ == "__main__":
    main()
