"""Cars196 layout specifics: the annotations .mat file."""

import pytest
from dataset_mimics import write_cars_annotations

from cdml.data.cars import load_cars196


def test_class_names_come_from_the_mat_file(cars_mimic):
    dataset = load_cars196(cars_mimic.root, "train", strict=False)
    assert dataset.class_names == ["Make Model 1 2012", "Make Model 50 2012", "Make Model 98 2012"]


def test_class_numbers_name_classes_without_class_names(cars_mimic):
    rows = [(f"car_ims/{i:06d}.jpg", c, 0) for i, c in [(1, 1), (2, 1), (3, 99)]]
    write_cars_annotations(cars_mimic.root / "cars_annos.mat", rows, names=None)
    assert load_cars196(cars_mimic.root, "test", strict=False).class_names == ["99"]


def test_single_annotation_is_read(cars_mimic):
    write_cars_annotations(cars_mimic.root / "cars_annos.mat", [("car_ims/000001.jpg", 3, 1)])
    dataset = load_cars196(cars_mimic.root, "train", strict=False)
    assert len(dataset) == 1
    assert dataset.class_names == ["Make Model 3 2012"]


def test_missing_mat_file_is_named(cars_mimic):
    (cars_mimic.root / "cars_annos.mat").unlink()
    with pytest.raises(FileNotFoundError, match="cars_annos.mat"):
        load_cars196(cars_mimic.root, "train", strict=False)


def test_unreadable_mat_file_is_named(cars_mimic):
    (cars_mimic.root / "cars_annos.mat").write_bytes(b"\x00" * 50)
    with pytest.raises(ValueError, match="cars196: cannot read .*cars_annos.mat"):
        load_cars196(cars_mimic.root, "train", strict=False)


def test_mat_without_annotations_is_rejected(cars_mimic):
    import numpy as np
    import scipy.io

    scipy.io.savemat(cars_mimic.root / "cars_annos.mat", {"other": np.zeros(3)})
    with pytest.raises(ValueError, match="no 'annotations' variable"):
        load_cars196(cars_mimic.root, "train", strict=False)


def test_class_outside_1_to_196_is_rejected(cars_mimic):
    rows = [("car_ims/000001.jpg", 1, 0), ("car_ims/000002.jpg", 197, 0)]
    write_cars_annotations(cars_mimic.root / "cars_annos.mat", rows)
    with pytest.raises(ValueError, match=r"annotation 2 .*000002.jpg\) has class 197"):
        load_cars196(cars_mimic.root, "train", strict=False)
