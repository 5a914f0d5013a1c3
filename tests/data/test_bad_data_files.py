"""Odd but valid CSV and image files are read right; bad ones are refused naming the file."""

import warnings
from pathlib import Path

import numpy as np
import pytest
from dataset_mimics import truncate, write_csv, write_noise_jpeg
from PIL import Image, ImageFile

from cdml.data import build_transforms
from cdml.data.csv_list import load_csv, read_label_csv
from cdml.data.folder import find_images, unlabelled_images
from cdml.data.image_dataset import ImageListDataset, open_rgb

BODY = ["a,a0.png,train", "a,a1.png,train", "b,b0.png,test", "b,b1.png,test"]


def write_image(path: Path, red: int) -> Path:
    """A small flat PNG whose red value identifies it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (5, 4), (red, 100, 50)).save(path)
    return path


def reds(dataset: ImageListDataset) -> list[int]:
    return [int(np.asarray(dataset[i][0])[0, 0, 0]) for i in range(len(dataset))]


@pytest.fixture
def images(tmp_path):
    """a0, a1, b0, b1 .png beside the CSV, red 10, 20, 30, 40."""
    for red, name in enumerate(["a0", "a1", "b0", "b1"], start=1):
        write_image(tmp_path / f"{name}.png", 10 * red)
    return tmp_path


def write_lines(path: Path, lines: list[str], *, end: str = "\n", bom: bool = False) -> Path:
    path.write_bytes(("\ufeff" * bom + end.join(lines) + end).encode())
    return path


# CSV files


def test_byte_order_mark_is_dropped_and_the_header_found(images):
    csv = write_lines(images / "d.csv", ["label,path,split", *BODY], bom=True)
    assert [row.label for row in read_label_csv(csv)] == ["a", "a", "b", "b"]
    assert reds(load_csv(csv, "train")) == [10, 20]


def test_crlf_line_endings_leave_no_carriage_return(images):
    csv = write_lines(images / "d.csv", ["label,path,split", *BODY], end="\r\n")
    rows = read_label_csv(csv)
    assert [(row.path, row.split) for row in rows[:3]] == [
        ("a0.png", "train"),
        ("a1.png", "train"),
        ("b0.png", "test"),
    ]
    assert reds(load_csv(csv, "test")) == [30, 40]


def test_quoted_fields_keep_their_commas(images):
    write_image(images / "x,y.png", 50)
    lines = ["label,path,split", '"a, b","x,y.png",train', '"a, b",a1.png,train', *BODY[2:]]
    train = load_csv(write_lines(images / "d.csv", lines), "train")
    assert train.class_names == ["a, b"]
    assert reds(train) == [50, 20]


@pytest.mark.parametrize("again", ["a0.png", "./a0.png", "b/../a0.png"])
def test_an_image_listed_twice_in_its_class_is_refused_naming_both_lines(images, again):
    csv = write_lines(images / "d.csv", ["label,path,split", *BODY, f"a,{again},train"])
    message = f"d.csv line 6: image {again} is already listed on line 2 in the same class"
    with pytest.raises(ValueError, match=message):
        load_csv(csv, "train")


def test_an_image_listed_in_two_classes_is_refused(images):
    csv = write_lines(images / "d.csv", ["label,path,split", *BODY, "c,./b1.png,test"])
    message = "d.csv line 6: image ./b1.png is already listed on line 5 in class 'b', here in 'c'"
    with pytest.raises(ValueError, match=message):
        load_csv(csv, "test")


def test_absolute_paths_load_as_they_are(images, tmp_path):
    elsewhere = tmp_path / "lists"
    elsewhere.mkdir()
    lines = ["label,path,split", *(f"{row[0]},{images}/{row[2:]}" for row in BODY)]
    train = load_csv(write_lines(elsewhere / "d.csv", lines), "train")
    assert [str(p) for p in train.paths] == [str(images / "a0.png"), str(images / "a1.png")]
    assert reds(train) == [10, 20]


def test_paths_up_out_of_the_csv_folder_load(images):
    (images / "lists").mkdir()
    lines = ["label,path,split", *(f"{row[0]},../{row[2:]}" for row in BODY)]
    assert reds(load_csv(write_lines(images / "lists" / "d.csv", lines), "test")) == [30, 40]


def test_a_missing_path_up_out_of_the_csv_folder_is_named(images):
    (images / "lists").mkdir()
    lines = ["label,path,split", "a,../a0.png,train", "a,../gone.png,train", *BODY[2:]]
    csv = write_lines(images / "lists" / "d.csv", lines)
    with pytest.raises(FileNotFoundError, match="1 of 2 image files are missing") as error:
        load_csv(csv, "train")
    assert str(images / "lists" / ".." / "gone.png") in str(error.value)


def test_a_symlink_to_an_image_loads_its_target(images):
    (images / "link.png").symlink_to(images / "b1.png")
    lines = ["label,path,split", "a,link.png,train", *BODY[1:]]
    assert reds(load_csv(write_lines(images / "d.csv", lines), "train")) == [40, 20]


def test_dangling_and_looping_symlinks_are_reported_missing(images):
    (images / "dangling.png").symlink_to(images / "gone.png")
    (images / "loop1.png").symlink_to(images / "loop2.png")
    (images / "loop2.png").symlink_to(images / "loop1.png")
    lines = ["label,path,split", "a,dangling.png,train", "a,loop1.png,train", *BODY[2:]]
    with pytest.raises(FileNotFoundError) as error:
        load_csv(write_lines(images / "d.csv", lines), "train")
    assert "2 of 2 image files are missing" in str(error.value)
    assert str(images / "dangling.png") in str(error.value)
    assert str(images / "loop1.png") in str(error.value)


def test_a_header_only_csv_is_refused_by_name(tmp_path):
    write_csv(tmp_path / "d.csv", [])
    with pytest.raises(ValueError, match=f"{tmp_path / 'd.csv'}: no data rows"):
        read_label_csv(tmp_path / "d.csv")


def test_a_blank_line_is_skipped_and_later_lines_keep_their_numbers(images):
    lines = ["label,path,split", *BODY[:2], "", *BODY[2:]]
    assert reds(load_csv(write_lines(images / "d.csv", lines), "test")) == [30, 40]
    csv = write_lines(images / "d.csv", [*lines, "c,c0.png,val"])
    with pytest.raises(ValueError, match="d.csv line 7: unknown split 'val'"):
        read_label_csv(csv)


def test_whitespace_around_names_and_labels_and_splits_is_dropped(images):
    lines = ["label , path,split ", " a,a0.png,train ", "a ,a1.png, train", *BODY[2:]]
    train = load_csv(write_lines(images / "d.csv", lines), "train")
    assert train.class_names == ["a"]
    assert reds(train) == [10, 20]


@pytest.mark.parametrize("path", [" a1.png", "a1.png "])
def test_whitespace_around_a_path_is_refused_naming_the_line(images, path):
    csv = write_lines(images / "d.csv", ["label,path,split", BODY[0], f"a,{path},train"])
    with pytest.raises(ValueError, match=f"d.csv line 3: path '{path}' begins or ends with"):
        read_label_csv(csv)


# Image files


def test_cmyk_jpeg_comes_out_rgb_with_its_colours(tmp_path):
    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(tmp_path / "cyan.jpg")
    red, green, blue = np.asarray(open_rgb(str(tmp_path / "cyan.jpg"))).reshape(-1, 3).mean(0)
    assert red < 30 and green > 225 and blue > 225


def test_16_bit_grey_is_scaled_to_8_bits(tmp_path):
    values = np.array([[0, 257, 1000, 32896, 65278, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    pixels = np.asarray(open_rgb(str(tmp_path / "deep.png")))
    np.testing.assert_array_equal(pixels[..., 0], [[0, 1, 4, 128, 254, 255]])
    np.testing.assert_array_equal(pixels[..., 0], pixels[..., 2])


def test_palette_png_with_alpha_is_composited_onto_white_without_a_warning(tmp_path):
    palette = Image.new("P", (4, 1))
    palette.putdata([0, 1, 2, 3])
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 10, 10])
    palette.save(tmp_path / "p.png", transparency=bytes([0, 128, 255, 0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image, _ = unlabelled_images([tmp_path / "p.png"])[0]
    expected = [[255, 255, 255], [127, 255, 127], [0, 0, 255], [255, 255, 255]]
    np.testing.assert_allclose(np.asarray(image)[0], expected, atol=1)


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (6, 6), colour) for colour in ("red", "blue")]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=50)
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == 2
    image, _ = unlabelled_images([tmp_path / "a.gif"])[0]
    assert np.asarray(image).reshape(-1, 3).tolist() == [[255, 0, 0]] * 36


def test_a_1x1_image_goes_through_the_test_transform(tmp_path):
    Image.new("RGB", (1, 1), (200, 10, 10)).save(tmp_path / "dot.png")
    tensor = build_transforms(32, train=False)(open_rgb(str(tmp_path / "dot.png")))
    assert tuple(tensor.shape) == (3, 32, 32)


def test_an_image_over_the_pixel_limit_is_refused_naming_its_size(tmp_path):
    Image.new("1", (10_000, 10_000)).save(tmp_path / "huge.png")  # a few kilobytes
    message = (
        f"cannot read image {tmp_path / 'huge.png'}: 10000x10000 pixels exceeds the limit "
        f"of {Image.MAX_IMAGE_PIXELS:,} pixels"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        with pytest.raises(OSError, match=message):
            open_rgb(str(tmp_path / "huge.png"))


def test_an_image_over_twice_the_pixel_limit_is_refused_by_name(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL itself refuses above 2000
    Image.new("L", (50, 50)).save(tmp_path / "big.png")
    message = f"cannot read image {tmp_path / 'big.png'}: more than 2,000 pixels exceeds"
    with pytest.raises(OSError, match=message):
        open_rgb(str(tmp_path / "big.png"))


def test_an_empty_file_is_named(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(OSError, match=f"cannot read image {tmp_path / 'empty.jpg'}: the file is"):
        open_rgb(str(tmp_path / "empty.jpg"))


def test_a_truncated_jpeg_is_named(tmp_path):
    write_noise_jpeg(tmp_path / "cut.jpg")
    truncate(tmp_path / "cut.jpg")
    with pytest.raises(OSError, match=f"cannot read image {tmp_path / 'cut.jpg'}: "):
        open_rgb(str(tmp_path / "cut.jpg"))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.fixture
def bad_folder(tmp_path, monkeypatch):
    """A folder of one good image and five bad ones, a folder named like an image and a link
    to its parent; the pixel limit is lowered so that a 40x40 image stands for a bomb."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    folder = tmp_path / "images"
    write_image(folder / "z_good.png", 70)
    (folder / "empty.png").write_bytes(b"")
    write_noise_jpeg(folder / "cut.jpg")
    truncate(folder / "cut.jpg")
    Image.new("L", (40, 40)).save(folder / "bomb.png")
    (folder / "dangling.png").symlink_to(folder / "gone.png")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    (folder / "folder.png").mkdir()
    (folder / "up").symlink_to(tmp_path)
    return folder


