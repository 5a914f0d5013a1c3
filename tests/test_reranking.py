import json

import numpy as np
import pytest
import torch

from cdml.cli import main
from cdml.metrics import evaluate
from cdml.reranking import RERANKERS, AlphaQueryExpansion, KReciprocal, create_reranker
from cdml.retrieval import GalleryIndex

CPU = torch.device("cpu")


def clustered(n, dim=8, classes=6, spread=0.9, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, dim))
    points = centres[labels] + spread * rng.normal(size=(n, dim))
    return points.astype(np.float32), labels


def gallery_index(points, kind="flat", metric="l2", **options):
    gallery = GalleryIndex.create(points.shape[1], kind=kind, metric=metric, **options)
    gallery.add(points, [f"g{i}" for i in range(len(points))])
    return gallery


# --- the original k-reciprocal re-ranking, dense (Zhong et al.'s released code) ----------


def original_re_ranking(dist, query_num, k1, k2, lambda_value, outside=False):
    """Final distances ``(query_num, N)`` of the first ``query_num`` items to all ``N``,
    from ``dist`` ``(N, N)`` squared distances: the released code's steps, one by one.

    ``outside``: one query (item 0) outside a gallery (items 1..N-1), re-ranked as cdml
    does: the gallery items' lists, sets and row maxima are those of the gallery alone
    (the query is never among them), the query's own set checks whether it would be among
    its neighbours' ``k1 + 1`` nearest.
    """
    n = len(dist)
    original_dist = np.transpose(dist / np.max(dist, axis=0))
    initial_rank = np.argsort(original_dist).astype(np.int32)
    own_rank = cand_rank = initial_rank
    if outside:
        gallery = dist[1:, 1:]
        original_dist[1:, 1:] = np.transpose(gallery / np.max(gallery, axis=0))
        frozen = np.argsort(original_dist[1:, 1:]).astype(np.int32) + 1
        cand_rank = np.vstack([initial_rank[:1], np.hstack([frozen, np.zeros((n - 1, 1), int)])])
    V = np.zeros_like(original_dist)
    half = int(np.around(k1 / 2.0))
    for i in range(n):
        backward_rank = own_rank if i == 0 else cand_rank
        forward_k_neigh_index = cand_rank[i, : k1 + 1]
        backward_k_neigh_index = backward_rank[forward_k_neigh_index, : k1 + 1]
        fi = np.where(backward_k_neigh_index == i)[0]
        k_reciprocal_index = forward_k_neigh_index[fi]
        k_reciprocal_expansion_index = k_reciprocal_index
        for candidate in k_reciprocal_index:
            candidate_forward = cand_rank[candidate, : half + 1]
            candidate_backward = cand_rank[candidate_forward, : half + 1]
            fi_candidate = np.where(candidate_backward == candidate)[0]
            candidate_k_reciprocal_index = candidate_forward[fi_candidate]
            if len(
                np.intersect1d(candidate_k_reciprocal_index, k_reciprocal_index)
            ) > 2.0 / 3 * len(candidate_k_reciprocal_index):
                k_reciprocal_expansion_index = np.append(
                    k_reciprocal_expansion_index, candidate_k_reciprocal_index
                )
        k_reciprocal_expansion_index = np.unique(k_reciprocal_expansion_index)
        weight = np.exp(-original_dist[i, k_reciprocal_expansion_index])
        V[i, k_reciprocal_expansion_index] = weight / np.sum(weight)
    original_dist = original_dist[:query_num]
    if k2 != 1:
        V_qe = np.zeros_like(V)
        for i in range(n):
            V_qe[i, :] = np.mean(V[cand_rank[i, :k2], :], axis=0)
        V = V_qe
    invIndex = [np.where(V[:, i] != 0)[0] for i in range(n)]
    jaccard_dist = np.zeros_like(original_dist)
    for i in range(query_num):
        temp_min = np.zeros(n)
        indNonZero = np.where(V[i, :] != 0)[0]
        for j in indNonZero:
            temp_min[invIndex[j]] += np.minimum(V[i, j], V[invIndex[j], j])
        jaccard_dist[i] = 1 - temp_min / (2.0 - temp_min)
    return jaccard_dist * (1 - lambda_value) + original_dist * lambda_value


def squared_distances(points):
    points = points.astype(np.float64)
    return ((points[:, None] - points[None]) ** 2).sum(axis=2)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize(("k1", "k2", "lam"), [(6, 3, 0.3), (9, 1, 0.6), (4, 4, 0.1)])
