"""Train and test image pipelines."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from cdml.data import build_transforms
from cdml.data.transforms import IMAGENET_MEAN, IMAGENET_STD


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_any_image_becomes_a_normalised_square_float_tensor(train, mode):
    image = Image.new(mode, (50, 30), 200 if mode == "L" else (200, 100, 50))
    out = build_transforms(24, train=train)(image)
    assert isinstance(out, torch.Tensor)
    assert out.dtype == torch.float32
    assert out.shape == (3, 24, 24)
    rgb = (200, 200, 200) if mode == "L" else (200, 100, 50)
    for c in range(3):
        expected = (rgb[c] / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert torch.allclose(out[c], torch.full((24, 24), expected), atol=1e-5)


def test_normalisation_uses_the_given_mean_and_std():
    image = Image.new("RGB", (10, 10), (255, 0, 51))
    out = build_transforms(8, train=False, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.1))
    values = out(image)[:, 0, 0].tolist()
    assert values == pytest.approx([(1 - 0.5) / 0.5, (0 - 0.5) / 0.25, (0.2 - 0.5) / 0.1])


def test_test_pipeline_resizes_by_the_ratio_then_crops_the_centre():
    # 64 x 32: black left half, white right half. Resized to shorter side 20 it is 40 x 20;
    # the centre 16 x 16 crop spans columns 12..28, so its columns 0..7 are black, 8..15 white.
    pixels = np.zeros((32, 64, 3), dtype=np.uint8)
    pixels[:, 32:] = 255
    transform = build_transforms(16, train=False, mean=(0, 0, 0), std=(1, 1, 1), resize_ratio=1.25)
    out = transform(Image.fromarray(pixels))
    assert out.shape == (3, 16, 16)
    assert torch.all(out[:, :, :7] < 0.05)
    assert torch.all(out[:, :, 9:] > 0.95)


def test_default_test_pipeline_is_resize_256_crop_227():
    steps = build_transforms(train=False).transforms
    resize = next(t for t in steps if isinstance(t, v2.Resize))
    crop = next(t for t in steps if isinstance(t, v2.CenterCrop))
    assert resize.size == [256]
    assert crop.size == (227, 227)


def test_train_pipeline_crops_at_random_and_flips():
    # A left-to-right ramp: a flipped crop runs right to left.
    ramp = np.tile(np.linspace(0, 255, 40).astype(np.uint8), (40, 1))
    transform = build_transforms(16, train=True, mean=(0, 0, 0), std=(1, 1, 1))
    torch.manual_seed(0)
    outs = [transform(Image.fromarray(ramp)) for _ in range(20)]
    directions = {bool(o[0, 8, -1] > o[0, 8, 0]) for o in outs}
    assert directions == {True, False}
    assert not all(torch.equal(outs[0], o) for o in outs[1:])


def test_full_crop_scale_keeps_the_whole_image():
    # With the whole area kept and a square source, the only randomness left is the flip.
    ramp = np.tile(np.linspace(0, 255, 40).astype(np.uint8), (40, 1))
    transform = build_transforms(
        20, train=True, mean=(0, 0, 0), std=(1, 1, 1), crop_scale=(1.0, 1.0)
    )
    test = build_transforms(20, train=False, mean=(0, 0, 0), std=(1, 1, 1), resize_ratio=1.0)
    expected = test(Image.fromarray(ramp))
    torch.manual_seed(0)
    for _ in range(10):
        out = transform(Image.fromarray(ramp))
        assert torch.allclose(out, expected, atol=1e-6) or torch.allclose(
            out.flip(-1), expected, atol=1e-6
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 0}, "image_size must be positive"),
        ({"resize_ratio": 0.9}, "resize_ratio must be at least 1"),
        ({"mean": (0.5,)}, "mean and std need 3 values"),
        ({"crop_scale": (0.0, 1.0)}, "crop_scale must be"),
        ({"crop_scale": (0.9, 0.5)}, "crop_scale must be"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_transforms(**kwargs)
