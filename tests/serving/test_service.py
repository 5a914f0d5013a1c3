"""The service without HTTP: an exported ONNX model serves the checkpoint's index with the
same answers, and a rewritten index folder is served once it is reloaded (or refused)."""

import shutil

import numpy as np
import pytest
from PIL import Image

from cdml.export import export_model
from cdml.retrieval import GalleryIndex
from cdml.serving import Limits, RequestError, SearchService
from cdml.serving.embedders import CheckpointEmbedder, OnnxEmbedder


def embed_files(embedder, paths):
    images = [embedder.preprocess(Image.open(path).convert("RGB")) for path in paths]
    return embedder.embed(images)


def test_the_exported_onnx_model_serves_the_checkpoints_index(
    tiny_checkpoint, digit_index, digit_images, tmp_path
):
    pytest.importorskip("onnxruntime")
    export_model(tiny_checkpoint, tmp_path / "model.onnx")
    files = sorted(digit_images.iterdir())[:8]
    onnx, torch_model = OnnxEmbedder(tmp_path / "model.onnx"), CheckpointEmbedder(tiny_checkpoint)
    np.testing.assert_allclose(
        embed_files(onnx, files), embed_files(torch_model, files), atol=1e-4, rtol=1e-4
    )
    service = SearchService(onnx, digit_index)  # the same checkpoint's sha256: accepted
    first = service.search(embed_files(onnx, files[:1]), k=3)[0][0]
    assert first["path"].endswith(files[0].name) and first["score"] < 1e-3


def test_a_rewritten_index_is_served_after_reload_and_a_foreign_one_refused(
    tiny_checkpoint, digit_index, tmp_path
):
    folder = tmp_path / "index"
    shutil.copytree(digit_index, folder)
    service = SearchService(CheckpointEmbedder(tiny_checkpoint), folder)
    assert not service.reload_if_changed()
    grown = GalleryIndex.load(folder)
    grown.add(np.zeros((5, 64), np.float32), [f"new{i}" for i in range(5)],
              checkpoint_sha256=grown.meta["checkpoint_sha256"])  # fmt: skip
    grown.save(folder)
    assert service.reload_if_changed() and len(service.gallery) == 65
    foreign = GalleryIndex.create(64)
    foreign.add(np.zeros((3, 64), np.float32), ["a", "b", "c"], checkpoint_sha256="0" * 64)
    foreign.save(folder)
    with pytest.raises(ValueError, match="another checkpoint"):
        service.reload_if_changed()
    assert len(service.gallery) == 65  # the previous index is still served


def test_limits_are_checked_and_k_is_bounded(tiny_checkpoint, digit_index):
    with pytest.raises(ValueError, match="--max-k must be positive"):
        Limits(max_k=0)
    service = SearchService(CheckpointEmbedder(tiny_checkpoint), digit_index, Limits(max_k=5))
    with pytest.raises(RequestError, match="between 1 and 5"):
        service.check_k(6)
    assert len(service.search(np.zeros((1, 64), np.float32), 5)[0]) == 5


def test_a_re_ranked_service_answers_with_its_scores(tiny_checkpoint, digit_index, digit_images):
    embedder = CheckpointEmbedder(tiny_checkpoint)
    files = sorted(digit_images.iterdir())[:3]
    for spec, score in (("aqe:k=2", "distance"), ("kreciprocal:k1=5,k2=2", "distance")):
        service = SearchService(embedder, digit_index, rerank=spec)
        assert service.facts()["rerank"] == spec and service.facts()["score"] == score
        results = service.search(embed_files(embedder, files), 5)
        for path, found in zip(files, results, strict=True):
            assert found[0]["path"].endswith(path.name) and len(found) == 5
    with pytest.raises(ValueError, match="unknown parameter 'q'"):
        SearchService(embedder, digit_index, rerank="aqe:q=1")
