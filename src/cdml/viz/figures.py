"""Figure creation on the Agg canvas and atomic PNG writing."""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cdml.io import atomic_path


def new_figure(width: float, height: float, dpi: int) -> Figure:
    """A figure of ``width`` x ``height`` inches rendered by Agg, independent of pyplot."""
    figure = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Figure, out_path: str | os.PathLike[str]) -> Path:
    """Write ``figure`` to ``out_path`` as PNG atomically; return the path.

    The PNG goes to a temporary file in the same folder, then replaces ``out_path``, so readers
    never see a partial file (:func:`cdml.io.atomic_path`). Missing parent folders are created.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_path) as temporary, temporary.open("wb") as stream:
        # "tight" crops or extends the canvas to its contents without rescaling them.
        figure.savefig(stream, format="png", dpi=figure.dpi, bbox_inches="tight", pad_inches=0.1)
    return out_path
