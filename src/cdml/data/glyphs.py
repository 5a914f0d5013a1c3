"""Glyphs: characters rendered from the fonts installed on the machine, a many-class benchmark.

A class is a character (Latin, Latin-1 letters, Greek, Cyrillic, digits, symbols), an instance
is a font family drawing it: one upright, regular-weight face per family, so a class holds the
same character by different designers. It stands in for CUB / Cars / SOP where those cannot be
downloaded: many classes, few images each, fine-grained.

Every glyph is drawn black on white at a fixed size on a shared baseline, centred
horizontally, so that size and height stay part of the shape (``o`` / ``O``, ``,`` / ``'``).
A rendering is dropped when its font has no glyph for the character, when it is blank, when it
nearly repeats a kept rendering of the same class (metric-compatible clones such as Liberation
Sans and Arimo), or when its font draws another character the same way (``l`` / ``I`` in many
sans fonts). Classes drawn by fewer than ``MIN_FAMILIES`` families are left out.

Zero-shot split: the class list takes every other character of each group in code-point
order for ``"train"`` (the first half of the class numbers), the others for ``"test"``, so
both halves hold every script. ``glyphs-shifted`` cuts by script instead: digits, Latin and
Latin-1 letters train, Greek, Cyrillic and symbols test, so the unseen classes differ in
kind from the training ones (as CUB's, Cars' and SOP's unseen halves hold other families).
Rendering takes seconds; the images are cached in ``$XDG_CACHE_HOME/cdml``
(``~/.cache/cdml``), keyed by the font files and this module's settings.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cdml.console import console
from cdml.data.array_dataset import ArrayImageDataset
from cdml.data.registry import register_dataset
from cdml.data.zero_shot import check_split
from cdml.io import atomic_path, write_json

FONT_ROOT = Path("/usr/share/fonts")
FONT_SUFFIXES = (".ttf", ".otf")
# The Debian packages that give the standard set of fonts (README, "Datasets").
FONT_PACKAGES_HINT = "`make datasets` installs the standard set: the README's apt-get line"
RENDER_SIZE = 64
MIN_FAMILIES = 10  # a class needs this many distinct renderings
MIN_CLASSES = 200  # strict: the published protocol's size
MIN_MEAN_FAMILIES = 20
# Two fonts' renderings of a character are one drawing when the Bray-Curtis distance of
# their 32x32 ink maps (sum |a - b| / sum (a + b)) is below this: metric-compatible clones
# measure about 0.02, the nearest distinct designs 0.04 and more.
DUPLICATE_DISTANCE = 0.03
# Two characters of one font are drawn alike when their renderings differ by fewer ink
# pixels than this (an accent differs by dozens).
AMBIGUOUS_PIXELS = 8
_CACHE_VERSION = 1


def _chars(*ranges: tuple[int, int], exclude: str = "") -> str:
    return "".join(
        chr(c) for low, high in ranges for c in range(low, high + 1) if chr(c) not in exclude
    )


# Character groups. Greek and Cyrillic leave out the letters drawn like a Latin (or Greek)
# one in most fonts (Greek A, B, E; Cyrillic A, B, E, Г like Γ, ...): such classes would hold
# the same images under two labels.
GROUPS: dict[str, str] = {
    "digits": _chars((0x30, 0x39)),
    "latin": _chars((0x41, 0x5A), (0x61, 0x7A)),
    "latin-1": _chars((0xC0, 0xFF), exclude="×÷"),
    "greek": "ΓΔΘΛΞΠΣΦΨΩαβγδεζηθικλμνξπρςστυφχψω",
    "cyrillic": "БДЖЗИЙЛЦЧШЩЪЫЬЭЮЯбвгджзийлмнтфцчшщъыьэюя",
    "symbols": _chars((0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E))
    + "¡¢£¥§©«¬®°±¶»¼½¾¿×÷€‰†‡•™‹›∞≈≠≤≥√∂∑∫",
}
# glyphs-shifted: the groups of the training half; the others are unseen.
SHIFTED_TRAIN_GROUPS = ("digits", "latin", "latin-1")


@dataclass(frozen=True)
class GlyphFont:
    """One font family's chosen face."""

    family: str
    path: str
    weight: int


