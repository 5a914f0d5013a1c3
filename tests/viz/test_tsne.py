import numpy as np
import pytest
import torch

import cdml.viz.tsne as tsne_module
from cdml.viz import class_colors, plot_tsne, tsne_2d
from cdml.viz.tsne import _one_per_cell

MAGENTA = "#ff00ff"


def test_tsne_2d_keeps_separated_classes_apart(blobs):
    embeddings, labels = blobs
    xy = tsne_2d(embeddings, seed=0)
    assert xy.shape == (60, 2) and np.isfinite(xy).all()
    distances = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    nearest = distances.argmin(axis=1)
    assert (labels[nearest] == labels).mean() == 1.0


def test_tsne_2d_is_seeded(blobs):
    embeddings, _ = blobs
    np.testing.assert_array_equal(tsne_2d(embeddings, seed=3), tsne_2d(embeddings, seed=3))


def test_tsne_2d_accepts_tensors_and_few_points():
    assert tsne_2d(torch.randn(4, 5)).shape == (4, 2)


@pytest.mark.parametrize(
    ("embeddings", "match"),
    [
        (np.zeros((3, 4)), "n >= 4"),
        (np.zeros(10), "2-D"),
        (np.full((5, 2), np.nan), "row 0 contains NaN"),
        (np.array([["a", "b"]] * 5), "real numbers"),
    ],
)
def test_tsne_2d_rejects_bad_embeddings(embeddings, match):
    with pytest.raises(ValueError, match=match):
        tsne_2d(embeddings)


@pytest.mark.parametrize("num_classes", [3, 10, 20, 100])
def test_class_colors_are_distinct(num_classes):
    colors = class_colors(num_classes)
    assert colors.shape == (num_classes, 4)
    assert len(np.unique(colors.round(3), axis=0)) == num_classes


def test_consecutive_classes_get_distant_colors_beyond_20():
    colors = class_colors(100)[:, :3]
    steps = np.linalg.norm(np.diff(colors, axis=0), axis=1)
    assert steps.min() > 0.15


def test_plot_tsne_writes_a_png(tmp_path, blobs, read_png):
    embeddings, labels = blobs
    out = tmp_path / "tsne.png"
    result = plot_tsne(embeddings, labels, out, class_names=["a", "b", "c"], title="Test")
    assert result == out
    pixels = read_png(out)
    assert pixels.shape[0] > 1000 and pixels.shape[1] > 1000
    assert (pixels != 255).any()
    assert [p.name for p in tmp_path.iterdir()] == ["tsne.png"]


def test_plot_tsne_draws_thumbnails(tmp_path, blobs, read_png, count_color):
    embeddings, labels = blobs
    rgb = np.zeros((60, 20, 30, 3), dtype=np.uint8)
    rgb[..., [0, 2]] = 255  # magenta, absent from the colour maps
    grey = [np.full((12, 12), 40, dtype=np.uint8)] * 60
    plot_tsne(embeddings, labels, tmp_path / "rgb.png", images=rgb, thumb_size=30)
    plot_tsne(embeddings, labels, tmp_path / "grey.png", images=grey)
    plot_tsne(embeddings, labels, tmp_path / "none.png")
    magenta = count_color(read_png(tmp_path / "rgb.png"), MAGENTA)
    assert magenta >= 3 * 20 * 30  # at least one thumbnail per class, 30 x 20 pixels each
    assert count_color(read_png(tmp_path / "none.png"), MAGENTA) == 0
    assert count_color(read_png(tmp_path / "grey.png"), "#282828") >= 3 * 40 * 40


def test_plot_tsne_subsamples_to_max_points(tmp_path, monkeypatch, blobs):
    embeddings, labels = blobs
    seen = []

    def fake_tsne(points, seed):
        seen.append(points)
        return np.random.default_rng(seed).normal(size=(len(points), 2))

    monkeypatch.setattr(tsne_module, "tsne_2d", fake_tsne)
    plot_tsne(embeddings, labels, tmp_path / "a.png", max_points=25, seed=1)
    plot_tsne(embeddings, labels, tmp_path / "b.png", max_points=25, seed=1)
    plot_tsne(embeddings, labels, tmp_path / "c.png", max_points=100)
    assert [len(points) for points in seen] == [25, 25, 60]
    np.testing.assert_array_equal(seen[0], seen[1])
    rows = {tuple(row) for row in embeddings}
    assert all(tuple(row) in rows for row in seen[0])
    assert len({tuple(row) for row in seen[0]}) == 25


def test_one_per_cell_picks_one_point_in_each_occupied_cell():
    xy = np.random.default_rng(0).uniform(0, 10, size=(500, 2))
    chosen = _one_per_cell(xy, lower=np.zeros(2), cell=2.5, seed=0)
    cells = [tuple(np.floor(xy[i] / 2.5).astype(int)) for i, _ in chosen]
    assert len(cells) == len(set(cells)) == 16
    for i, centre in chosen:
        assert np.all(np.abs(xy[i] - centre) <= 1.25)
        np.testing.assert_allclose((centre - 1.25) % 2.5, 0, atol=1e-9)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"labels": np.zeros(59, dtype=int)}, r"labels must have shape \(60,\)"),
        ({"labels": np.zeros(60)}, "labels must be integers"),
        ({"images": [np.zeros((8, 8), dtype=np.uint8)] * 59}, "images has 59 entries"),
        ({"images": [np.zeros((8, 8))] * 60}, r"images\[0\] must be uint8"),
        ({"images": [np.zeros((8, 8, 4), dtype=np.uint8)] * 60}, r"images\[0\].*\(H, W, 3\)"),
        ({"class_names": ["a", "b"]}, r"class_names has no entry for label\(s\) \[2\]"),
        ({"class_names": {0: "a", 2: "c"}}, r"class_names has no entry for label\(s\) \[1\]"),
        ({"thumb_size": 0}, "thumb_size"),
        ({"thumb_size": 301}, r"thumb_size must be in \[1, 300\]"),
        ({"max_points": 0}, "max_points"),
        ({"max_points": 3}, "max_points"),
    ],
)
def test_plot_tsne_rejects_bad_inputs(tmp_path, blobs, change, match):
    embeddings, labels = blobs
    arguments = {"embeddings": embeddings, "labels": labels, "out_path": tmp_path / "x.png"}
    with pytest.raises(ValueError, match=match):
        plot_tsne(**{**arguments, **change})
    assert not (tmp_path / "x.png").exists()
