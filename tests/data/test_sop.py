"""Stanford Online Products layout specifics: the two list files with their header."""

import pytest

from cdml.data.sop import load_sop


def test_class_names_are_the_class_ids(sop_mimic):
    assert load_sop(sop_mimic.root, "test", strict=False).class_names == ["4", "5", "6"]


def test_each_split_reads_its_own_list_file(sop_mimic):
    (sop_mimic.root / "Ebay_test.txt").unlink()
    assert len(load_sop(sop_mimic.root, "train", strict=False)) == 7
    with pytest.raises(FileNotFoundError, match="Ebay_test.txt"):
        load_sop(sop_mimic.root, "test", strict=False)


def test_wrong_header_is_rejected(sop_mimic):
    list_file = sop_mimic.root / "Ebay_train.txt"
    list_file.write_text(list_file.read_text().replace("super_class_id", "super", 1))
    with pytest.raises(ValueError, match="Ebay_train.txt line 1: expected the header"):
        load_sop(sop_mimic.root, "train", strict=False)


def test_short_row_is_named(sop_mimic):
    list_file = sop_mimic.root / "Ebay_train.txt"
    list_file.write_text(list_file.read_text() + "8 3 2\n")
    with pytest.raises(ValueError, match="Ebay_train.txt line 9: expected 4 fields"):
        load_sop(sop_mimic.root, "train", strict=False)


def test_non_integer_class_is_named(sop_mimic):
    list_file = sop_mimic.root / "Ebay_train.txt"
    list_file.write_text(list_file.read_text() + "8 three 2 chair_final/x.JPG\n")
    with pytest.raises(ValueError, match="line 9: class_id 'three' is not an integer"):
        load_sop(sop_mimic.root, "train", strict=False)