def find_fonts(root: str | Path | None = None) -> list[GlyphFont]:
    """One upright, regular face per font family under ``root`` (default ``FONT_ROOT``),
    sorted by family name.

    Faces are ``.ttf`` / ``.otf`` files (the first face of each); italic, oblique and slanted
    faces and weights outside 300-500 are skipped; of a family's remaining faces the weight
    nearest 400 is kept (ties: the first path). Unreadable files are skipped.
    """
    from fontTools.ttLib import TTFont, TTLibError  # matplotlib's dependency

    root = Path(FONT_ROOT if root is None else root)
    if not root.is_dir():
        raise FileNotFoundError(f"glyphs: font folder {root} does not exist")
    chosen: dict[str, GlyphFont] = {}
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in FONT_SUFFIXES):
        try:
            font = TTFont(path, lazy=True, fontNumber=0)
            names = font["name"]
            family = (names.getDebugName(16) or names.getDebugName(1) or "").strip()
            style = (names.getDebugName(17) or names.getDebugName(2) or "").strip().lower()
            os2 = font.get("OS/2")
            weight = os2.usWeightClass if os2 else 400
            italic = bool(os2 and os2.fsSelection & 1) or (
                "post" in font and font["post"].italicAngle != 0
            )
        except (TTLibError, OSError, KeyError, AssertionError, ValueError, TypeError):
            continue
        slanted = any(word in style for word in ("italic", "oblique", "slanted", "inclined"))
        if not family or italic or slanted or not 300 <= weight <= 500:
            continue
        candidate = GlyphFont(family, str(path), weight)
        key = family.casefold()
        if key not in chosen or abs(weight - 400) < abs(chosen[key].weight - 400):
            chosen[key] = candidate
    return sorted(chosen.values(), key=lambda f: (f.family.casefold(), f.path))


def class_order() -> list[str]:
    """Every candidate character, train half first: within each group, the characters at
    even positions (code-point order) are training classes, those at odd positions test."""
    train = [c for chars in GROUPS.values() for c in sorted(chars)[0::2]]
    test = [c for chars in GROUPS.values() for c in sorted(chars)[1::2]]
    return train + test


@dataclass
class GlyphSet:
    """The rendered set: ``images`` (n, S, S) uint8, ``chars`` (n,) the character of each,
    ``families`` (n,) the font family of each, ``fonts`` every font found."""

    images: np.ndarray
    chars: np.ndarray
    families: np.ndarray
    fonts: list[GlyphFont]

    def summary(self) -> str:
        classes = len(set(self.chars.tolist()))
        used = len(set(self.families.tolist()))
        return (
            f"glyphs: {len(self.fonts)} font families found, {used} used; {classes} classes, "
            f"{len(self.images):,} images ({len(self.images) / max(classes, 1):.1f} per class)"
        )


def render_glyphs(
    root: str | Path | None = None, cache: bool = True, min_families: int = MIN_FAMILIES
) -> GlyphSet:
    """Render (or read from the cache) every kept glyph of the fonts under ``root``: classes
    drawn by at least ``min_families`` distinct families."""
    fonts = find_fonts(root)
    key = _cache_key(fonts, min_families)
    cache_file = _cache_dir() / f"glyphs-{key}.npz"
    if cache and cache_file.is_file():
        try:
            with np.load(cache_file, allow_pickle=False) as stored:
                return GlyphSet(stored["images"], stored["chars"], stored["families"], fonts)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is rendered again
    glyphs = _render(fonts, min_families)
    if cache:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cache_file) as tmp:
                np.savez_compressed(
                    tmp, images=glyphs.images, chars=glyphs.chars, families=glyphs.families
                )
            write_json(_fonts_file(fonts), [dataclasses.asdict(font) for font in fonts])
        except OSError:
            pass  # a read-only cache only costs the next load a rendering
    return glyphs


def _fonts_file(fonts: list[GlyphFont]) -> Path:
    """Where the list of fonts found is written (JSON: family, path, weight of each)."""
    return _cache_dir() / f"glyph-fonts-{_cache_key(fonts, 0)}.json"


