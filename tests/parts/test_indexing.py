"""``cdml index --from-parts``: trained on a sample, parts added one at a time, in shards
searched together, recall against exact search stored; search and serve take the result."""

import json

import numpy as np
import pytest

from cdml.cli import main
from cdml.parts import PartsFolder, index_parts
from cdml.retrieval import GalleryIndex

from .conftest import synthetic_parts


def test_a_flat_index_from_parts_equals_one_built_at_once(tmp_path):
    vectors = synthetic_parts(tmp_path / "parts", 12_000, part_size=5000)
    whole = GalleryIndex.create(32)
    whole.add(vectors, [f"img/{i}.jpg" for i in range(len(vectors))])
    built = index_parts(tmp_path / "parts", tmp_path / "index", progress=False)
    queries = vectors[::97]
    np.testing.assert_array_equal(built.search(queries, 10)[1], whole.search(queries, 10)[1])
    assert built.meta["recall@10"] == 1.0 and built.meta["recall_queries"] == 1000
    assert built.paths[5001] == "img/5001.jpg" and len(built) == 12_000


def test_ivfpq_in_shards_is_searched_together_with_its_recall_stored(tmp_path, capsys):
    synthetic_parts(tmp_path / "parts", 12_000, dim=16, part_size=4000)
    argv = ["index", "--from-parts", str(tmp_path / "parts"), "--kind", "ivfpq"]
    assert main([*argv, "--out", str(tmp_path / "one"), "--sample", "8000"]) == 0
    assert main([*argv, "--out", str(tmp_path / "three"), "--shards", "3"]) == 0
    assert "12000 items added, 12000 in the ivfpq index" in " ".join(
        capsys.readouterr().out.split()
    )
    one, three = GalleryIndex.load(tmp_path / "one"), GalleryIndex.load(tmp_path / "three")
    listing = json.loads((tmp_path / "three" / "shards.json").read_text())
    assert listing["shards"] == ["shard-000", "shard-001", "shard-002"]
    assert 0.5 < listing["meta"]["recall@10"] <= 1 and 0.5 < one.meta["recall@10"] <= 1
    assert three.meta["shards"] == 3 and len(three) == 12_000
    queries = np.stack([three.vector(i) for i in (0, 5_678, 11_999)])
    assert three.search(queries, 1)[1][:, 0].tolist() == [0, 5_678, 11_999]
    three.search_width = 64  # every shard's nprobe
    assert all(ivf.nprobe == 64 for ivf in three._ivfs()) and len(three._ivfs()) == 3
    with pytest.raises(ValueError, match="sharded index"):
        three.add(queries, ["x", "y", "z"])


def test_bad_requests_of_index_from_parts(tmp_path, capsys):
    synthetic_parts(tmp_path / "parts", 3000, part_size=1000)
    parts = str(tmp_path / "parts")
    (tmp_path / "parts" / "part-00002.json").unlink()  # as if killed while writing it
    cases = {
        "1 of 3 parts are unfinished": ["--from-parts", parts],
        "--shards must be between 1 and the 3 parts": ["--from-parts", parts, "--shards", "4"],
        "no --checkpoint": ["--from-parts", parts, "--checkpoint", "x.ckpt"],
        "--shards: only with --from-parts": ["--checkpoint", "x.ckpt", "--shards", "2"],
        "kind must be one of": ["--from-parts", parts, "--kind", "NotAFactory"],
        "--sample must be at least 1, got 0": ["--from-parts", parts, "--sample", "0"],
    }
    for message, argv in cases.items():
        assert main(["index", *argv, "--out", str(tmp_path / "index")]) == 2, message
        assert message in capsys.readouterr().err
    assert PartsFolder(parts).todo() == [2]


def test_search_and_serve_take_an_index_built_from_parts_in_shards(
    tiny_checkpoint, tmp_path, capsys
):
    from cdml.serving import SearchService
    from cdml.serving.embedders import CheckpointEmbedder

    from .test_embedding import embed_argv, write_images

    images = write_images(tmp_path / "images", 120)
    assert main(embed_argv(tiny_checkpoint, images, tmp_path / "parts", "--part-size", 40)) == 0
    argv = ["index", "--from-parts", str(tmp_path / "parts"), "--shards", "3"]
    assert main([*argv, "--out", str(tmp_path / "index")]) == 0
    query = sorted(images.rglob("*.png"))[77]
    search = ["search", str(query), "--index", str(tmp_path / "index"), "--json"]
    capsys.readouterr()
    assert main([*search, "--checkpoint", str(tiny_checkpoint)]) == 0
    (found,) = json.loads(capsys.readouterr().out)
    assert found["neighbours"][0]["path"] == str(query)
    service = SearchService(CheckpointEmbedder(tiny_checkpoint), tmp_path / "index")
    item = found["neighbours"][0]
    first = service.search(service.item_vector(service.item(0)["id"]), 1)[0][0]
    assert first["id"] == 0 and service.facts()["index_size"] == 121 and item["distance"] < 1e-4
