"""Glyphs: fonts found on disk, renderings, near-duplicates removed, the zero-shot split."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from fontTools.ttLib import TTFont

from cdml.data import glyphs, load_dataset
from cdml.data.glyphs import (
    GROUPS,
    SHIFTED_TRAIN_GROUPS,
    class_order,
    find_fonts,
    load_glyphs,
    render_glyphs,
)

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
needs_dejavu = pytest.mark.skipif(
    not (DEJAVU / "DejaVuSans.ttf").is_file(), reason="needs fonts-dejavu-core"
)


@pytest.fixture(autouse=True)
def fresh_memo():
    glyphs._loaded.cache_clear()
    yield
    glyphs._loaded.cache_clear()


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def renamed_copy(source: Path, target: Path, family: str) -> None:
    """``source`` saved as ``target`` with another family name: the same drawings."""
    font = TTFont(source)
    for record in font["name"].names:
        if record.nameID in (1, 4, 16):
            record.string = family
    font.save(target)


@pytest.fixture
def font_folder(tmp_path, private_cache):
    """DejaVu Sans (regular, bold, oblique), DejaVu Serif, DejaVu Sans Mono, and a clone of
    DejaVu Sans named "Clone Sans"."""
    folder = tmp_path / "fonts"
    folder.mkdir()
    for name in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
                 "DejaVuSerif.ttf", "DejaVuSansMono.ttf"):  # fmt: skip
        if (DEJAVU / name).is_file():
            shutil.copy(DEJAVU / name, folder / name)
    renamed_copy(DEJAVU / "DejaVuSans.ttf", folder / "Clone.ttf", "Clone Sans")
    (folder / "broken.ttf").write_bytes(b"not a font")
    return folder


@needs_dejavu
def test_one_regular_face_per_family(font_folder):
    fonts = find_fonts(font_folder)
    assert [f.family for f in fonts] == ["Clone Sans", "DejaVu Sans", "DejaVu Sans Mono",
                                         "DejaVu Serif"]  # fmt: skip
    assert Path(fonts[1].path).name == "DejaVuSans.ttf"  # not the bold or oblique face
    with pytest.raises(FileNotFoundError, match="font folder"):
        find_fonts(font_folder / "missing")


@needs_dejavu
def test_renderings_are_distinct_drawings(font_folder):
    rendered = render_glyphs(font_folder, min_families=1)
    assert rendered.images.dtype == np.uint8 and rendered.images.shape[1:] == (64, 64)
    # The clone draws exactly what DejaVu Sans draws, and "Clone Sans" sorts first: every
    # character DejaVu Sans draws is kept once, under the clone's name.
    families = set(rendered.families.tolist())
    assert "DejaVu Sans" not in families and {"Clone Sans", "DejaVu Serif"} <= families
    for char in "aR&":
        assert (rendered.chars == char).sum() == 3  # sans (as the clone), serif, mono
    # Dark ink on white, inside the canvas.
    image = rendered.images[rendered.chars == "a"][0]
    assert image[0].min() == 255 and image.min() < 64
    assert "4 font families found, 3 used" in rendered.summary()


def test_characters_drawn_alike_within_a_font_are_dropped():
    blank = np.full((64, 64), 255, np.uint8)
    bar = blank.copy()
    bar[10:50, 30:34] = 0
    accented = bar.copy()
    accented[2:8, 28:36] = 0  # 48 more ink pixels
    kept = glyphs._distinct_within_font({"l": bar, "I": bar.copy(), "i": accented})
    assert kept == ["i"]


def test_class_order_splits_every_group():
    order = class_order()
    assert len(order) == len(set(order)) == sum(len(chars) for chars in GROUPS.values())
    train, test = set(order[: glyphs._train_count()]), set(order[glyphs._train_count() :])
    for chars in GROUPS.values():
        assert train & set(chars) and test & set(chars)
    assert "A" in train and "B" in test  # alternate characters in code-point order


@needs_dejavu
def test_the_shifted_split_trains_on_some_scripts_and_tests_on_the_others(font_folder):
    train = load_dataset("glyphs-shifted", font_folder, "train", strict=False, min_families=2)
    test = load_dataset("glyphs-shifted", font_folder, "test", strict=False, min_families=2)
    group_of = {char: group for group, chars in GROUPS.items() for char in chars}
    train_groups = {group_of[name.split(" ", 1)[1]] for name in train.class_names}
    test_groups = {group_of[name.split(" ", 1)[1]] for name in test.class_names}
    assert train_groups == set(SHIFTED_TRAIN_GROUPS)
    assert test_groups == set(GROUPS) - set(SHIFTED_TRAIN_GROUPS)
    # the same renderings as glyphs, cut otherwise
    every = load_dataset("glyphs", font_folder, "train", strict=False, min_families=2)
    assert train.num_classes + test.num_classes > every.num_classes


@needs_dejavu
def test_strict_refuses_too_few_fonts(font_folder):
    with pytest.raises(ValueError, match="needs 200 classes.*make datasets"):
        load_glyphs(font_folder)


@needs_dejavu
def test_splits_are_disjoint_and_cached(font_folder):
    train = load_dataset("glyphs", font_folder, "train", strict=False, min_families=2)
    test = load_dataset("glyphs", font_folder, "test", strict=False, min_families=2)
    assert train.num_classes > 20 and test.num_classes > 20
    assert not set(train.class_names) & set(test.class_names)
    assert train.class_names[0] == "U+0030 0"
    image, label = train[0]
    assert image.mode == "L" and image.size == (64, 64) and label == 0
    cached = list(Path(os.environ["XDG_CACHE_HOME"], "cdml").glob("glyphs-*.npz"))
    assert len(cached) == 1
    # A second load in a new process reads the cache: the same images.
    glyphs._loaded.cache_clear()
    again = load_dataset("glyphs", font_folder, "train", strict=False, min_families=2)
    assert np.array_equal(again.images, train.images)


STANDARD_SET = len(find_fonts()) >= 100 if glyphs.FONT_ROOT.is_dir() else False


@pytest.mark.skipif(
    not STANDARD_SET and not os.environ.get("CI"),
    reason="needs the standard font set (make datasets); CI installs it",
)
def test_the_benchmark_has_its_published_size():
    train, test = load_glyphs(split="train"), load_glyphs(split="test")
    classes = train.num_classes + test.num_classes
    assert classes >= 200
    assert (len(train) + len(test)) / classes >= 20
    assert abs(train.num_classes - test.num_classes) <= len(GROUPS)
    # Every class is drawn by at least MIN_FAMILIES distinct families.
    assert np.bincount(train.labels).min() >= glyphs.MIN_FAMILIES
