"""The CSV format (label,path,split): everything wrong with the file is caught up front."""

import pytest
from dataset_mimics import write_csv

from cdml.data.csv_list import load_csv


def rows_with(*extra: tuple[str, str, str]) -> list[tuple[str, str, str]]:
    """Two valid two-image classes, one per half, then ``extra``."""
    valid = [("a", "a0.jpg", "train"), ("a", "a1.jpg", "train")]
    valid += [("b", "b0.jpg", "test"), ("b", "b1.jpg", "test")]
    return valid + list(extra)


def test_validation_rows_are_read_as_test(csv_mimic):
    assert load_csv(csv_mimic.root, "test").class_names == ["fox", "owl"]


def test_absolute_paths_are_kept(tmp_path, csv_mimic):
    images = csv_mimic.paths["train"]
    rows = [("x", str(images[0]), "train"), ("x", str(images[1]), "train")]
    write_csv(tmp_path / "elsewhere.csv", rows + rows_with()[2:])
    dataset = load_csv(tmp_path / "elsewhere.csv", "train", check_files=False)
    assert [str(p) for p in dataset.paths] == [str(images[0]), str(images[1])]


def test_missing_csv_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.csv"):
        load_csv(tmp_path / "absent.csv", "train")


def test_missing_columns_are_named(tmp_path):
    write_csv(tmp_path / "d.csv", [("a", "x.jpg")] * 2, header="label,filename")
    with pytest.raises(ValueError, match="missing column\\(s\\) path, split"):
        load_csv(tmp_path / "d.csv", "train")


def test_unknown_split_value_names_the_line(tmp_path):
    write_csv(tmp_path / "d.csv", rows_with(("c", "c0.jpg", "val"), ("c", "c1.jpg", "val")))
    with pytest.raises(ValueError, match="d.csv line 6: unknown split 'val'"):
        load_csv(tmp_path / "d.csv", "train", check_files=False)


def test_class_with_one_image_is_named(tmp_path):
    write_csv(tmp_path / "d.csv", rows_with(("lonely", "l0.jpg", "test")))
    with pytest.raises(ValueError, match="class 'lonely' has 1 image in split 'test'"):
        load_csv(tmp_path / "d.csv", "train", check_files=False)


def test_class_split_over_train_and_validation_is_checked_per_half(tmp_path):
    rows = rows_with(("c", "c0.jpg", "train"), ("c", "c1.jpg", "validation"))
    write_csv(tmp_path / "d.csv", rows)
    with pytest.raises(ValueError, match="class 'c' has 1 image in split 'train'"):
        load_csv(tmp_path / "d.csv", "train", check_files=False)


def test_label_in_both_halves_is_rejected(tmp_path):
    rows = rows_with(("a", "a2.jpg", "test"), ("a", "a3.jpg", "validation"))
    write_csv(tmp_path / "d.csv", rows)
    with pytest.raises(ValueError, match=r"label\(s\) \['a'\] appear in both train and test"):
        load_csv(tmp_path / "d.csv", "test", check_files=False)


@pytest.mark.parametrize("row", [("", "c0.jpg", "train"), ("c", " ", "train"), ("c",)])
def test_empty_label_or_path_names_the_line(tmp_path, row):
    write_csv(tmp_path / "d.csv", rows_with(row))
    with pytest.raises(ValueError, match="d.csv line 6: empty label or path"):
        load_csv(tmp_path / "d.csv", "train", check_files=False)


def test_csv_without_rows_is_rejected(tmp_path):
    write_csv(tmp_path / "d.csv", [])
    with pytest.raises(ValueError, match="no data rows"):
        load_csv(tmp_path / "d.csv", "train")


def marked_rows(*extra: tuple[str, ...]) -> list[tuple[str, ...]]:
    """An OML-style file: train rows leave the marks empty, test rows query a gallery."""
    rows = [("a", "a0.jpg", "train", "", "", "x"), ("a", "a1.jpg", "train", "", "", "x")]
    rows += [("b", "b0.jpg", "validation", "True", "False", "shoes")]
    rows += [("b", "b1.jpg", "validation", "false", "true", "shoes")]
    rows += [("c", "c0.jpg", "test", "1", "1", "bags"), ("c", "c1.jpg", "test", "0", "1", "bags")]
    rows += [("d", "d0.jpg", "test", "False", "True", "bags")]  # a distractor, alone
    return rows + list(extra)


MARKED = "label,path,split,is_query,is_gallery,category"


def test_query_and_gallery_marks_and_categories_are_the_test_split_evaluation(tmp_path):
    write_csv(tmp_path / "d.csv", marked_rows(), header=MARKED)
    test = load_csv(tmp_path / "d.csv", "test", check_files=False)
    assert test.evaluation["is_query"].tolist() == [True, False, True, False, False]
    assert test.evaluation["is_gallery"].tolist() == [False, True, True, True, True]
    assert test.evaluation["categories"].tolist() == ["shoes"] * 2 + ["bags"] * 3
    assert load_csv(tmp_path / "d.csv", "train", check_files=False).evaluation == {}
    kept = test.subset([1, 2])  # subsets (e.g. capped classes) keep their items' marks
    assert kept.evaluation["is_query"].tolist() == [False, True]
    assert kept.evaluation["categories"].tolist() == ["shoes", "bags"]


@pytest.mark.parametrize(
    ("header", "extra", "message"),
    [
        ("label,path,split,is_query", [], "column is_query needs column is_gallery"),
        (MARKED, [("e", "e0.jpg", "test", "yes", "1", "b")], "line 9: is_query must be True"),
        (MARKED, [("e", "e0.jpg", "test", "1", "", "b")], "line 9: is_gallery must be True"),
        (MARKED, [("e", "e0.jpg", "test", "1", "1", " ")], "line 9: empty category"),
        (MARKED, [("e", "e0.jpg", "test", "1", "1", "b")], "query e0.jpg of class 'e' has no"),
    ],
)
def test_bad_marks_name_the_line_or_the_query(tmp_path, header, extra, message):
    rows = [row[: len(header.split(","))] for row in marked_rows(*extra)]
    write_csv(tmp_path / "d.csv", rows, header=header)
    with pytest.raises(ValueError, match=message):
        load_csv(tmp_path / "d.csv", "train", check_files=False)
