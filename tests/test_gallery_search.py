import json

import faiss
import numpy as np
import pytest
from PIL import Image

from cdml.cli import main
from cdml.retrieval import GalleryIndex, approximate_recall


def clustered(n, dim=16, centres=40, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(centres, dim))
    return (means[rng.integers(0, centres, n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)


def brute_force(gallery, queries, k):
    distances = np.linalg.norm(queries[:, None, :] - gallery[None, :, :], axis=2)
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distances, order, 1), order


def test_flat_index_equals_brute_force_and_builds_in_parts():
    gallery, queries = clustered(500), clustered(20, seed=1)
    whole = GalleryIndex.create(16)
    whole.add(gallery, [f"g{i}" for i in range(500)], labels=np.arange(500) % 7)
    parts = GalleryIndex.create(16)
    parts.add(gallery[:200], [f"g{i}" for i in range(200)])
    parts.add(gallery[200:], [f"g{i}" for i in range(200, 500)])
    distances, indices = whole.search(queries, 5)
    expected_distances, expected_indices = brute_force(gallery, queries, 5)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(parts.search(queries, 5)[1], indices)
    assert len(parts) == 500 and parts.labels[:3].tolist() == [-1, -1, -1]


def test_save_and_load_round_trip(tmp_path):
    gallery = GalleryIndex.create(16, kind="ivf", nprobe=4)
    gallery.add(clustered(800), [f"img/{i}.png" for i in range(800)], np.arange(800) % 5)
    gallery.save(tmp_path / "index")
    loaded = GalleryIndex.load(tmp_path / "index")
    queries = clustered(10, seed=2)
    assert loaded.paths == gallery.paths and loaded.kind == "ivf"
    np.testing.assert_array_equal(loaded.labels, gallery.labels)
    np.testing.assert_array_equal(loaded.search(queries, 3)[1], gallery.search(queries, 3)[1])


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_recall_exact_neighbours(kind):
    gallery, queries = clustered(4000, dim=32), clustered(200, dim=32, seed=3)
    exact, approximate = GalleryIndex.create(32), GalleryIndex.create(32, kind=kind)
    for index in (exact, approximate):
        index.add(gallery, [str(i) for i in range(4000)])
    assert approximate_recall(approximate, exact, queries, k=10) > 0.9
    assert approximate_recall(exact, exact, queries, k=10) == 1.0


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_a_wider_search_recalls_more_and_is_saved(kind, tmp_path):
    gallery, queries = clustered(4000, dim=32, centres=4), clustered(100, dim=32, seed=4)
    exact, approximate = GalleryIndex.create(32), GalleryIndex.create(32, kind=kind)
    for index in (exact, approximate):
        index.add(gallery, [str(i) for i in range(4000)])
    approximate.search_width = 1
    narrow = approximate_recall(approximate, exact, queries, k=10)
    approximate.search_width = 64
    assert approximate_recall(approximate, exact, queries, k=10) > narrow
    approximate.save(tmp_path / "index")
    assert GalleryIndex.load(tmp_path / "index").search_width == 64
    assert exact.search_width is None
    with pytest.raises(ValueError, match="no search width"):
        exact.search_width = 4
    with pytest.raises(ValueError, match="positive integer"):
        approximate.search_width = 0


def test_bad_input_is_named(tmp_path):
    gallery = GalleryIndex.create(16)
    with pytest.raises(ValueError, match="the index is empty"):
        gallery.search(clustered(2), 3)
    gallery.add(clustered(50), [str(i) for i in range(50)])
    with pytest.raises(ValueError, match=r"queries must have shape \(n, 16\)"):
        gallery.search(np.zeros((2, 8)), 3)
    with pytest.raises(ValueError, match="50 embeddings but 3 paths"):
        gallery.add(clustered(50), ["a", "b", "c"])
    with pytest.raises(ValueError, match="kind must be one of"):
        GalleryIndex.create(16, kind="lsh")
    with pytest.raises(ValueError, match="index.faiss: missing"):
        GalleryIndex.load(tmp_path)
    gallery.save(tmp_path / "index")
    (tmp_path / "index" / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="index.faiss: not a faiss index"):
        GalleryIndex.load(tmp_path / "index")


def test_a_failed_save_keeps_the_previous_index(tmp_path, monkeypatch):
    gallery = GalleryIndex.create(16)
    gallery.add(clustered(30), [str(i) for i in range(30)])
    gallery.save(tmp_path / "index")
    gallery.add(clustered(5, seed=4), ["x"] * 5)

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", fail)
    with pytest.raises(OSError, match="disk full"):
        gallery.save(tmp_path / "index")
    assert len(GalleryIndex.load(tmp_path / "index")) == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]


