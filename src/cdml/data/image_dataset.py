"""Images read lazily from files, with errors that name the file."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from typing import IO, Any

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image, UnidentifiedImageError

from cdml.data.base import LabelledDataset

# How many missing paths an error message lists before summarising the rest.
_LISTED = 5
# Modes with an alpha channel (premultiplied in La and RGBa).
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")


def open_rgb(path: str) -> Image.Image:
    """Open and fully decode an image file as RGB, raising ``OSError`` naming ``path``.

    CMYK and 1-bit images are converted as PIL does; 16-bit grey images are scaled to 8 bits
    (PIL's own conversion clips them to white), 32-bit integer and float ones too when their
    values exceed 255. Transparent pixels (an alpha channel, or a palette or colour marked
    transparent) are composited onto white. An animated image gives its first frame. An
    image of more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels (89,478,485 by default; None
    for no limit) is refused before it is decoded, as a likely decompression bomb."""
    try:
        return decode_rgb(path, Image.MAX_IMAGE_PIXELS)
    except Image.DecompressionBombError:
        raise OSError(
            f"cannot read image {path}: more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels "
            f"exceeds the limit of {Image.MAX_IMAGE_PIXELS:,} pixels (a decompression bomb?)"
        ) from None
    except (OSError, SyntaxError, ValueError) as err:
        if isinstance(err, UnidentifiedImageError) and os.path.getsize(path) == 0:
            raise OSError(f"cannot read image {path}: the file is empty (0 bytes)") from None
        raise OSError(f"cannot read image {path}: {err}") from err


def decode_rgb(source: str | IO[bytes], max_pixels: int | None) -> Image.Image:
    """The image of a file or a binary stream, decoded as RGB as :func:`open_rgb` says;
    :class:`TooManyPixels` before any decoding when it has more than ``max_pixels`` pixels
    (None: no limit). PIL's own errors (``UnidentifiedImageError``, ``SyntaxError``, ...) pass."""
    with warnings.catch_warnings():
        # Refused here instead: PIL itself only warns up to twice its limit.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(source) as image:
            _check_pixels(image, max_pixels)
            return _rgb(image)  # decodes now, so truncation surfaces here


class TooManyPixels(OSError):
    """An image larger than the pixel limit: refused before it is decoded."""


def _check_pixels(image: Image.Image, limit: int | None) -> None:
    width, height = image.size
    if limit is not None and width * height > limit:
        raise TooManyPixels(
            f"{width}x{height} pixels exceeds the limit of {limit:,} pixels (a decompression bomb?)"
        )


def _rgb(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        return _eight_bit(image).convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        # Through RGBA: PIL's direct conversion of a palette with per-entry alpha warns
        # and drops the alpha, leaving whatever colour lies under a transparent pixel.
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return image.convert("RGB")


def _eight_bit(image: Image.Image) -> Image.Image:
    values = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        values = values / 257  # 0..65535 -> 0..255
    elif values.size and values.max() > 255:
        values = values * (255 / values.max())
    return Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8), "L")


class ImageListDataset(LabelledDataset):
    """A list of image files with integer labels; images decoded on access as RGB PIL images.

    Args:
        paths: n image paths (absolute, or relative to the working directory).
        labels: (n,) class indices in ``0..len(class_names)-1``.
        class_names: one name per class index.
        transform: applied to each PIL image.
        skip_bad: when False (default) an unreadable or truncated image raises ``OSError``
            naming the file. When True it is skipped: a warning names it, ``skipped`` records
            it, and the next readable image of the same class (in dataset order, wrapping
            around) is returned instead, so batches keep their class composition.
            ``skipped`` counts what this process met; each ``DataLoader`` worker keeps its own
            record, and the warnings name every file.
    """

    def __init__(
        self,
        paths: Sequence[str],
        labels: ArrayLike,
        class_names: Sequence[str],
        transform: Callable[[Any], Any] | None = None,
        skip_bad: bool = False,
    ) -> None:
        super().__init__(labels, class_names, transform)
        # A numpy string array rather than a list: DataLoader workers then share the
        # memory instead of copying it on every access to a Python object's refcount.
        self.paths = np.asarray([os.fspath(p) for p in paths], dtype=np.str_)
        if len(self.paths) != len(self.labels):
            raise ValueError(f"got {len(self.paths)} paths but {len(self.labels)} labels")
        self.skip_bad = skip_bad
        self.skipped: dict[str, str] = {}

    def missing_files(self) -> list[str]:
        """Every path that is not an existing file, in dataset order."""
        return [str(p) for p in self.paths if not os.path.isfile(p)]

    def check_files(self) -> None:
        """Raise ``FileNotFoundError`` listing the missing files, all found in one pass."""
        missing = self.missing_files()
        if not missing:
            return
        listed = "\n  ".join(missing[:_LISTED])
        more = f"\n  ... and {len(missing) - _LISTED:,} more" if len(missing) > _LISTED else ""
        raise FileNotFoundError(
            f"{len(missing):,} of {len(self.paths):,} image files are missing "
            f"(incomplete download or wrong root?):\n  {listed}{more}"
        )

    def _image(self, index: int) -> Image.Image:
        if not self.skip_bad:
            return open_rgb(str(self.paths[index]))
        label = self.labels[index]
        members = np.flatnonzero(self.labels == label)
        start = int(np.searchsorted(members, index))
        for candidate in np.roll(members, -start):
            path = str(self.paths[candidate])
            if path in self.skipped:
                continue
            try:
                return open_rgb(path)
            except OSError as err:
                self.skipped[path] = str(err)
                warnings.warn(
                    f"skipped unreadable image {path} ({len(self.skipped)} skipped so far): "
                    f"{err.__cause__ or err}",
                    RuntimeWarning,
                    stacklevel=2,
                )
        raise OSError(
            f"every image of class {self.class_names[label]!r} is unreadable "
            f"({len(members)} files, e.g. {self.paths[members[0]]})"
        )

    def _take(
        self, indices: np.ndarray, labels: np.ndarray, class_names: list[str]
    ) -> ImageListDataset:
        return ImageListDataset(
            self.paths[indices], labels, class_names, self.transform, self.skip_bad
        )
