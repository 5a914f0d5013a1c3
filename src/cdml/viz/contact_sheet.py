"""Contact sheets: a grid of thumbnails, the first one (an exemplar) framed."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps, PngImagePlugin

from cdml.io import atomic_path
from cdml.viz.figures import SOFTWARE

FRAME = (214, 39, 40)  # the exemplar's frame


def contact_sheet(
    images: Sequence[np.ndarray],
    out_path: str | os.PathLike[str],
    captions: Sequence[str] | None = None,
    cell: int = 72,
    columns: int | None = None,
    frame_first: bool = True,
) -> Path:
    """Write a PNG grid of ``images`` (uint8 ``(H, W, 3)`` or ``(H, W)``), each fitted in a
    ``cell`` x ``cell`` square, ``captions`` (one per image) under them, the first framed
    when ``frame_first``. ``columns`` defaults to a near-square grid. Returns the path."""
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    caption_height = 14 if captions else 0
    pad = 4
    sheet = Image.new(
        "RGB", (columns * (cell + pad) + pad, rows * (cell + pad + caption_height) + pad), "white"
    )
    draw = ImageDraw.Draw(sheet)
    for i, image in enumerate(images):
        # Scaled to fit the cell, up or down (digits are 8 x 8 pixels).
        thumbnail = ImageOps.contain(
            Image.fromarray(np.asarray(image)).convert("RGB"), (cell, cell)
        )
        x = pad + (i % columns) * (cell + pad)
        y = pad + (i // columns) * (cell + pad + caption_height)
        sheet.paste(
            thumbnail, (x + (cell - thumbnail.width) // 2, y + (cell - thumbnail.height) // 2)
        )
        if i == 0 and frame_first:
            draw.rectangle([x - 2, y - 2, x + cell + 1, y + cell + 1], outline=FRAME, width=3)
        if captions:
            draw.text((x, y + cell + 1), str(captions[i])[: cell // 6], fill="black")
    text = PngImagePlugin.PngInfo()
    text.add_text("Software", SOFTWARE)
    with atomic_path(out_path) as tmp:
        sheet.save(tmp, format="PNG", pnginfo=text)
    return Path(out_path)