def shifted_class_order() -> list[str]:
    """Every candidate character, train half first: the groups of
    :data:`SHIFTED_TRAIN_GROUPS`, then the others, each in code-point order."""
    train = [c for g in SHIFTED_TRAIN_GROUPS for c in sorted(GROUPS[g])]
    test = [
        c for g, chars in GROUPS.items() if g not in SHIFTED_TRAIN_GROUPS for c in sorted(chars)
    ]
    return train + test


@register_dataset("glyphs", "characters rendered from the installed fonts", mirror_sensitive=True)
def load_glyphs(
    root: str | Path | None = None,
    split: str = "train",
    transform: Callable[[Any], Any] | None = None,
    *,
    strict: bool = True,
    min_families: int = MIN_FAMILIES,
    skip_bad: bool = False,
) -> ArrayImageDataset:
    """One zero-shot half of the glyphs benchmark, 64x64 grayscale PIL images.

    Args:
        root: folder searched for fonts (default ``/usr/share/fonts``).
        split: ``"train"`` (the first half of the classes) or ``"test"``, renumbered 0..C-1
            in class order; ``class_names`` are ``"U+0041 A"``.
        transform: applied to each PIL image (mode ``"L"``).
        strict: require the benchmark's size (at least 200 classes, 20 families per class
            on average), which the README's font packages give.
        min_families: leave out the classes drawn by fewer distinct families.
        skip_bad: accepted for every dataset; rendered images have nothing to skip.
    """
    return _glyph_split(root, split, transform, strict, min_families, class_order(), _train_count())


@register_dataset(
    "glyphs-shifted",
    "glyphs cut by script: Latin trains, Greek, Cyrillic and symbols are unseen",
    mirror_sensitive=True,
)
def load_glyphs_shifted(
    root: str | Path | None = None,
    split: str = "train",
    transform: Callable[[Any], Any] | None = None,
    *,
    strict: bool = True,
    min_families: int = MIN_FAMILIES,
    skip_bad: bool = False,
) -> ArrayImageDataset:
    """The glyphs benchmark cut by script (:func:`shifted_class_order`): digits, Latin and
    Latin-1 letters for ``"train"``, Greek, Cyrillic and symbols for ``"test"``; the
    arguments are :func:`load_glyphs`'."""
    order = shifted_class_order()
    train_count = sum(len(GROUPS[g]) for g in SHIFTED_TRAIN_GROUPS)
    return _glyph_split(root, split, transform, strict, min_families, order, train_count)


def _glyph_split(
    root: str | Path | None,
    split: str,
    transform: Callable[[Any], Any] | None,
    strict: bool,
    min_families: int,
    order: list[str],
    train_count: int,
) -> ArrayImageDataset:
    """The ``split`` half of the rendered glyphs whose classes, in ``order``, are the first
    ``train_count`` characters (``"train"``) or the rest."""
    check_split(split)
    glyphs = _loaded(str(Path(FONT_ROOT if root is None else root).resolve()), min_families)
    rendered = set(glyphs.chars.tolist())
    classes = [c for c in order if c in rendered]
    if strict:
        mean = len(glyphs.images) / max(len(classes), 1)
        if len(classes) < MIN_CLASSES or mean < MIN_MEAN_FAMILIES:
            raise ValueError(
                f"glyphs: the fonts under {root or FONT_ROOT} give {len(classes)} classes of "
                f"{mean:.1f} families on average; the benchmark needs {MIN_CLASSES} classes "
                f"of {MIN_MEAN_FAMILIES} ({FONT_PACKAGES_HINT}); load_glyphs(..., "
                "strict=False) uses them as they are"
            )
    train_chars = set(order[:train_count])
    wanted = [c for c in classes if (c in train_chars) == (split == "train")]
    index = {c: i for i, c in enumerate(wanted)}
    keep = np.flatnonzero([c in index for c in glyphs.chars.tolist()])
    labels = np.array([index[c] for c in glyphs.chars[keep].tolist()], dtype=np.int64)
    names = [f"U+{ord(c):04X} {c}" for c in wanted]
    return ArrayImageDataset(glyphs.images[keep], labels, names, transform)


