"""CUB-200-2011 layout specifics: the two id-keyed text files."""

import pytest

from cdml.data.cub import load_cub200


def test_class_names_are_the_image_folders(cub_mimic):
    dataset = load_cub200(cub_mimic.root, "test", strict=False)
    assert dataset.class_names == ["101.Bird_101", "150.Bird_150", "200.Bird_200"]


def test_missing_annotation_file_is_named(cub_mimic):
    (cub_mimic.root / "image_class_labels.txt").unlink()
    with pytest.raises(FileNotFoundError, match="image_class_labels.txt"):
        load_cub200(cub_mimic.root, "train", strict=False)


def test_ids_missing_from_one_file_are_reported(cub_mimic):
    labels_file = cub_mimic.root / "image_class_labels.txt"
    lines = labels_file.read_text().splitlines()
    labels_file.write_text("\n".join(lines[:-2]) + "\n")
    with pytest.raises(ValueError, match=r"different image ids \(2 unmatched, first \[14, 15\]\)"):
        load_cub200(cub_mimic.root, "train", strict=False)


def test_malformed_line_is_named(cub_mimic):
    images_file = cub_mimic.root / "images.txt"
    images_file.write_text(images_file.read_text() + "16\n")
    with pytest.raises(ValueError, match=r"images.txt line 16: expected 2 fields"):
        load_cub200(cub_mimic.root, "train", strict=False)


def test_non_integer_class_is_named(cub_mimic):
    labels_file = cub_mimic.root / "image_class_labels.txt"
    labels_file.write_text(labels_file.read_text().replace("1 1\n", "1 one\n", 1))
    with pytest.raises(ValueError, match=r"line 1: class_id 'one' is not an integer"):
        load_cub200(cub_mimic.root, "train", strict=False)


def test_class_outside_1_to_200_is_rejected(cub_mimic):
    labels_file = cub_mimic.root / "image_class_labels.txt"
    labels_file.write_text(labels_file.read_text().replace("1 1\n", "1 201\n", 1))
    with pytest.raises(ValueError, match="image 1 the class 201, outside 1..200"):
        load_cub200(cub_mimic.root, "train", strict=False)


def test_duplicate_image_id_is_named(cub_mimic):
    images_file = cub_mimic.root / "images.txt"
    images_file.write_text(images_file.read_text() + "3 extra/file.jpg\n")
    with pytest.raises(ValueError, match="lists image 3 twice"):
        load_cub200(cub_mimic.root, "train", strict=False)
