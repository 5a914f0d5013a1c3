import numpy as np
import pytest
import torch
from sklearn.metrics import normalized_mutual_info_score

import cdml.metrics.neighbours as neighbours_module
from cdml.metrics import evaluate, kmeans_scores, nearest_neighbours, partition_scores


def brute_force(queries, query_labels, gallery, gallery_labels, ks, exclude_self):
    """Literal Recall@K and MAP@R: full float64 distance matrix, ties by lower index.

    ``exclude_self``: True (query i is gallery item i), False, or each query's own gallery
    index (-1: none), left out of its ranking."""
    own = np.arange(len(queries)) if exclude_self is True else exclude_self
    queries = np.asarray(queries, dtype=np.float64)
    gallery = np.asarray(gallery, dtype=np.float64)
    recall = {k: 0.0 for k in ks}
    average_precisions = []
    for i, (query, label) in enumerate(zip(queries, query_labels, strict=True)):
        distances = ((gallery - query) ** 2).sum(axis=1)
        order = np.lexsort((np.arange(len(gallery)), distances))
        if own is not False:
            order = order[order != own[i]]
        relevant = gallery_labels[order] == label
        for k in ks:
            recall[k] += float(relevant[:k].any())
        r = int(relevant.sum())
        precision_sum = sum(relevant[: j + 1].sum() / (j + 1) for j in range(r) if relevant[j])
        average_precisions.append(precision_sum / r)
    result = {f"recall@{k}": recall[k] / len(queries) for k in ks}
    result["map@r"] = float(np.mean(average_precisions))
    return result


def assert_matches(result, expected):
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-6), key


def clustered(rng, num_classes, per_class, dim, spread):
    centres = rng.normal(size=(num_classes, dim))
    labels = np.repeat(np.arange(num_classes), per_class)
    embeddings = centres[labels] + spread * rng.normal(size=(len(labels), dim))
    return embeddings.astype(np.float32), labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_embeddings_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(300, 16)).astype(np.float32)
    labels = rng.integers(0, 12, size=300)
    ks = (1, 2, 4, 8, 16)
    result = evaluate(embeddings, labels, ks=ks, nmi=False)
    assert_matches(result, brute_force(embeddings, labels, embeddings, labels, ks, True))


@pytest.mark.parametrize("spread", [0.3, 1.0])
def test_clustered_embeddings_match_brute_force(spread):
    rng = np.random.default_rng(7)
    embeddings, labels = clustered(rng, num_classes=20, per_class=15, dim=8, spread=spread)
    ks = (1, 2, 4, 8)
    result = evaluate(embeddings, labels, ks=ks, nmi=False)
    assert_matches(result, brute_force(embeddings, labels, embeddings, labels, ks, True))


def test_ties_are_broken_by_lower_index(monkeypatch):
    # Integer points on a small grid: many exactly equal distances and exact duplicates.
    rng = np.random.default_rng(3)
    embeddings = rng.integers(0, 3, size=(250, 2)).astype(np.float32)
    labels = rng.integers(0, 6, size=250)
    ks = (1, 2, 4, 8)
    expected = brute_force(embeddings, labels, embeddings, labels, ks, True)
    assert_matches(evaluate(embeddings, labels, ks=ks, nmi=False), expected)
    # Small chunks: many chunks, each mixing tied and untied rows.
    monkeypatch.setattr(neighbours_module, "_CHUNK_ELEMENTS", 500)
    assert_matches(evaluate(embeddings, labels, ks=ks, nmi=False), expected)


@pytest.mark.parametrize("grid", [3, 1000])
def test_thousands_of_neighbours_rank_as_faiss_ranks_a_few(grid, monkeypatch):
    # MAP@R's depth beyond faiss's range is ranked by torch: the same order, ties included.
    rng = np.random.default_rng(4)
    embeddings = rng.integers(0, grid, size=(250, 3)).astype(np.float32)
    labels = rng.integers(0, 2, size=250)
    ks = (1, 2, 4, 8)
    expected = brute_force(embeddings, labels, embeddings, labels, ks, True)
    faiss_ranked = nearest_neighbours(embeddings, embeddings, k=120, exclude_self=True)
    monkeypatch.setattr(neighbours_module, "_FAISS_MAX_K", 4)
    monkeypatch.setattr(neighbours_module, "_CHUNK_ELEMENTS", 5000)  # several chunks
    assert_matches(evaluate(embeddings, labels, ks=ks, nmi=False), expected)
    torch_ranked = nearest_neighbours(embeddings, embeddings, k=120, exclude_self=True)
    np.testing.assert_array_equal(torch_ranked, faiss_ranked)


