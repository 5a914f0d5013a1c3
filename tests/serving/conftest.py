"""A real ``cdml serve`` process over an index of digit images, for the service's tests."""

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from cdml.cli import main

TOKEN = "a-test-token"


@pytest.fixture(scope="session")
def digit_images(tmp_path_factory):
    """60 digit images as PNG files, named ``<digit>_<i>.png``."""
    folder = tmp_path_factory.mktemp("digit-images")
    digits = load_digits()
    for i in range(60):
        pixels = (digits.images[i] * 16).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).resize((32, 32)).save(folder / f"{digits.target[i]}_{i}.png")
    return folder


@pytest.fixture(scope="session")
def digit_index(tiny_checkpoint, digit_images, tmp_path_factory):
    """An index folder of :func:`digit_images` built with the tiny checkpoint."""
    out = tmp_path_factory.mktemp("digit-index") / "index"
    argv = ["index", "--checkpoint", str(tiny_checkpoint), "--images", str(digit_images)]
    assert main([*argv, "--out", str(out)]) == 0
    return out


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    token: str | None

    def client(self, **options) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **options)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def start_server(index: Path, checkpoint: Path, *options: str, token: str | None = TOKEN):
    """``cdml serve`` on a free port of 127.0.0.1, once it has printed its URL."""
    argv = ["serve", "--index", str(index), "--checkpoint", str(checkpoint), "--port", "0"]
    env = {**os.environ, "CDML_SERVE_TOKEN": token or ""}
    process = subprocess.Popen(
        [sys.executable, "-m", "cdml", *argv, *options, "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    line = process.stdout.readline()
    found = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
    if not found:
        process.kill()
        pytest.fail(f"cdml serve did not start: {line}{process.stderr.read()}")
    return Server(process, found.group(1), token)


@pytest.fixture(scope="session")
def server(digit_index, tiny_checkpoint):
    """A service with a token, shared by the tests that leave it as they found it."""
    running = start_server(digit_index, tiny_checkpoint, "--max-upload-mb", "2")
    yield running
    running.stop()