@pytest.fixture
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint


def write_images(folder, values):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(values[0])
    for value in values:
        pixels = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{value}.png")


def test_index_extend_and_search_from_the_command_line(checkpoint, tmp_path, capsys):
    write_images(tmp_path / "gallery", [0, 1, 2])
    index = tmp_path / "index"
    base = ["index", "--checkpoint", str(checkpoint), "--out", str(index)]
    assert main([*base, "--images", str(tmp_path / "gallery")]) == 0
    write_images(tmp_path / "gallery", [3, 4])
    assert main([*base, "--images", str(tmp_path / "gallery"), "--extend"]) == 0
    assert "2 items added, 5 in the flat index" in capsys.readouterr().out
    assert main([*base, "--images", str(tmp_path / "gallery"), "--extend"]) == 0
    assert "0 items added, 5 in the flat index" in capsys.readouterr().out
    query = tmp_path / "gallery" / "3.png"
    argv = ["search", str(query), "--index", str(index), "--checkpoint", str(checkpoint)]
    assert main([*argv, "-k", "2", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    nearest = result["neighbours"][0]
    assert nearest["path"] == str(query) and nearest["distance"] < 1e-3
    assert [n["rank"] for n in result["neighbours"]] == [1, 2]


def test_a_dataset_gallery_keeps_its_labels(checkpoint, tmp_path):
    index = tmp_path / "index"
    argv = ["index", "--checkpoint", str(checkpoint), "--dataset", "digits", "--out", str(index)]
    assert main(argv) == 0
    gallery = GalleryIndex.load(index)
    assert sorted(set(gallery.labels.tolist())) == [0, 1, 2, 3, 4]
    assert gallery.paths[0] == "digits/test/0"


def test_index_and_search_errors(checkpoint, tmp_path, capsys):
    write_images(tmp_path / "gallery", [0, 1])
    index = tmp_path / "index"
    base = ["index", "--checkpoint", str(checkpoint), "--images", str(tmp_path / "gallery")]
    assert main([*base, "--out", str(index)]) == 0
    assert main([*base, "--out", str(index)]) == 2
    assert "pass --extend" in capsys.readouterr().err
    other = tmp_path / "other.ckpt"
    other.write_bytes(checkpoint.read_bytes() + b"\0")
    argv = ["search", str(tmp_path / "gallery" / "0.png"), "--index", str(index)]
    assert main([*argv, "--checkpoint", str(other)]) == 2
    assert "built with another checkpoint" in capsys.readouterr().err
    assert (
        main(["search", "absent.png", "--index", str(index), "--checkpoint", str(checkpoint)]) == 2
    )
    assert "no such query image" in capsys.readouterr().err
    assert main(["search", "q.png", "--index", str(tmp_path), "--checkpoint", str(checkpoint)]) == 2
    assert "index.faiss: missing" in capsys.readouterr().err
    query = str(tmp_path / "gallery" / "0.png")
    argv = ["search", query, "--index", str(index), "--checkpoint", str(checkpoint)]
    assert main([*argv, "--width", "8"]) == 2
    assert "--width: a flat index searches exhaustively" in capsys.readouterr().err


def test_an_index_refuses_embeddings_of_another_checkpoint_from_python():
    gallery = GalleryIndex.create(16)
    gallery.add(clustered(10), [f"a{i}" for i in range(10)], checkpoint_sha256="aaa")
    assert gallery.meta["checkpoint_sha256"] == "aaa"
    gallery.add(clustered(5, seed=2), [f"b{i}" for i in range(5)], checkpoint_sha256="aaa")
    for other in ("bbb", None):
        with pytest.raises(ValueError, match="another checkpoint"):
            gallery.add(clustered(5, seed=3), ["c"] * 5, checkpoint_sha256=other)
    assert len(gallery) == 15
    unknown = GalleryIndex.create(16)
    unknown.add(clustered(4), list("abcd"))
    with pytest.raises(ValueError, match="no recorded checkpoint"):
        unknown.add(clustered(4), list("efgh"), checkpoint_sha256="aaa")


def test_the_library_indexes_and_searches_what_the_cli_does(checkpoint, tmp_path):
    from cdml.inference import checkpoint_digest, embed_with_checkpoint, load_embeddings
    from cdml.retrieval import index_images, search_images

    write_images(tmp_path / "gallery", [0, 1, 2])
    gallery, added = index_images(checkpoint, tmp_path / "index", images=tmp_path / "gallery")
    assert added == 3 and gallery.meta["checkpoint_sha256"] == checkpoint_digest(checkpoint)
    _, again = index_images(checkpoint, tmp_path / "index", images=tmp_path / "gallery",
                            extend=True)  # fmt: skip
    assert again == 0
    query = sorted((tmp_path / "gallery").iterdir())[1]
    (result,) = search_images(tmp_path / "index", checkpoint, [query], k=1)
    assert result["neighbours"][0]["path"] == str(query)
    assert result["neighbours"][0]["distance"] == pytest.approx(0, abs=1e-5)
    arrays = embed_with_checkpoint(checkpoint, dataset="digits", split="test")
    np.savez(tmp_path / "e.npz", **arrays)
    assert load_embeddings(tmp_path / "e.npz")["labels"].tolist() == arrays["labels"].tolist()
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ValueError, match="bad.npz: not a"):
        load_embeddings(tmp_path / "bad.npz")


@pytest.mark.parametrize("metric", ["cosine", "ip"])
def test_similarity_indexes_equal_brute_force(metric, tmp_path):
    gallery = clustered(600) * np.random.default_rng(6).uniform(0.2, 3, (600, 1)).astype(np.float32)
    queries = clustered(20, seed=7)
    g, q = gallery.astype(np.float64), queries.astype(np.float64)
    if metric == "cosine":
        g, q = (a / np.linalg.norm(a, axis=1, keepdims=True) for a in (g, q))
    similarity = q @ g.T
    expected = np.argsort(-similarity, axis=1, kind="stable")[:, :5]
    flat = GalleryIndex.create(16, metric=metric)
    flat.add(gallery, [str(i) for i in range(600)])
    scores, indices = flat.search(queries, 5)
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(similarity, expected, 1), atol=1e-4)
    flat.save(tmp_path / "index")
    assert GalleryIndex.load(tmp_path / "index").metric == metric
    for kind in ("ivf", "hnsw"):
        approximate = GalleryIndex.create(16, kind=kind, metric=metric)
        approximate.add(gallery, [str(i) for i in range(600)])
        assert approximate_recall(approximate, flat, queries, k=5) > 0.9


def test_a_cosine_index_from_the_command_line(checkpoint, tmp_path, capsys):
    write_images(tmp_path / "gallery", [0, 1, 2])
    index = tmp_path / "index"
    base = ["index", "--checkpoint", str(checkpoint), "--out", str(index)]
    assert main([*base, "--images", str(tmp_path / "gallery"), "--metric", "cosine"]) == 0
    assert GalleryIndex.load(index).metric == "cosine"
    more = [*base, "--images", str(tmp_path / "gallery"), "--extend"]
    assert main([*more, "--metric", "l2"]) == 2
    assert "compares by cosine, not l2" in capsys.readouterr().err
    query = tmp_path / "gallery" / "1.png"
    argv = ["search", str(query), "--index", str(index), "--checkpoint", str(checkpoint)]
    assert main([*argv, "-k", "1", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    (nearest,) = result["neighbours"]
    assert nearest["path"] == str(query) and nearest["similarity"] == pytest.approx(1, abs=1e-4)