def test_collapsed_embeddings_rank_by_index():
    embeddings = np.zeros((40, 4), dtype=np.float32)
    neighbours = nearest_neighbours(embeddings, embeddings, k=3, exclude_self=True)
    assert neighbours[0].tolist() == [1, 2, 3]
    assert neighbours[2].tolist() == [0, 1, 3]
    assert neighbours[39].tolist() == [0, 1, 2]


def test_query_gallery_form_matches_brute_force():
    rng = np.random.default_rng(5)
    gallery, gallery_labels = clustered(rng, num_classes=10, per_class=12, dim=6, spread=1.0)
    queries = gallery[::3] + 0.5 * rng.normal(size=gallery[::3].shape).astype(np.float32)
    query_labels = gallery_labels[::3]
    ks = (1, 2, 4, 8)
    result = evaluate(
        queries, query_labels, ks=ks, gallery=gallery, gallery_labels=gallery_labels, nmi=False
    )
    expected = brute_force(queries, query_labels, gallery, gallery_labels, ks, False)
    assert_matches(result, expected)


def test_query_identical_to_gallery_item_is_not_excluded():
    gallery = np.array([[0.0], [1.0], [5.0], [6.0]], dtype=np.float32)
    gallery_labels = np.array([0, 1, 1, 0])
    result = evaluate(
        gallery[:1],
        np.array([0]),
        ks=(1,),
        gallery=gallery,
        gallery_labels=gallery_labels,
        nmi=False,
    )
    assert result["recall@1"] == 1.0  # itself, at distance 0
    assert result["map@r"] == pytest.approx(0.5)  # R=2: hit at rank 1, next hit at rank 4


def query_gallery_split(rng, n):
    """Random OML-style roles: items that query, that are searched, that are both, neither."""
    role = rng.integers(0, 4, size=n)  # 0 query, 1 gallery, 2 both, 3 neither
    return np.isin(role, (0, 2)), np.isin(role, (1, 2))


def test_query_and_gallery_marks_match_brute_force():
    rng = np.random.default_rng(8)
    embeddings, labels = clustered(rng, num_classes=10, per_class=30, dim=6, spread=1.0)
    is_query, is_gallery = query_gallery_split(rng, len(labels))
    ks = (1, 2, 4, 8)
    result = evaluate(
        embeddings, labels, ks=ks, is_query=is_query, is_gallery=is_gallery, nmi=False
    )
    position = np.cumsum(is_gallery) - 1
    own = np.where(is_gallery, position, -1)[is_query]
    expected = brute_force(
        embeddings[is_query], labels[is_query], embeddings[is_gallery], labels[is_gallery],
        ks, own,
    )  # fmt: skip
    assert_matches(result, expected)


def test_every_item_both_query_and_gallery_is_the_papers_protocol():
    rng = np.random.default_rng(9)
    embeddings, labels = clustered(rng, num_classes=8, per_class=10, dim=5, spread=1.0)
    everyone = np.ones(len(labels), bool)
    marked = evaluate(embeddings, labels, is_query=everyone, is_gallery=everyone)
    assert marked == evaluate(embeddings, labels)


def test_query_whose_only_positive_is_itself_raises():
    embeddings = np.arange(8, dtype=np.float32)[:, None]
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    is_gallery = np.array([1, 1, 1, 1, 1, 0, 1, 1], bool)
    with pytest.raises(ValueError, match="1 of 8 queries .* labels \\[2\\]"):
        evaluate(embeddings, labels, is_query=np.ones(8, bool), is_gallery=is_gallery)


@pytest.mark.parametrize("marked", [False, True])
def test_per_category_metrics_are_those_of_the_category_queries(marked):
    rng = np.random.default_rng(10)
    embeddings, labels = clustered(rng, num_classes=12, per_class=20, dim=6, spread=1.2)
    categories = np.where(labels < 5, "shoes", "bags")  # a category holds whole classes
    is_query, is_gallery = query_gallery_split(rng, len(labels))
    if not marked:
        is_query = is_gallery = np.ones(len(labels), bool)
    ks = (1, 4)
    roles = {"is_query": is_query, "is_gallery": is_gallery} if marked else {}
    result = evaluate(embeddings, labels, ks=ks, categories=categories, **roles)
    position = np.cumsum(is_gallery) - 1
    own = np.where(is_gallery, position, -1)
    for category in ("bags", "shoes"):
        chosen = is_query & (categories == category)
        expected = brute_force(
            embeddings[chosen], labels[chosen], embeddings[is_gallery], labels[is_gallery],
            ks, own[chosen],
        )  # fmt: skip
        assert_matches({k.split("/")[0]: v for k, v in result.items() if category in k}, expected)
    assert list(result)[:7] == ["recall@1", "recall@4", "nmi", "ami", "ari", "purity", "map@r"]
    assert "nmi/shoes" not in result


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (a GPU search test)")
@pytest.mark.parametrize("grid", [3, 1000])
def test_search_on_cuda_equals_search_on_cpu(grid):
    # Integer points: distances exact in float32 on both devices, ties included (grid 3).
    rng = np.random.default_rng(12)
    embeddings = rng.integers(0, grid, size=(3000, 4)).astype(np.float32)
    labels = rng.integers(0, 20, size=3000)
    cpu = nearest_neighbours(embeddings, embeddings, k=50, exclude_self=True)
    cuda = nearest_neighbours(embeddings, embeddings, k=50, exclude_self=True, device="cuda")
    np.testing.assert_array_equal(cuda, cpu)
    on_gpu = torch.from_numpy(embeddings).cuda()
    assert evaluate(on_gpu, labels, nmi=False) == evaluate(embeddings, labels, nmi=False)


