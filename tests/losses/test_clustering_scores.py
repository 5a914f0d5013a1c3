import numpy as np
import pytest
import torch
from sklearn import metrics
from sklearn.metrics.cluster import expected_mutual_information

from cdml.losses import clustering_score
from cdml.losses.clustering_scores import AVERAGES, expected_mutual_information_terms


def _labellings(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(clusters, classes) counts -> (class labels, cluster labels) of as many points."""
    classes, clusters = [], []
    for cluster in range(table.shape[0]):
        for label in range(table.shape[1]):
            classes += [label] * int(table[cluster, label])
            clusters += [cluster] * int(table[cluster, label])
    return np.array(classes), np.array(clusters)


def _sklearn(kind: str, average: str, table: np.ndarray) -> float:
    true, pred = _labellings(table)
    if kind == "nmi":
        return metrics.normalized_mutual_info_score(true, pred, average_method=average)
    if kind == "ami":
        return metrics.adjusted_mutual_info_score(true, pred, average_method=average)
    if kind == "ari":
        return metrics.adjusted_rand_score(true, pred)
    return metrics.v_measure_score(true, pred)


def _random_tables(seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    shape = (6, int(rng.integers(1, 6)), int(rng.integers(1, 6)))
    tables = rng.integers(0, 4, shape) * (rng.random(shape) < 0.6)
    tables[:, 0, 0] += 1  # at least one point
    return torch.as_tensor(tables)


SPECIAL_TABLES = [
    [[5]],  # one cluster, one class
    [[3, 2, 1]],  # one cluster
    [[3], [2], [1]],  # one class
    [[2, 0], [0, 3]],  # perfect match
    [[1, 1], [1, 1]],  # independent
    [[0, 0, 0], [2, 0, 1], [0, 0, 0]],  # empty rows and columns
    [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],  # all singletons
]


KINDS_AND_AVERAGES = [
    *[(kind, average) for kind in ("nmi", "ami") for average in AVERAGES],
    ("ari", "arithmetic"),  # no normaliser
    ("vmeasure", "arithmetic"),
]


@pytest.mark.parametrize(("kind", "average"), KINDS_AND_AVERAGES)
def test_scores_equal_sklearn_on_random_tables(kind, average):
    for seed in range(8):
        tables = _random_tables(seed)
        scores = clustering_score(tables, kind, average)
        assert scores.dtype == torch.float64 and scores.shape == (len(tables),)
        for table, score in zip(tables.numpy(), scores.tolist(), strict=True):
            assert score == pytest.approx(_sklearn(kind, average, table), abs=1e-12)


@pytest.mark.parametrize("kind", ["nmi", "ami", "ari", "vmeasure"])
@pytest.mark.parametrize("table", SPECIAL_TABLES)
def test_scores_equal_sklearn_on_degenerate_tables(kind, table):
    score = clustering_score(torch.tensor([table]), kind, "geometric")
    expected = _sklearn(kind, "geometric", np.array(table))
    assert score.item() == pytest.approx(expected, abs=1e-12)


def test_expected_mutual_information_equals_sklearn():
    for seed in range(10):
        table = _random_tables(seed)[0]
        rows, cols = table.sum(1), table.sum(0)
        terms = expected_mutual_information_terms(rows, cols, table.sum())
        present = table[rows > 0][:, cols > 0].numpy()  # scikit-learn's tables have no empty line
        expected = expected_mutual_information(present, int(table.sum()))
        assert terms.sum().item() == pytest.approx(expected, abs=1e-12)


def test_scores_accept_float_counts_and_keep_device():
    tables = torch.tensor([[[2.0, 1.0], [0.0, 3.0]]])
    assert clustering_score(tables).device == tables.device
    assert clustering_score(tables).item() == pytest.approx(
        _sklearn("nmi", "arithmetic", tables[0].numpy()), abs=1e-12
    )


@pytest.mark.parametrize(
    ("tables", "kwargs", "message"),
    [
        (torch.ones(2, 2), {}, "tables"),
        (torch.tensor([[[1.5, 1.0]]]), {}, "integer"),
        (torch.tensor([[[-1, 2]]]), {}, "non-negative"),
        (torch.ones(1, 2, 2), {"kind": "f1"}, "kind"),
        (torch.ones(1, 2, 2), {"average": "median"}, "average"),
    ],
)
def test_bad_input_raises(tables, kwargs, message):
    with pytest.raises(ValueError, match=message):
        clustering_score(tables, **kwargs)