@functools.lru_cache(maxsize=2)
def _loaded(root: str, min_families: int) -> GlyphSet:
    """The rendered set, once per process (the train and test halves share it); says what
    fonts it found."""
    glyphs = render_glyphs(root, min_families=min_families)
    console.print(f"{glyphs.summary()} (under {root}; the list: {_fonts_file(glyphs.fonts)})")
    return glyphs


def _train_count() -> int:
    return sum(len(sorted(chars)[0::2]) for chars in GROUPS.values())


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cdml"


def _cache_key(fonts: list[GlyphFont], min_families: int) -> str:
    digest = hashlib.sha256()
    settings = [_CACHE_VERSION, RENDER_SIZE, min_families, DUPLICATE_DISTANCE, AMBIGUOUS_PIXELS,
                GROUPS]  # fmt: skip
    digest.update(json.dumps(settings, ensure_ascii=False).encode())
    for font in fonts:
        stat = Path(font.path).stat()
        digest.update(f"{font.path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _render(fonts: list[GlyphFont], min_families: int) -> GlyphSet:
    from fontTools.ttLib import TTFont
    from PIL import Image, ImageDraw, ImageFont

    chars = class_order()
    size = RENDER_SIZE
    baseline = round(0.72 * size)
    rendered: dict[str, list[tuple[str, np.ndarray]]] = {c: [] for c in chars}
    for font in fonts:
        try:
            cmap = TTFont(font.path, lazy=True, fontNumber=0).getBestCmap() or {}
            face = ImageFont.truetype(font.path, round(0.7 * size))
        except Exception:  # noqa: BLE001 - any font FreeType or fontTools cannot read
            continue
        drawn: dict[str, np.ndarray] = {}
        for char in chars:
            if ord(char) not in cmap or cmap[ord(char)] == ".notdef":
                continue
            image = Image.new("L", (size, size), 255)
            draw = ImageDraw.Draw(image)
            left, _, right, _ = draw.textbbox((0, baseline), char, font=face, anchor="ls")
            draw.text(((size - (right - left)) / 2 - left, baseline), char, 0, face, "ls")
            pixels = np.asarray(image)
            if (pixels < 128).sum() >= 4:
                drawn[char] = pixels
        for char in _distinct_within_font(drawn):
            rendered[char].append((font.family, drawn[char]))
    images, labels, families = [], [], []
    for char in chars:
        kept = _distinct_renderings(rendered[char])
        if len(kept) < min_families:
            continue
        for family, pixels in kept:
            images.append(pixels)
            labels.append(char)
            families.append(family)
    return GlyphSet(
        np.stack(images) if images else np.zeros((0, size, size), np.uint8),
        np.array(labels, dtype=str),
        np.array(families, dtype=str),
        fonts,
    )


def _ink(pixels: np.ndarray) -> np.ndarray:
    """(S, S) uint8 -> (32, 32) float ink coverage in 0..1."""
    s = pixels.shape[0] // 32
    return 1 - pixels.reshape(32, s, 32, s).mean(axis=(1, 3)) / 255


def _distinct_within_font(drawn: dict[str, np.ndarray]) -> list[str]:
    """The characters a font draws unlike any other of its characters."""
    chars = list(drawn)
    if not chars:
        return []
    ink = 1 - np.stack([drawn[c].ravel() for c in chars]).astype(np.float32) / 255
    # Squared differences, by one matrix product: about the differing pixels for the nearly
    # binary renderings.
    squares = (ink * ink).sum(axis=1)
    differing = squares[:, None] + squares[None, :] - 2 * ink @ ink.T
    np.fill_diagonal(differing, np.inf)
    return [c for c, row in zip(chars, differing, strict=True) if row.min() >= AMBIGUOUS_PIXELS]


def _distinct_renderings(items: list[tuple[str, np.ndarray]]) -> list[tuple[str, np.ndarray]]:
    """Drop each rendering that nearly repeats an earlier kept one (fonts in name order)."""
    from scipy.spatial.distance import cdist

    if not items:
        return []
    ink = np.stack([_ink(pixels).ravel() for _, pixels in items])
    distance = cdist(ink, ink, "braycurtis")
    kept: list[int] = []
    for i in range(len(items)):
        if all(distance[i, j] >= DUPLICATE_DISTANCE for j in kept):
            kept.append(i)
    return [items[i] for i in kept]
