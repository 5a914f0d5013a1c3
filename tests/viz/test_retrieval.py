import numpy as np
import pytest

from cdml.viz import plot_retrieval, retrieve
from cdml.viz.retrieval import MATCH_COLOR, MISMATCH_COLOR, QUERY_COLOR


def reference_neighbours(embeddings, query, k):
    """Literal top-k: sort every other item by (distance, index)."""
    others = [j for j in range(len(embeddings)) if j != query]
    distances = {j: float(np.sum((embeddings[j] - embeddings[query]) ** 2)) for j in others}
    return sorted(others, key=lambda j: (distances[j], j))[:k]


def test_retrieve_on_a_line():
    embeddings = np.array([[0.0], [1.0], [2.5], [10.0], [11.0], [12.5]])
    labels = np.array([0, 0, 1, 1, 1, 0])
    neighbours, matches = retrieve(embeddings, labels, queries=[0, 4], k=2)
    np.testing.assert_array_equal(neighbours, [[1, 2], [3, 5]])
    np.testing.assert_array_equal(matches, [[True, False], [True, False]])


def test_retrieve_matches_a_brute_force_reference():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(40, 5)).astype(np.float32)
    labels = rng.integers(0, 4, 40)
    queries = np.array([0, 7, 13, 39])
    neighbours, matches = retrieve(embeddings, labels, queries, k=6)
    for row, query in enumerate(queries):
        expected = reference_neighbours(embeddings.astype(np.float64), query, 6)
        assert neighbours[row].tolist() == expected
        assert matches[row].tolist() == [labels[j] == labels[query] for j in expected]


def test_retrieve_excludes_the_query_among_duplicates():
    embeddings = np.ones((6, 3))
    neighbours, _ = retrieve(embeddings, np.arange(6), queries=[0, 3, 5], k=3)
    np.testing.assert_array_equal(neighbours, [[1, 2, 3], [0, 1, 2], [0, 1, 2]])


@pytest.mark.parametrize(
    ("queries", "k", "match"),
    [
        ([0], 0, "k must be in"),
        ([0], 6, r"k must be in \[1, 5\]"),
        ([6], 2, "queries"),
        ([[0]], 2, "1-D"),
        ([0.5], 2, "queries"),
    ],
)
def test_retrieve_rejects_bad_arguments(queries, k, match):
    with pytest.raises(ValueError, match=match):
        retrieve(np.zeros((6, 2)), np.zeros(6, dtype=int), queries, k)


def _grid_inputs(labels):
    """Points on a line (neighbours are the adjacent ones) with plain grey images."""
    n = len(labels)
    embeddings = np.arange(n, dtype=np.float64)[:, None]
    images = np.full((n, 16, 16), 128, dtype=np.uint8)
    return embeddings, np.asarray(labels), images


def test_frames_are_green_when_all_neighbours_match(tmp_path, read_png, count_color):
    embeddings, labels, images = _grid_inputs([0] * 10)
    out = plot_retrieval(embeddings, labels, images, tmp_path / "good.png", num_queries=3, k=3)
    pixels = read_png(out)
    assert count_color(pixels, MATCH_COLOR) > 0
    assert count_color(pixels, MISMATCH_COLOR) == 0
    assert count_color(pixels, QUERY_COLOR) > 0


def test_frames_are_red_when_no_neighbour_matches(tmp_path, read_png, count_color):
    embeddings, labels, images = _grid_inputs(range(10))
    out = plot_retrieval(embeddings, labels, images, tmp_path / "bad.png", num_queries=3, k=3)
    pixels = read_png(out)
    assert count_color(pixels, MISMATCH_COLOR) > 0
    assert count_color(pixels, MATCH_COLOR) == 0


def test_frame_colours_follow_the_match_matrix(tmp_path, read_png, count_color):
    labels = np.random.default_rng(1).integers(0, 3, 12)
    embeddings, labels, images = _grid_inputs(labels)
    out = plot_retrieval(embeddings, labels, images, tmp_path / "mixed.png", num_queries=12, k=4)
    _, matches = retrieve(embeddings, labels, np.arange(12), k=4)
    pixels = read_png(out)
    green, red = count_color(pixels, MATCH_COLOR), count_color(pixels, MISMATCH_COLOR)
    # All frames have the same size, so pixel counts are proportional to frame counts.
    assert green / (green + red) == pytest.approx(matches.mean(), abs=0.005)


def test_plot_retrieval_accepts_rgb_images_of_several_sizes(tmp_path, read_png):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (10 + i, 14, 3), dtype=np.uint8) for i in range(8)]
    out = plot_retrieval(
        rng.normal(size=(8, 4)),
        np.arange(8) % 2,
        images,
        tmp_path / "rgb.png",
        num_queries=20,
        k=7,
        class_names={0: "cat", 1: "dog"},
    )
    assert read_png(out).shape[2] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["rgb.png"]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"k": 10}, r"k must be in \[1, 9\]"),
        ({"num_queries": 0}, "num_queries"),
        ({"images": np.zeros((9, 4, 4), dtype=np.uint8)}, "images has 9 entries"),
        ({"images": np.zeros((10, 4, 4), dtype=np.int32)}, r"images\[0\] must be uint8"),
        ({"labels": np.arange(10).astype(str)}, "labels must be integers"),
        ({"embeddings": np.zeros((10, 2, 2))}, "2-D"),
        ({"class_names": ["only one"]}, "class_names has no entry"),
    ],
)
def test_plot_retrieval_rejects_bad_inputs(tmp_path, change, match):
    embeddings, labels, images = _grid_inputs(range(10))
    arguments = {
        "embeddings": embeddings,
        "labels": labels,
        "images": images,
        "out_path": tmp_path / "x.png",
    }
    with pytest.raises(ValueError, match=match):
        plot_retrieval(**{**arguments, **change})
    assert not (tmp_path / "x.png").exists()