def test_kreciprocal_equals_the_original_every_item_querying_the_others(metric, k1, k2, lam):
    points, _ = clustered(70)
    compared = (
        points / np.linalg.norm(points, axis=1, keepdims=True) if metric == "cosine" else points
    )
    expected = original_re_ranking(squared_distances(compared), len(points), k1, k2, lam)
    reranker = KReciprocal(k1=k1, k2=k2, lambda_=lam, shortlist=1000)
    own = np.arange(len(points))
    depth = len(points) - 1
    ((_, found),) = reranker.neighbour_chunks(points, points, depth, own, metric, CPU)
    np.fill_diagonal(expected, np.inf)
    order = np.argsort(expected, axis=1, kind="stable")[:, :depth]
    # Ranks agree wherever the reference's distances are not (nearly) tied.
    gaps = np.diff(np.take_along_axis(expected, order, axis=1), axis=1)
    clear = np.hstack([np.ones((len(points), 1), bool), gaps > 1e-6])
    clear &= np.hstack([gaps > 1e-6, np.ones((len(points), 1), bool)])
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(found[clear], order[clear])
    scores, _ = reranker._rank(compared, depth, own)
    np.testing.assert_allclose(scores, np.take_along_axis(expected, found, 1), atol=1e-5)


def test_kreciprocal_of_queries_outside_the_gallery_equals_the_original_so_adapted():
    gallery, _ = clustered(60, seed=1)
    queries, _ = clustered(6, seed=2)
    reranker = create_reranker("kreciprocal:k1=7,k2=3,lambda=0.3,shortlist=500")
    scores, indices = reranker.fit(gallery_index(gallery)).search(queries, 59)
    for query, row_scores, row_indices in zip(queries, scores, indices, strict=True):
        items = np.vstack([query[None], gallery])
        expected = original_re_ranking(squared_distances(items), 1, 7, 3, 0.3, outside=True)[0, 1:]
        np.testing.assert_allclose(row_scores, expected[row_indices], atol=1e-5)
        assert np.all(np.diff(row_scores) >= 0)
        assert set(row_indices) == set(np.argsort(expected)[:59])


def test_kreciprocal_beyond_the_shortlist_keeps_the_original_order():
    gallery, _ = clustered(200, seed=3)
    queries, _ = clustered(10, seed=4)
    index = gallery_index(gallery)
    _, plain = index.search(queries, 50)
    scores, reranked = (
        create_reranker("kreciprocal:k1=8,shortlist=20").fit(index).search(queries, 50)
    )
    np.testing.assert_array_equal(reranked[:, 20:], plain[:, 20:])
    assert (np.sort(reranked[:, :20], axis=1) == np.sort(plain[:, :20], axis=1)).all()
    assert (reranked[:, :20] != plain[:, :20]).any()
    assert np.all(np.diff(scores, axis=1) >= 0)


def expanded(points, vectors, neighbours, alpha):
    rows = vectors[neighbours]
    cosine = np.einsum("bd,bkd->bk", points, rows) / (
        np.linalg.norm(points, axis=1)[:, None] * np.linalg.norm(rows, axis=2)
    )
    total = points + np.einsum("bk,bkd->bd", np.maximum(cosine, 0) ** alpha, rows)
    return total * (np.linalg.norm(points, axis=1) / np.linalg.norm(total, axis=1))[:, None]


def test_alpha_query_expansion_and_database_augmentation_equal_direct_computation():
    gallery, _ = clustered(300, seed=5)
    queries, _ = clustered(20, seed=6)
    distance = np.linalg.norm(queries[:, None] - gallery[None], axis=2)
    first = np.argsort(distance, axis=1)[:, :3]
    query = expanded(queries, gallery, first, 2.0)
    expected = np.argsort(np.linalg.norm(query[:, None] - gallery[None], axis=2), axis=1)[:, :10]
    index = gallery_index(gallery)
    _, found = create_reranker("aqe:k=3,alpha=2").fit(index).search(queries, 10)
    np.testing.assert_array_equal(found, expected)

    within = np.linalg.norm(gallery[:, None] - gallery[None], axis=2)
    np.fill_diagonal(within, np.inf)
    augmented = expanded(gallery, gallery, np.argsort(within, axis=1)[:, :4], 1.0)
    distance = np.linalg.norm(queries[:, None] - augmented[None], axis=2)
    expected = np.argsort(distance, axis=1)[:, :10]
    scores, found = create_reranker("dba:k=4,alpha=1").fit(index).search(queries, 10)
    np.testing.assert_array_equal(found, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(distance, expected, 1), rtol=1e-4)
    assert not np.array_equal(found, index.search(queries, 10)[1])


