"""Two processes (gloo) compute what one process computes on the global batch."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cdml.distributed import ShardSampler, gather_shards, gather_with_grad
from cdml.losses import create_method

WORLD_SIZE = 2
LOSSES = {
    "facility": {"margin_multiplier": 1.0},
    "group": {"embedding_size": 6, "num_classes": 6},
    "triplet": {},
    "lifted": {},
    "npairs": {},
}


class Step(nn.Module):
    """Embedding model and method in one module, as the Lightning module holds them; a step
    is the method's loss on a labelled batch (under DDP: of the global batch)."""

    def __init__(self, loss_name: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.model = nn.Linear(8, 6)
        self.loss = create_method(loss_name, **LOSSES[loss_name])

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss, _ = self.loss.batch_loss(self.embed, (inputs, labels))
        return loss

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model(inputs), dim=1)


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(24, 8, generator=generator, dtype=torch.float64).float()
    labels = torch.arange(6).repeat_interleave(4)[torch.randperm(24, generator=generator)]
    return inputs, labels


def step_results(step: nn.Module, inputs, labels) -> dict[str, torch.Tensor]:
    value = step(inputs, labels)
    value.backward()
    params = step.module if isinstance(step, DistributedDataParallel) else step
    grads = {name: p.grad.clone() for name, p in params.named_parameters()}
    return {"loss": value.detach(), **grads}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE
    )
    try:
        inputs, labels = global_batch()
        share = len(labels) // WORLD_SIZE
        mine = slice(rank * share, (rank + 1) * share)
        results = {}
        for name in LOSSES:
            step = DistributedDataParallel(Step(name))
            for key, value in step_results(step, inputs[mine], labels[mine]).items():
                results[f"{name}/{key}"] = value
        # Evaluation: strided shards of an uneven split come back whole and in order.
        items = torch.arange(11.0)[:, None].repeat(1, 3)
        shard = list(ShardSampler(len(items), WORLD_SIZE, rank))
        results["gathered"] = gather_shards(items[shard])
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "results.pt"
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD_SIZE, join=True)
    return torch.load(out, weights_only=True)


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_and_gradients_equal_one_process(two_process_results, name):
    inputs, labels = global_batch()
    single = step_results(Step(name), inputs, labels)
    assert single["loss"] > 0
    for key, expected in single.items():
        torch.testing.assert_close(
            two_process_results[f"{name}/{key}"], expected, rtol=1e-5, atol=1e-6, msg=key
        )


def test_evaluation_shards_gather_in_dataset_order(two_process_results):
    torch.testing.assert_close(
        two_process_results["gathered"], torch.arange(11.0)[:, None].repeat(1, 3)
    )


def test_shard_sampler_covers_every_item_once():
    shards = [list(ShardSampler(11, 3, rank)) for rank in range(3)]
    assert sorted(sum(shards, [])) == list(range(11))
    assert [len(ShardSampler(11, 3, rank)) for rank in range(3)] == [4, 4, 3]
    with pytest.raises(ValueError, match="rank"):
        ShardSampler(11, 2, 2)


def test_one_process_gathers_nothing():
    tensor = torch.randn(4, 2)
    assert gather_with_grad(tensor) is tensor
    assert gather_shards(tensor) is tensor


TINY_DDP = [
    "--dataset", "digits", "--loss", "facility", "--image-size", "16",
    "--backbone", "test_resnet", "--set", "model.pretrained=false",
    # Frozen BatchNorm: the batch statistics of a rank's share would differ from the
    # global batch's; with them frozen, two processes must match one exactly.
    "--set", "model.freeze_bn=true",
    # SGD: an update linear in the gradient (RMSprop's first steps are sign-like and would
    # magnify float rounding in near-zero gradients).
    "--set", "optim.name=sgd",
    "--batch-size", "12", "--classes-per-batch", "3", "--epochs", "2",
    "--set", "data.val_fraction=0.4", "--set", "data.resize_ratio=1.0",
    "--set", "data.max_eval_per_class=40",
    "--set", "trainer.limit_train_batches=2", "--set", "trainer.progress_bar=false",
    "--set", "trainer.report=false",
    "--no-baseline", "--set", "trainer.accelerator=cpu",
]  # fmt: skip


def _cdml(*argv: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": str(_free_port())}
    done = subprocess.run(
        [sys.executable, "-m", "cdml", "train", *argv], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_process_training_equals_one_process(tmp_path):
    _cdml(*TINY_DDP, "--out", str(tmp_path / "one"))
    _cdml(*TINY_DDP, "--devices", "2", "--strategy", "ddp", "--out", str(tmp_path / "two"))
    one = torch.load(tmp_path / "one" / "checkpoints" / "last.ckpt", weights_only=True)
    two = torch.load(tmp_path / "two" / "checkpoints" / "last.ckpt", weights_only=True)
    assert one["global_step"] == two["global_step"] == 4
    for key, value in one["state_dict"].items():
        torch.testing.assert_close(two["state_dict"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    metrics_one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    metrics_two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics_two["test"] == pytest.approx(metrics_one["test"], abs=1e-4)
    assert metrics_two["val"] == pytest.approx(metrics_one["val"], abs=1e-4)