def test_torch_and_numpy_inputs_agree():
    rng = np.random.default_rng(0)
    embeddings, labels = clustered(rng, num_classes=8, per_class=10, dim=5, spread=1.0)
    from_numpy = evaluate(embeddings, labels)
    from_torch = evaluate(torch.from_numpy(embeddings).double(), torch.from_numpy(labels))
    assert from_numpy == from_torch


def test_result_keys_and_range():
    rng = np.random.default_rng(0)
    embeddings, labels = clustered(rng, num_classes=8, per_class=10, dim=5, spread=1.0)
    result = evaluate(embeddings, labels, ks=(1, 10))
    assert list(result) == ["recall@1", "recall@10", "nmi", "ami", "ari", "purity", "map@r"]
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in result.values())
    assert list(evaluate(embeddings, labels, nmi=False, map_at_r=False)) == [
        "recall@1",
        "recall@2",
        "recall@4",
        "recall@8",
    ]


def test_nmi_is_high_for_separated_clusters_and_low_for_random_labels():
    rng = np.random.default_rng(0)
    embeddings, labels = clustered(rng, num_classes=10, per_class=30, dim=16, spread=0.01)
    # One random start may merge two clusters (NMI 0.81 here), never mix all of them.
    assert evaluate(embeddings, labels, map_at_r=False)["nmi"] > 0.75
    two = labels < 2
    assert evaluate(embeddings[two], labels[two], map_at_r=False)["nmi"] == pytest.approx(1.0)
    shuffled = rng.permutation(labels)
    assert evaluate(embeddings, shuffled, map_at_r=False)["nmi"] < 0.1


def test_nmi_uses_every_point_and_is_deterministic():
    # 4 clusters x 2,000 points: faiss's default would subsample to 256 per centroid.
    rng = np.random.default_rng(1)
    embeddings, labels = clustered(rng, num_classes=4, per_class=2000, dim=4, spread=1.5)
    first = kmeans_scores(embeddings, labels, seed=0)["nmi"]
    assert first == kmeans_scores(embeddings, labels, seed=0)["nmi"]
    assert 0.0 < first < 1.0
    # Lloyd's algorithm from scikit-learn reaches the same partition quality.
    from sklearn.cluster import KMeans

    reference = KMeans(4, n_init=5, random_state=0).fit_predict(embeddings)
    assert first == pytest.approx(normalized_mutual_info_score(labels, reference), abs=0.02)


def test_partition_scores_are_scikit_learns_and_purity_counts_majorities():
    from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    clusters = np.array([5, 5, 7, 7, 7, 9, 9, 5])  # majorities 0 (2 of 3), 1 (2 of 3), 2 (2)
    scores = partition_scores(labels, clusters)
    assert list(scores) == ["nmi", "ami", "ari", "purity"]
    assert scores["purity"] == pytest.approx(6 / 8)
    assert scores["nmi"] == pytest.approx(normalized_mutual_info_score(labels, clusters))
    assert scores["ami"] == pytest.approx(adjusted_mutual_info_score(labels, clusters))
    assert scores["ari"] == pytest.approx(adjusted_rand_score(labels, clusters))
    assert partition_scores(labels, labels + 3) == {"nmi": 1, "ami": 1, "ari": 1, "purity": 1}


def test_clustering_scores_over_several_runs_are_the_mean_of_each_seed():
    rng = np.random.default_rng(13)
    embeddings, labels = clustered(rng, num_classes=12, per_class=15, dim=4, spread=2.0)
    runs = [kmeans_scores(embeddings, labels, seed=seed) for seed in (3, 4, 5)]
    result = evaluate(embeddings, labels, nmi_runs=3, seed=3, map_at_r=False)
    for name in ("nmi", "ami", "ari", "purity"):
        assert result[name] == pytest.approx(np.mean([r[name] for r in runs]))
    assert result["nmi_std"] == pytest.approx(np.std([r["nmi"] for r in runs]))
    assert result["nmi_std"] > 0  # the seeds do split these overlapping classes differently
    assert "nmi_std" not in evaluate(embeddings, labels, seed=3)


