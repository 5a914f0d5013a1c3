"""Clustering new images: the number of groups, spectral clustering, k-means and
facility-location medoids, and what `cdml cluster` writes."""

import csv
import itertools
import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import make_blobs

from cdml.cli import main
from cdml.clustering import (
    CLUSTER_METHODS,
    cluster,
    estimate_num_clusters,
    neighbour_graph,
    spectral_decomposition,
    spectral_embedding,
)
from cdml.losses.facility_location import facility_location_medoids
from cdml.metrics import evaluate, partition_scores


def blobs(classes, n=1200, spread=0.4, seed=0):
    points, labels = make_blobs(n, centers=classes, n_features=12, cluster_std=spread,
                                center_box=(-10, 10), random_state=seed)  # fmt: skip
    return points.astype(np.float32), labels


@pytest.mark.parametrize("classes", [3, 8, 25])
def test_the_estimated_number_of_groups_is_the_number_of_separated_classes(classes):
    points, _ = blobs(classes)
    assert cluster(points, "auto").k == classes  # the estimate's k, of any size, is accepted


def test_beyond_one_sample_the_estimate_averages_several(monkeypatch):
    monkeypatch.setattr("cdml.clustering.methods.ESTIMATE_SAMPLE_SIZE", 300)
    points, _ = blobs(4)
    assert estimate_num_clusters(points) == 4
    with pytest.raises(ValueError, match=r"k_max must lie in 2..299 for 300 items"):
        estimate_num_clusters(points, k_max=500)


@pytest.mark.parametrize("method", sorted(CLUSTER_METHODS))
def test_separated_classes_are_recovered_and_exemplars_are_members(method):
    points, labels = blobs(6)
    result = cluster(points, 6, method)
    assert partition_scores(labels, result.assignment)["nmi"] == pytest.approx(1.0)
    sizes = np.bincount(result.assignment)
    assert (np.diff(sizes) <= 0).all()  # numbered by decreasing size
    assert (result.assignment[result.exemplars] == np.arange(6)).all()
    if method == "medoids":  # distances are to the exemplar itself
        gap = np.linalg.norm(points - points[result.exemplars[result.assignment]], axis=1)
        np.testing.assert_allclose(result.distances, gap, rtol=1e-4, atol=1e-4)


def test_medoids_reach_the_best_facility_location_objective_of_a_small_set():
    points, _ = blobs(3, n=12, spread=2.0, seed=3)
    dist = torch.cdist(torch.from_numpy(points), torch.from_numpy(points)).double()

    def cost(medoids):
        return dist[:, list(medoids)].min(1).values.sum().item()

    best = min(cost(c) for c in itertools.combinations(range(12), 3))
    assert cost(facility_location_medoids(dist, 3).tolist()) == pytest.approx(best)


def test_kmeans_clusters_score_at_least_as_well_as_evaluates_single_run():
    # Overlapping classes, where one k-means run can split a class; restarts keep the best.
    points, labels = blobs(10, n=2000, spread=2.5, seed=4)
    single = evaluate(points, labels, map_at_r=False)["nmi"]
    result = cluster(points, 10, "kmeans")
    assert partition_scores(labels, result.assignment)["nmi"] >= single - 1e-9


def two_moons(n=1000, seed=0):
    # Two interleaved half circles: not separable by centroids, connected along each curve.
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, np.pi, n)
    labels = rng.integers(0, 2, n)
    points = np.stack([np.cos(angle), np.sin(angle)], 1)
    points[labels == 1] = 1 - points[labels == 1] - [0, 0.5]
    return (points + rng.normal(0, 0.05, points.shape)).astype(np.float32), labels


def test_spectral_clustering_follows_the_neighbour_graph_where_kmeans_cannot():
    points, labels = two_moons()
    spectral = partition_scores(labels, cluster(points, 2, "spectral").assignment)["nmi"]
    kmeans = partition_scores(labels, cluster(points, 2, "kmeans").assignment)["nmi"]
    assert spectral > 0.95 > 0.5 > kmeans


