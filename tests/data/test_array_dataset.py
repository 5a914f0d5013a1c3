"""ArrayImageDataset: in-memory uint8 images served as PIL images."""

import numpy as np
import pytest

from cdml.data import ArrayImageDataset, build_transforms


def test_grayscale_and_rgb_arrays_become_pil_images():
    grey = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    image, label = ArrayImageDataset(grey, [1, 0], ["a", "b"])[0]
    assert (image.mode, image.size, label) == ("L", (4, 3), 1)
    np.testing.assert_array_equal(np.asarray(image), grey[0])

    colour = np.zeros((1, 3, 4, 3), dtype=np.uint8)
    assert ArrayImageDataset(colour, [0], ["a"])[0][0].mode == "RGB"


def test_grayscale_images_go_through_the_common_transforms():
    images = np.full((2, 9, 9), 255, dtype=np.uint8)
    dataset = ArrayImageDataset(images, [0, 0], ["a"], build_transforms(4, train=False))
    assert dataset[1][0].shape == (3, 4, 4)


def test_subset_copies_the_selected_images():
    images = np.stack([np.full((2, 2), i, dtype=np.uint8) for i in range(4)])
    part = ArrayImageDataset(images, [0, 1, 2, 2], ["a", "b", "c"]).subset([3, 1])
    assert part.labels.tolist() == [1, 0]
    assert part.class_names == ["b", "c"]
    assert np.asarray(part[0][0]).tolist() == [[3, 3], [3, 3]]


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((2, 3, 3), dtype=np.float32), "images must be uint8"),
        (np.zeros((2, 3, 3, 2), dtype=np.uint8), r"\(n, H, W\) or \(n, H, W, 3\)"),
        (np.zeros((3, 3, 3), dtype=np.uint8), "got 3 images but 2 labels"),
    ],
)
def test_bad_arrays_are_rejected(images, message):
    with pytest.raises(ValueError, match=message):
        ArrayImageDataset(images, [0, 1], ["a", "b"])