BAD = ["bomb.png", "cut.jpg", "dangling.png", "empty.png", "loop.png"]


def test_folder_lists_files_and_broken_links_but_not_folders(bad_folder):
    assert [p.name for p in find_images(bad_folder)] == [*BAD, "z_good.png"]


def test_each_bad_image_of_a_folder_is_refused_naming_it(bad_folder):
    dataset = unlabelled_images(find_images(bad_folder))
    for index, name in enumerate(BAD):
        with pytest.raises(OSError, match=f"cannot read image {bad_folder / name}: "):
            dataset[index]
    assert np.asarray(dataset[5][0])[0, 0, 0] == 70


def test_skip_bad_skips_each_bad_image_with_a_warning_naming_it(bad_folder):
    dataset = unlabelled_images(find_images(bad_folder), skip_bad=True)
    with pytest.warns(RuntimeWarning) as warned:
        assert reds(dataset) == [70] * 6
    assert [str(w.message).split(" (")[0] for w in warned] == [
        f"skipped unreadable image {bad_folder / name}" for name in BAD
    ]
    assert sorted(dataset.skipped) == [str(bad_folder / name) for name in BAD]
    assert "40x40 pixels exceeds the limit of 1,000 pixels" in str(warned[0].message)
    assert "the file is empty" in str(warned[3].message)