def test_the_spectral_embedding_matches_a_dense_eigendecomposition():
    points, _ = blobs(3, n=300, spread=3.0, seed=1)
    graph = neighbour_graph(points, 10)
    assert (graph != graph.T).nnz == 0 and graph.diagonal().sum() == 0
    assert (np.asarray(graph.sum(axis=1)) >= 10).all()
    degrees = np.asarray(graph.sum(axis=1)).ravel()
    normalised = graph.toarray() / np.sqrt(np.outer(degrees, degrees))
    values, vectors = np.linalg.eigh(normalised)
    expected = vectors[:, ::-1][:, :4]
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(spectral_decomposition(graph, 4)[0], values[::-1][:4], atol=1e-6)
    rows = spectral_embedding(graph, 4)
    # The same subspace: every expected column is a combination of the computed ones (the
    # rows' normalisation is per row, so compare the spans of the row-normalised matrices).
    projection = rows @ np.linalg.lstsq(rows, expected, rcond=None)[0]
    np.testing.assert_allclose(projection, expected, atol=1e-4)
    assert values[-4] - values[-5] > 1e-3  # a well-defined 4-dimensional subspace


def test_every_component_of_a_disconnected_graph_gets_its_own_direction():
    # 12 separate groups: ARPACK alone finds only one eigenvector for a repeated eigenvalue.
    points, labels = blobs(12, n=600, spread=0.2, seed=2)
    graph = neighbour_graph(points, 10)
    values, _ = spectral_decomposition(graph, 14)
    np.testing.assert_allclose(values[:12], 1.0, atol=1e-6)  # one eigenvalue 1 per component
    assert values[12] < 0.99
    rows = spectral_embedding(graph, 12)
    assert partition_scores(labels, np.abs(rows).argmax(axis=1))["nmi"] == pytest.approx(1.0)
    # More components than directions: the smallest components get rows of zeros, and
    # cluster() still places their items, each with its nearest neighbour's cluster.
    few = spectral_embedding(graph, 5)
    assert (~few.any(axis=1)).sum() == 600 - np.sort(np.bincount(labels))[-5:].sum()
    result = cluster(points, 5, "spectral")
    assert result.k == 5
    assert all(len(np.unique(result.assignment[labels == c])) == 1 for c in range(12))


def test_cluster_writes_assignments_clusters_and_sheets(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "clusters"
    source = ["--checkpoint", str(tiny_checkpoint), "--dataset", "digits"]
    assert main(["cluster", *source, "--k", "4", "--out", str(out)]) == 0
    with (out / "assignments.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 896 and set(rows[0]) == {"path", "cluster", "distance", "label"}
    summary = json.loads((out / "clusters.json").read_text())
    assert summary["k"] == 4 and sum(c["size"] for c in summary["clusters"]) == 896
    assert set(summary["scores"]) == {"nmi", "ami", "ari", "purity"}
    assert sorted(p.name for p in (out / "sheets").iterdir()) == [
        "cluster_000.png", "cluster_001.png", "cluster_002.png", "cluster_003.png",
        "overview.png",
    ]  # fmt: skip
    with Image.open(out / "sheets" / "overview.png") as sheet:
        assert sheet.width > 100
    assert "896 items in 4 clusters" in capsys.readouterr().out

    embedded = tmp_path / "test.npz"
    assert main(["embed", *source, "--out", str(embedded)]) == 0
    again = tmp_path / "again"
    assert main(["cluster", "--embeddings", str(embedded), "--k", "2", "--out", str(again)]) == 0
    assert json.loads((again / "clusters.json").read_text())["k"] == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--k", "0"], "positive integer or auto"),
        (["--k", "5000"], "k must be 'auto' or"),
        (["--k-max", "1"], "k_max must lie in 2.."),
        (["--members", "-1"], "--members must be 0 or more"),
    ],
)
def test_bad_cluster_counts_are_refused(tiny_checkpoint, tmp_path, capsys, extra, message):
    argv = ["cluster", "--checkpoint", str(tiny_checkpoint), "--dataset", "digits"]
    try:
        code = main([*argv, *extra, "--out", str(tmp_path / "c")])
    except SystemExit as exit:  # argparse's own refusal
        code = exit.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