@pytest.mark.parametrize("spec", ["aqe", "dba", "kreciprocal:k1=8,k2=3"])
@pytest.mark.parametrize(
    ("kind", "options"), [("ivf", {"nlist": 8, "nprobe": 8}), ("hnsw", {"ef_search": 400})]
)
def test_approximate_indexes_rerank_as_the_flat_one_when_searched_exhaustively(spec, kind, options):
    gallery, _ = clustered(400, seed=7)
    queries, _ = clustered(15, seed=8)
    flat = create_reranker(spec).fit(gallery_index(gallery)).search(queries, 12)
    approximate = create_reranker(spec).fit(gallery_index(gallery, kind, **options))
    scores, indices = approximate.search(queries, 12)
    assert scores.dtype == np.float32 and indices.dtype == np.int64 and indices.shape == (15, 12)
    np.testing.assert_array_equal(indices, flat[1])
    np.testing.assert_allclose(scores, flat[0], atol=1e-5)


@pytest.mark.parametrize("metric", ["cosine", "ip"])
@pytest.mark.parametrize("spec", ["aqe:k=3", "dba:k=3", "kreciprocal:k1=8"])
def test_similarity_metrics(metric, spec):
    gallery, _ = clustered(200, seed=9)
    queries, _ = clustered(5, seed=10)
    reranker = create_reranker(spec)
    index = gallery_index(gallery, metric=metric)
    if metric == "ip" and spec.startswith("kreciprocal"):
        with pytest.raises(ValueError, match="kreciprocal needs a distance"):
            reranker.fit(index)
        return
    scores, indices = reranker.fit(index).search(queries, 8)
    assert (indices >= 0).all() and np.isfinite(scores).all()
    ascending = np.diff(scores, axis=1) >= -1e-6
    assert ascending.all() if reranker.score_name(metric) == "distance" else (~ascending).any()


def test_a_small_gallery_pads_with_minus_one():
    gallery, _ = clustered(5, seed=11)
    for spec in ("aqe:k=10", "dba:k=10", "kreciprocal"):
        scores, indices = create_reranker(spec).fit(gallery_index(gallery)).search(gallery[:2], 8)
        assert (indices[:, 5:] == -1).all() and (indices[:, :5] >= 0).all()
        assert np.isinf(scores[:, 5:]).all()


@pytest.mark.parametrize("spec", ["aqe:k=2,alpha=3", "dba:k=3,alpha=1", "kreciprocal:k1=8,k2=3"])
def test_evaluate_protocols_agree(spec):
    points, labels = clustered(120, seed=12)
    is_query = np.arange(120) < 40
    plain = evaluate(points, labels, nmi=False)
    assert evaluate(points, labels, nmi=False, rerank=None) == plain
    assert evaluate(points, labels, nmi=False, rerank=create_reranker("none")) == plain
    with pytest.raises(ValueError, match="create_reranker"):
        evaluate(points, labels, rerank=spec)
    every = evaluate(points, labels, nmi=False, rerank=create_reranker(spec))
    assert every != plain
    marked_all = evaluate(points, labels, nmi=False, rerank=create_reranker(spec),
                          is_query=np.ones(120, bool),
                          is_gallery=np.ones(120, bool))  # fmt: skip
    assert marked_all == every
    separate = evaluate(points[:40], labels[:40], nmi=False, rerank=create_reranker(spec),
                        gallery=points[40:], gallery_labels=labels[40:])  # fmt: skip
    marked = evaluate(points, labels, nmi=False, rerank=create_reranker(spec), is_query=is_query,
                      is_gallery=~is_query)  # fmt: skip
    assert separate == marked
    # A separate gallery is the index's search.
    found = create_reranker(spec).fit(gallery_index(points[40:])).search(points[:40], 1)[1]
    recall = np.mean(labels[40:][found[:, 0]] == labels[:40])
    assert separate["recall@1"] == pytest.approx(recall)


def test_evaluate_never_retrieves_the_query_itself():
    points, labels = clustered(60, seed=13)
    own = np.arange(60)
    for name in RERANKERS:
        chunks = create_reranker(name).neighbour_chunks(points, points, 59, own, "l2", CPU)
        ((_, found),) = chunks
        assert not (found == own[:, None]).any() and (found >= 0).all()
        assert (np.sort(found, axis=1) == np.delete(np.tile(own, (60, 1)),
                np.arange(60) * 61, axis=None).reshape(60, 59)).all()  # fmt: skip


