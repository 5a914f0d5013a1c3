"""What the HTTP service does, without HTTP: decode uploads safely, embed them in batches,
search the index, read an indexed item's thumbnail."""

from __future__ import annotations

import asyncio
import io
import os
import threading
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from cdml.data.image_dataset import TooManyPixels, decode_rgb
from cdml.metrics.neighbours import score_name
from cdml.reranking import create_reranker
from cdml.retrieval import GalleryIndex
from cdml.serving.batching import MicroBatcher
from cdml.serving.embedders import Embedder


class RequestError(Exception):
    """A request the service refuses: ``status`` (4xx) and a message naming the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the service.

    Args:
        max_upload_mb: the largest request body, in MB (10^6 bytes).
        max_pixels: the most pixels of an uploaded image, refused before it is decoded
            (decompression bombs).
        max_k: the most neighbours one search returns.
        max_images: the most images one request uploads.
        timeout: seconds a request may take, its upload included.
    """

    max_upload_mb: float = 20.0
    max_pixels: int = 40_000_000
    max_k: int = 1000
    max_images: int = 32
    timeout: float = 30.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not value > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1e6)


class SearchService:
    """A loaded model and index answering searches.

    Args:
        embedder: the model (:func:`cdml.serving.embedders.open_embedder`).
        index: the index folder (written by ``cdml index`` with the same model) or the index.
        limits: what one request may ask.
        rerank: a re-ranking of the results (:func:`cdml.reranking.create_reranker`'s spec;
            None: the index's own ranking).
        max_batch: the most images embedded in one forward pass.
        max_wait: seconds a request waits for others to share its forward pass.
    """

    def __init__(
        self,
        embedder: Embedder,
        index: str | Path | GalleryIndex,
        limits: Limits | None = None,
        rerank: str | None = None,
        max_batch: int = 32,
        max_wait: float = 0.005,
    ) -> None:
        create_reranker(rerank)  # a bad spec is refused before the index is read
        self.embedder, self.limits, self.rerank = embedder, limits or Limits(), rerank
        self.folder = None if isinstance(index, GalleryIndex) else Path(index)
        self._lock = threading.Lock()
        self._use(index if isinstance(index, GalleryIndex) else GalleryIndex.load(index))
        self.batcher = MicroBatcher(embedder.embed, max_batch=max_batch, max_wait=max_wait)

    def _use(self, gallery: GalleryIndex) -> None:
        """Check ``gallery`` against the model and serve it from now on."""
        gallery.check_checkpoint(self.embedder.checkpoint_sha256, self.embedder.source)
        gallery.check_preprocessing(self.embedder.image_size)
        searcher: Any = gallery
        if self.rerank is not None:
            searcher = create_reranker(self.rerank).fit(gallery)
        gallery.enable_vectors()  # search by item id reads them back
        with self._lock:
            self.gallery, self._searcher = gallery, searcher
            self._stamp = self._index_stamp()
        self._thumbnail.cache_clear()

    def _index_stamp(self) -> float | None:
        meta = None if self.folder is None else self.folder / "meta.json"
        return meta.stat().st_mtime if meta is not None and meta.is_file() else None

    def reload_if_changed(self) -> bool:
        """Load the index folder again if it was rewritten since it was loaded (an index
        that no longer fits the model is refused and the old one kept: ``ValueError``)."""
        stamp = self._index_stamp()
        if stamp is None or stamp == self._stamp:
            return False
        try:
            self._use(GalleryIndex.load(self.folder))
        finally:
            self._stamp = stamp  # a bad index is reported once, not on every poll
        return True

    def facts(self) -> dict[str, Any]:
        """What the service serves: model, index and limits."""
        gallery = self.gallery
        return {
            "model": self.embedder.source,
            "checkpoint_sha256": self.embedder.checkpoint_sha256,
            "image_size": self.embedder.image_size,
            "embedding_size": gallery.dim,
            "metric": gallery.metric,
            "score": self._score_name(gallery),
            "index_kind": gallery.kind,
            "index_size": len(gallery),
            "rerank": self.rerank,
            "limits": asdict(self.limits),
        }

    def _score_name(self, gallery: GalleryIndex) -> str:
        if self.rerank is not None:
            return self._searcher.score_name(gallery.metric)
        return score_name(gallery.metric)

    # ---- images -------------------------------------------------------------------------
    def decode(self, data: bytes, name: str) -> Image.Image:
        """The RGB image of an upload; 4xx :class:`RequestError` naming ``name`` otherwise."""
        if not data:
            raise RequestError(400, f"{name}: empty upload")
        try:
            return decode_rgb(io.BytesIO(data), self.limits.max_pixels)
        except (TooManyPixels, Image.DecompressionBombError) as error:
            raise RequestError(413, f"{name}: {error}") from None
        except UnidentifiedImageError:
            raise RequestError(400, f"{name}: not an image (of any format PIL reads)") from None
        except Exception as error:  # an untrusted file can break a decoder in many ways
            raise RequestError(400, f"{name}: not a readable image ({error})") from None

    async def embed_uploads(self, uploads: list[tuple[str, bytes]]) -> np.ndarray:
        """Embeddings ``(n, d)`` of ``(name, bytes)`` uploads, batched with other requests'."""
        if not uploads:
            raise RequestError(400, "no image uploaded (send one as the form field 'file')")
        if len(uploads) > self.limits.max_images:
            raise RequestError(
                413, f"{len(uploads)} images; at most {self.limits.max_images} per request"
            )

        def prepare() -> list[Any]:
            return [self.embedder.preprocess(self.decode(data, name)) for name, data in uploads]

        rows = await self.batcher.submit(await asyncio.to_thread(prepare))
        return np.stack(rows).astype(np.float32, copy=False)

    # ---- search -------------------------------------------------------------------------
    def check_k(self, k: int) -> int:
        if not 1 <= k <= self.limits.max_k:
            raise RequestError(422, f"k must be between 1 and {self.limits.max_k}, got {k}")
        return k

    def search(self, vectors: np.ndarray, k: int) -> list[list[dict[str, Any]]]:
        """Each vector's ``k`` nearest indexed items, nearest first: ``{"rank", "id",
        "path", "label", "score"}`` (a distance for l2, a similarity otherwise)."""
        self.check_k(k)
        gallery, searcher = self.gallery, self._searcher
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != gallery.dim:
            size = vectors.shape[-1] if vectors.ndim else 0
            raise RequestError(
                422, f"vector has {size} values; the index holds {gallery.dim}-d embeddings"
            )
        if not np.isfinite(vectors).all():
            raise RequestError(422, "vector holds NaN or infinity")
        scores, indices = searcher.search(vectors, k)
        return [
            [
                {
                    "rank": rank + 1,
                    "id": int(i),
                    "path": gallery.paths[i],
                    "label": int(gallery.labels[i]),
                    "score": float(score),
                }
                for rank, (i, score) in enumerate(zip(row, row_scores, strict=True))
                if i >= 0
            ]
            for row, row_scores in zip(indices, scores, strict=True)
        ]

    def item(self, item_id: int) -> dict[str, Any]:
        gallery = self._gallery_with(item_id)
        return {"id": item_id, "path": gallery.paths[item_id],
                "label": int(gallery.labels[item_id])}  # fmt: skip

    def item_vector(self, item_id: int) -> np.ndarray:
        """The indexed vector ``(1, d)`` of item ``item_id`` (unit length for cosine)."""
        return self._gallery_with(item_id).vector(item_id)[None]

    def thumbnail(self, item_id: int, size: int) -> bytes:
        """A PNG of the indexed item ``item_id``, fitted in ``size`` x ``size`` pixels. Only
        the index's own items are read, from the paths it recorded."""
        if not 16 <= size <= 512:
            raise RequestError(422, f"size must be between 16 and 512, got {size}")
        self._gallery_with(item_id)
        return self._thumbnail(item_id, size)

    @lru_cache(maxsize=2048)  # noqa: B019 (one service per process; cleared on reload)
    def _thumbnail(self, item_id: int, size: int) -> bytes:
        path = self.gallery.paths[item_id]
        if not os.path.isfile(path):
            raise RequestError(404, f"item {item_id} has no image file to show ({path})")
        try:
            with open(path, "rb") as file:
                image = decode_rgb(file, self.limits.max_pixels)
        except (OSError, SyntaxError, ValueError) as error:
            raise RequestError(404, f"item {item_id}: its image is unreadable ({error})") from None
        image.thumbnail((size, size))
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()

    def _gallery_with(self, item_id: int) -> GalleryIndex:
        gallery = self.gallery
        if not 0 <= item_id < len(gallery):
            raise RequestError(404, f"no item {item_id}: the index holds ids 0-{len(gallery) - 1}")
        return gallery