@pytest.mark.parametrize(
    ("embeddings", "labels", "kwargs", "message"),
    [
        (np.zeros(10), np.zeros(10, int), {}, "2-D"),
        (np.zeros((1, 3)), np.zeros(1, int), {}, "at least 2"),
        (np.zeros((4, 2)), np.array([0, 0, 1, 1.0]), {}, "integers"),
        (np.zeros((4, 2)), np.array([[0, 0, 1, 1]]), {}, "1-D"),
        (np.zeros((4, 2)), np.array([0, 0, 1]), {}, "3 entries"),
        (np.array([[0, 0], [1, np.nan], [2, 2], [3, 3]]), np.array([0, 0, 1, 1]), {}, "NaN"),
        (np.array([[0, 0], [1, np.inf], [2, 2], [3, 3]]), np.array([0, 0, 1, 1]), {}, "inf"),
        (np.array([["a", "b"], ["c", "d"]]), np.array([0, 0]), {}, "real numbers"),
        (np.zeros((4, 2)), np.array([0, 0, 1, 2]), {}, "fewer than two"),
        (np.zeros((4, 2)), np.array([0, 0, 1, 1]), {"ks": (1, 4)}, "K=4 exceeds"),
        (np.zeros((4, 2)), np.array([0, 0, 1, 1]), {"ks": (0,)}, "positive"),
        (np.zeros((4, 2)), np.array([0, 0, 1, 1]), {"gallery": np.zeros((4, 2))}, "together"),
        (np.zeros((4, 2)), np.array([0, 0, 1, 1]), {"kmeans_iters": 5}, "at least 20"),
        (np.zeros((4, 2)), np.array([0, 0, 1, 1]), {"nmi_runs": 0}, "nmi_runs must be"),
        (
            np.zeros((2, 2)),
            np.array([0, 9]),
            {"gallery": np.zeros((3, 2)), "gallery_labels": np.array([0, 0, 1])},
            "no other gallery item of their label",
        ),
        (
            np.zeros((2, 2)),
            np.array([0, 1]),
            {"gallery": np.zeros((3, 5)), "gallery_labels": np.array([0, 0, 1])},
            "dimension",
        ),
        (np.zeros((4, 2)), np.array([0, 0, 1, 1]), {"is_query": np.ones(4, bool)}, "together"),
        (
            np.zeros((4, 2)),
            np.array([0, 0, 1, 1]),
            {"is_query": np.ones(4), "is_gallery": np.ones(4, bool)},
            "is_query must be 4 booleans",
        ),
        (
            np.zeros((4, 2)),
            np.array([0, 0, 1, 1]),
            {"is_query": np.zeros(4, bool), "is_gallery": np.ones(4, bool)},
            "is_query: no item",
        ),
        (
            np.zeros((4, 2)),
            np.array([0, 0, 1, 1]),
            {
                "gallery": np.zeros((4, 2)),
                "gallery_labels": np.array([0, 0, 1, 1]),
                "is_query": np.ones(4, bool),
                "is_gallery": np.ones(4, bool),
            },
            "not both",
        ),
        (np.zeros((4, 2)), np.array([0, 0, 1, 1]), {"categories": ["a"] * 3}, "categories"),
    ],
)
def test_bad_input_raises_value_error(embeddings, labels, kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate(embeddings, labels, **kwargs)


@pytest.mark.parametrize("metric", ["cosine", "ip"])
def test_similarity_metrics_match_brute_force(metric):
    rng = np.random.default_rng(11)
    embeddings = rng.normal(size=(300, 8)).astype(np.float32) * rng.uniform(0.2, 3, (300, 1))
    labels = rng.integers(0, 12, size=300)
    ks = (1, 2, 4, 8)
    points = embeddings.astype(np.float64)
    if metric == "cosine":
        points /= np.linalg.norm(points, axis=1, keepdims=True)
    similarity = points @ points.T
    recall, precisions = {k: 0.0 for k in ks}, []
    for i in range(300):
        order = np.lexsort((np.arange(300), -similarity[i]))
        relevant = labels[order[order != i]] == labels[i]
        for k in ks:
            recall[k] += float(relevant[:k].any())
        r = int(relevant.sum())
        precisions.append(
            sum(relevant[: j + 1].sum() / (j + 1) for j in range(r) if relevant[j]) / r
        )
    expected = {f"recall@{k}": recall[k] / 300 for k in ks} | {"map@r": np.mean(precisions)}
    result = evaluate(embeddings, labels, ks=ks, nmi=False, metric=metric)
    assert_matches(result, expected)
    if metric == "ip":  # inner product differs from Euclidean order on rows of unequal norm
        assert evaluate(embeddings, labels, ks=ks, nmi=False)["map@r"] != result["map@r"]
