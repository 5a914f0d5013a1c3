import numpy as np
import pytest
from PIL import Image


def _read_png(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _count_color(pixels, hex_color):
    rgb = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.uint8)
    return int((pixels == rgb).all(axis=2).sum())


@pytest.fixture
def read_png():
    """``read_png(path)``: the file, checked to be a valid PNG, as an (H, W, 3) uint8 array."""
    return _read_png


@pytest.fixture
def count_color():
    """``count_color(pixels, "#rrggbb")``: number of pixels of exactly that colour."""
    return _count_color


@pytest.fixture
def blobs():
    """60 embeddings (16-d) in three well separated classes, labels 0, 1, 2."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    centres = rng.normal(size=(3, 16)) * 10
    return centres[labels] + rng.normal(size=(60, 16)), labels
