"""ImageListDataset: lazy loading, up-front file check, bad images named or skipped."""

import numpy as np
import pytest
from dataset_mimics import truncate, write_noise_jpeg
from PIL import Image

from cdml.data import ImageListDataset


@pytest.fixture
def folder(tmp_path):
    """Six images of three classes (labels 0,0,1,1,1,2); image i is flat grey 40 * i."""
    paths = []
    for i in range(6):
        paths.append(tmp_path / f"{i}.png")
        Image.new("L", (6, 5), 40 * i).save(paths[-1])
    return paths, [0, 0, 1, 1, 1, 2]


def grey(image):
    return int(np.asarray(image).mean())


def test_images_are_decoded_as_rgb_on_access(folder):
    paths, labels = folder
    dataset = ImageListDataset(paths, labels, ["a", "b", "c"])
    image, label = dataset[3]
    assert image.mode == "RGB"
    assert image.size == (6, 5)
    assert grey(image) == 120
    assert label == 1
    assert len(dataset) == 6


def test_every_missing_file_is_listed_in_one_error(folder, tmp_path):
    paths, labels = folder
    absent = [tmp_path / f"gone{i}.jpg" for i in range(7)]
    dataset = ImageListDataset(paths + absent, labels + [2] * 7, ["a", "b", "c"])

    assert dataset.missing_files() == [str(p) for p in absent]
    with pytest.raises(FileNotFoundError) as error:
        dataset.check_files()
    message = str(error.value)
    assert "7 of 13 image files are missing" in message
    assert all(str(p) in message for p in absent[:5])
    assert "... and 2 more" in message


def test_complete_list_passes_the_check(folder):
    paths, labels = folder
    ImageListDataset(paths, labels, ["a", "b", "c"]).check_files()


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_bad_image_raises_naming_the_file(folder, damage):
    paths, labels = folder
    write_noise_jpeg(paths[2])
    if damage == "truncate":
        truncate(paths[2])
    else:
        paths[2].write_bytes(b"GIF89a junk")
    dataset = ImageListDataset(paths, labels, ["a", "b", "c"])
    assert grey(dataset[1][0]) == 40
    with pytest.raises(OSError, match=f"cannot read image {paths[2]}"):
        dataset[2]


def test_skip_bad_returns_the_next_readable_image_of_the_class(folder):
    paths, labels = folder
    for i in (3, 4):
        paths[i].write_bytes(b"")
    dataset = ImageListDataset(paths, labels, ["a", "b", "c"], skip_bad=True)

    with pytest.warns(RuntimeWarning) as warned:
        image, label = dataset[3]
    assert [str(w.message).split(" (")[0] for w in warned] == [
        f"skipped unreadable image {paths[3]}",
        f"skipped unreadable image {paths[4]}",
    ]
    assert "(2 skipped so far)" in str(warned[1].message)
    # Class 1 is items 2, 3, 4: after 3 and 4 fail it wraps around to 2.
    assert (grey(image), label) == (80, 1)
    assert list(dataset.skipped) == [str(paths[3]), str(paths[4])]
    # Known bad files are not retried.
    image, label = dataset[4]
    assert (grey(image), label) == (80, 1)
    assert len(dataset.skipped) == 2


def test_skip_bad_fails_when_a_whole_class_is_unreadable(folder):
    paths, labels = folder
    paths[5].write_bytes(b"")
    dataset = ImageListDataset(paths, labels, ["a", "b", "c"], skip_bad=True)
    with pytest.warns(RuntimeWarning), pytest.raises(OSError, match="every image of class 'c'"):
        dataset[5]


def test_subset_renumbers_classes_and_keeps_their_names(folder):
    paths, labels = folder
    dataset = ImageListDataset(paths, labels, ["a", "b", "c"], transform=grey, skip_bad=True)
    part = dataset.subset([5, 0, 1])
    assert isinstance(part, ImageListDataset)
    assert part.labels.tolist() == [1, 0, 0]
    assert part.class_names == ["a", "c"]
    assert part[0] == (200, 1)
    assert part.skip_bad


@pytest.mark.parametrize(
    ("labels", "names", "message"),
    [
        ([0, 1], ["a", "b"], "got 6 paths but 2 labels"),
        ([0, 0, 1, 1, 1, 3], ["a", "b", "c"], r"labels must lie in 0..2"),
        ([0.0, 0, 1, 1, 1, 2], ["a", "b", "c"], "1-D integer array"),
    ],
)
def test_inconsistent_arguments_are_rejected(folder, labels, names, message):
    with pytest.raises(ValueError, match=message):
        ImageListDataset(folder[0], labels, names)