def test_alpha_query_expansion_leave_one_out_equals_direct_computation():
    points, labels = clustered(100, seed=14)
    distance = np.linalg.norm(points[:, None] - points[None], axis=2)
    np.fill_diagonal(distance, np.inf)
    query = expanded(points, points, np.argsort(distance, axis=1)[:, :2], 3.0)
    second = np.linalg.norm(query[:, None] - points[None], axis=2)
    np.fill_diagonal(second, np.inf)
    recall = np.mean(labels[np.argmin(second, axis=1)] == labels)
    metrics = evaluate(
        points, labels, ks=(1,), nmi=False, map_at_r=False, rerank=create_reranker("aqe")
    )
    assert metrics["recall@1"] == pytest.approx(recall)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("qe", "unknown re-ranker 'qe'; known: aqe, dba, kreciprocal"),
        ("aqe:q=2", "unknown parameter 'q' of aqe; accepted: k, alpha"),
        ("aqe:k=x", "k must be an integer, got 'x'"),
        ("aqe:k=2.5", "k must be an integer, got '2.5'"),
        ("aqe:alpha=nan", "alpha must be a finite number"),
        ("aqe:k=0", "k must be an integer of at least 1, got 0"),
        ("aqe:k", "expected aqe:name=value"),
        ("aqe:k=1,k=2", "expected aqe:name=value"),
        ("kreciprocal:lambda=2", "lambda must be a number between 0.0 and 1.0, got 2.0"),
        ("kreciprocal:lambda_=0.5", "unknown parameter 'lambda_'"),
        ("none:k=2", "unknown re-ranker 'none'"),
        ("aqe:k=__import__('os')", "k must be an integer"),
    ],
)
def test_bad_specs_are_refused_naming_spec_and_parameter(spec, message):
    with pytest.raises(ValueError, match="rerank") as error:
        create_reranker(spec)
    assert spec in str(error.value) and message in str(error.value)


def test_specs_set_the_parameters():
    assert create_reranker(None) is None and create_reranker("none") is None
    reranker = create_reranker(" kreciprocal : k1=10, k2=3, lambda=0.6 ")
    assert (reranker.k1, reranker.k2, reranker.lambda_, reranker.shortlist) == (10, 3, 0.6, 100)
    assert repr(create_reranker("aqe:alpha=0")) == "aqe(k=2, alpha=0.0)"
    given = AlphaQueryExpansion(k=1)
    assert create_reranker(given) is given
    with pytest.raises(ValueError, match="call fit"):
        AlphaQueryExpansion().search(np.zeros((1, 4), np.float32), 3)


@pytest.fixture
def embeddings_file(tmp_path):
    points, labels = clustered(60, seed=15)
    path = tmp_path / "emb.npz"
    np.savez(path, embeddings=points, labels=labels)
    return path


def test_cli_evaluate_reranks_and_refuses_a_bad_spec(embeddings_file, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert main(["evaluate", str(embeddings_file), "--rerank", "aqe", "--json", str(out)]) == 0
    reranked = out.read_text()
    assert main(["evaluate", str(embeddings_file), "--json", str(out)]) == 0
    assert out.read_text() != reranked
    capsys.readouterr()
    assert main(["evaluate", str(embeddings_file), "--rerank", "aqe:k=x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rerank 'aqe:k=x': k must be an integer" in err


def test_search_reranks_from_python_and_the_command_line(tiny_checkpoint, tmp_path, capsys):
    from PIL import Image

    from cdml.retrieval import index_images, search_images

    rng = np.random.default_rng(16)
    (tmp_path / "gallery").mkdir()
    for i in range(12):
        pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "gallery" / f"{i}.png")
    queries = [tmp_path / "gallery" / "3.png"]
    for metric in ("l2", "cosine"):
        index = tmp_path / metric
        index_images(tiny_checkpoint, index, images=tmp_path / "gallery", metric=metric,
                     progress=False)  # fmt: skip
        plain = search_images(index, tiny_checkpoint, queries, k=5)
        for spec, score in (("aqe", "similarity"), ("kreciprocal:k1=4,k2=2", "distance")):
            (result,) = search_images(index, tiny_checkpoint, queries, k=5, rerank=spec)
            neighbours = result["neighbours"]
            assert len({n["path"] for n in neighbours}) == 5
            key = score if metric == "cosine" else "distance"
            values = [n[key] for n in neighbours]
            assert values == sorted(values, reverse=key == "similarity")
        assert plain[0]["neighbours"][0]["path"] == str(queries[0])
    argv = ["search", "--index", str(tmp_path / "l2"), "--checkpoint", str(tiny_checkpoint),
            str(queries[0]), "-k", "3", "--json"]  # fmt: skip
    capsys.readouterr()
    assert main([*argv, "--rerank", "dba:k=3"]) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["neighbours"]) == 3
    assert main([*argv, "--rerank", "dba:k=0"]) == 2
    assert "rerank 'dba:k=0': k must be an integer of at least 1" in capsys.readouterr().err
