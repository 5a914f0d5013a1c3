"""``cdml plot``: the t-SNE map or the retrieval grid of an embeddings file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cdml.checks import check_seed
from cdml.inference import load_embeddings, source_images
from cdml.io import check_output
from cdml.viz.figures import PNG_FIGURE, is_cdml_png
from cdml.viz.inputs import sample_indices
from cdml.viz.retrieval import plot_retrieval
from cdml.viz.tsne import plot_tsne


def plot_embeddings(
    embeddings: str | Path,
    out: str | Path,
    *,
    retrieval: bool = False,
    images: bool = False,
    queries: int = 8,
    k: int = 5,
    max_points: int = 3000,
    seed: int = 0,
) -> Path:
    """Draw the embeddings file ``embeddings`` (as ``cdml embed`` writes it) to the PNG
    ``out``: a t-SNE map of at most ``max_points`` items coloured by class (with ``images``,
    their thumbnails), or with ``retrieval`` a grid of ``queries`` random queries and their
    ``k`` nearest neighbours; ``seed`` draws the samples. Every argument and the output are
    checked before any work. Returns the path written.

    Args:
        embeddings: a .npz file written by cdml embed.
        out: the PNG file to write.
        retrieval: draw a retrieval grid instead of a t-SNE map.
        images: t-SNE: draw image thumbnails.
        queries: retrieval: the number of queries.
        k: retrieval: neighbours per query.
        max_points: t-SNE: subsample to this many.
        seed: seed of the samples.
    """
    check_seed(seed, "--seed")
    check_output(out, what=PNG_FIGURE, owned=is_cdml_png, inputs={"--embeddings": embeddings})
    arrays = load_embeddings(embeddings)
    vectors, labels = arrays["embeddings"], arrays["labels"]

    def pictures(indices: np.ndarray) -> list[np.ndarray]:
        try:
            return source_images(arrays, indices)
        except ValueError as error:
            raise ValueError(f"{embeddings}: {error}") from None

    if retrieval:
        return plot_retrieval(
            vectors,
            labels,
            pictures(np.arange(len(labels))),
            out,
            num_queries=queries,
            k=k,
            seed=seed,
        )
    keep = sample_indices(len(labels), max_points, seed)
    return plot_tsne(
        vectors[keep],
        labels[keep],
        out,
        images=pictures(keep) if images else None,
        max_points=max_points,
        seed=seed,
        title=f"t-SNE of {Path(embeddings).name}",
    )
