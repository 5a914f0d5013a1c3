"""Figure creation on the Agg canvas and atomic PNG writing."""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from cdml.io import atomic_path, check_output


def new_figure(width: float, height: float, dpi: int) -> Figure:
    """A figure of ``width`` x ``height`` inches rendered by Agg, independent of pyplot."""
    figure = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


SOFTWARE = "cdml"  # the PNG text chunk "Software" of every picture cdml writes
PNG_FIGURE = "a PNG picture"


def is_cdml_png(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a PNG that cdml wrote (its ``Software`` text says so)."""
    try:
        with Image.open(path) as image:
            return image.format == "PNG" and image.text.get("Software") == SOFTWARE
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def save_png(figure: Figure, out_path: str | os.PathLike[str]) -> Path:
    """Write ``figure`` to ``out_path`` as PNG atomically; return the path.

    The PNG goes to a temporary file in the same folder, then replaces ``out_path``, so readers
    never see a partial file (:func:`cdml.io.atomic_path`). Missing parent folders are created.
    An existing file is replaced only if it is a picture cdml wrote (:func:`is_cdml_png`),
    else ``ValueError``.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    check_output(out_path, what=PNG_FIGURE, owned=is_cdml_png)
    with atomic_path(out_path) as temporary, temporary.open("wb") as stream:
        # "tight" crops or extends the canvas to its contents without rescaling them.
        figure.savefig(
            stream,
            format="png",
            dpi=figure.dpi,
            bbox_inches="tight",
            pad_inches=0.1,
            metadata={"Software": SOFTWARE},
        )
    return out_path
