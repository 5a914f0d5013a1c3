"""Retrieval over large galleries: a faiss index of embeddings with their paths and labels."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from cdml.io import check_not_inside, write_json
from cdml.metrics import check_metric
from cdml.metrics.neighbours import score_name
from cdml.progress import Progress
from cdml.reranking import create_reranker

# Names of common indexes; a kind may also be any faiss factory string ("IVF4096,PQ32").
KINDS = ("flat", "ivf", "hnsw", "ivfpq")
FAISS_TYPES = {"flat": faiss.IndexFlat, "ivf": faiss.IndexIVF, "hnsw": faiss.IndexHNSW,
               "ivfpq": faiss.IndexIVFPQ}  # fmt: skip
# METRICS: l2 ranks by Euclidean distance, nearest first; cosine by cosine similarity
# (embeddings L2-normalised on the way in); ip by inner product, the most similar first.
FORMAT_VERSION = 1
INDEX_FILE, ITEMS_FILE, META_FILE = "index.faiss", "items.npz", "meta.json"
INDEX_FILES = (INDEX_FILE, ITEMS_FILE, META_FILE)
SHARDS_FILE = "shards.json"  # a sharded index: its shard folders, searched together
ADD_CHUNK = 1 << 16  # embeddings added to faiss at a time (for the progress of large galleries)


class GalleryIndex:
    """Euclidean nearest-neighbour search over gallery embeddings, with each item's path and
    label (``-1`` when unknown) kept beside the faiss index.

    Kinds: ``"flat"`` (exact, the default), ``"ivf"`` (inverted lists over ``nlist`` k-means
    cells, ``nprobe`` of them searched), ``"hnsw"`` (graph of ``hnsw_m`` links,
    ``ef_search`` candidates), ``"ivfpq"`` (IVF with vectors compressed to ``dim / 4``
    bytes by product quantisation) or any faiss factory string (``"IVF4096,PQ32"``,
    ``"OPQ16,IVF1024,PQ16"``). Kinds that need training are trained on the first embeddings
    added, or on a sample by :meth:`train`. The approximate kinds trade recall for speed
    and memory on millions of items; :func:`approximate_recall` measures it.

    Use :meth:`create`, then :meth:`add` (any number of times: an index built in parts equals
    one built at once), :meth:`search`, :meth:`save` / :meth:`load`. Embeddings of different
    checkpoints are not comparable: an index records the sha256 of the checkpoint of its
    first embeddings (``meta["checkpoint_sha256"]``) and refuses others.
    :func:`index_images` and :func:`search_images` embed images with a checkpoint and do both.
    """

    def __init__(self, index: faiss.Index, kind: str, meta: dict[str, Any] | None = None):
        self.index = index
        self.kind = kind
        self.paths: list[str] = []
        self.labels = np.empty(0, dtype=np.int64)
        self.meta: dict[str, Any] = dict(meta or {})

    @classmethod
    def create(
        cls,
        dim: int,
        kind: str = "flat",
        nlist: int | None = None,
        nprobe: int = 16,
        hnsw_m: int = 32,
        ef_search: int = 128,
        metric: str = "l2",
    ) -> GalleryIndex:
        """An empty index for ``dim``-dimensional embeddings compared by ``metric`` (one of
        :data:`cdml.metrics.METRICS`). ``nlist`` (IVF) defaults to ``4 sqrt(n)`` of the first batch
        added."""
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        check_metric(metric)
        if _faiss_type(kind, dim) is type(None):
            raise ValueError(
                f"kind must be one of {', '.join(KINDS)} or a faiss factory string "
                f"(e.g. IVF4096,PQ32), got {kind!r}"
            )
        gallery = cls(None, kind, {"nlist": nlist, "nprobe": nprobe, "metric": metric})
        if kind == "flat":
            gallery.index = faiss.IndexFlat(dim, gallery._faiss_metric)
        elif kind == "hnsw":
            gallery.index = faiss.IndexHNSWFlat(dim, hnsw_m, gallery._faiss_metric)
            gallery.index.hnsw.efSearch = ef_search
        # The others are built when trained (sized by the first embeddings' count).
        gallery.meta["dim"] = dim
        return gallery

    @property
    def metric(self) -> str:
        return str(self.meta.get("metric", "l2"))  # indexes saved before metrics: l2

    @property
    def _faiss_metric(self) -> int:
        return faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def search_width(self) -> int | None:
        """How much an approximate search looks at: IVF's ``nprobe`` cells, HNSW's
        ``efSearch`` candidates (wider recalls more, slower); ``None`` for a flat index."""
        if self.kind == "hnsw":
            return int(self._subindexes()[0].hnsw.efSearch)
        if self.kind == "flat" or (self.index is not None and not self._ivfs()):
            return None
        return int(self.meta.get("nprobe") or 16)

    @search_width.setter
    def search_width(self, width: int) -> None:
        if self.search_width is None:
            raise ValueError(f"a {self.kind} index searches exhaustively: it has no search width")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"search width must be a positive integer, got {width!r}")
        if self.kind == "hnsw":
            for index in self._subindexes():
                index.hnsw.efSearch = width
            return
        self.meta["nprobe"] = width
        for ivf in self._ivfs():
            ivf.nprobe = width

    def enable_vectors(self) -> None:
        """Let :meth:`vector` read items back (IVF lists get a map from ids to entries; a
        service does it once before it answers concurrent requests)."""
        for ivf in self._ivfs():
            if ivf.direct_map.no():
                ivf.make_direct_map()

    def vector(self, item: int) -> np.ndarray:
        """The indexed vector ``(dim,)`` of ``item`` (unit length for cosine; decoded, so
        approximate, for compressed kinds such as PQ)."""
        if not 0 <= item < len(self):
            raise IndexError(f"no item {item}: the index holds {len(self)}")
        self.enable_vectors()
        for index in self._subindexes():
            if item < index.ntotal:
                return index.reconstruct(item)
            item -= index.ntotal
        raise AssertionError("the shards hold fewer items than the paths")

    def _subindexes(self) -> list[faiss.Index]:
        """The shards' indexes of a sharded index, else the index."""
        if isinstance(self.index, faiss.IndexShards):
            return [faiss.downcast_index(self.index.at(i)) for i in range(self.index.count())]
        return [] if self.index is None else [self.index]

    def _ivfs(self) -> list[Any]:
        """The inverted-file indexes inside the index (one a shard; none for other kinds)."""
        found = (faiss.try_extract_index_ivf(index) for index in self._subindexes())
        return [ivf for ivf in found if ivf is not None]

    def add(
        self,
        embeddings: np.ndarray,
        paths: Sequence[str],
        labels: Sequence[int] | None = None,
        checkpoint_sha256: str | None = None,
        progress: bool = False,
    ) -> None:
        """Append ``(n, dim)`` embeddings with their ``n`` paths (and labels), computed by the
        checkpoint of sha256 ``checkpoint_sha256`` (see :meth:`check_checkpoint`); with
        ``progress``, the IVF training and the adding show their progress (an HNSW graph of
        a million items takes minutes)."""
        if self.meta.get("shards"):
            raise ValueError("a sharded index is built whole by cdml index --from-parts")
        if len(self) == 0 and "checkpoint_sha256" not in self.meta and checkpoint_sha256:
            self.meta["checkpoint_sha256"] = checkpoint_sha256
        self.check_checkpoint(checkpoint_sha256)
        embeddings = self._check(embeddings, "embeddings")
        if len(paths) != len(embeddings):
            raise ValueError(f"got {len(embeddings)} embeddings but {len(paths)} paths")
        labels = np.full(len(paths), -1) if labels is None else np.asarray(labels)
        if labels.shape != (len(paths),):
            raise ValueError(f"labels must have shape ({len(paths)},), got {labels.shape}")
        embeddings = self._prepared(embeddings)
        if self.index is None:
            self.train(embeddings, progress=progress, prepared=True)
        with Progress("indexing", total=len(embeddings), enabled=progress) as bar:
            for start in range(0, len(embeddings), ADD_CHUNK):
                chunk = embeddings[start : start + ADD_CHUNK]
                self.index.add(chunk)
                bar.advance(len(chunk))
        self.paths += [str(p) for p in paths]
        self.labels = np.concatenate([self.labels, labels.astype(np.int64)])

    def check_checkpoint(self, checkpoint_sha256: str | None, name: str | None = None) -> None:
        """``ValueError`` unless embeddings of the checkpoint of sha256 ``checkpoint_sha256``
        (``None``: of unknown origin; ``name``: its file, for the message) are comparable
        with the index's."""
        recorded = self.meta.get("checkpoint_sha256")
        if recorded != checkpoint_sha256:
            origin = (
                f"another checkpoint ({self.meta.get('checkpoint', recorded)})"
                if recorded
                else "embeddings of no recorded checkpoint"
            )
            given = f" than {name}" if name else ""
            raise ValueError(
                f"the index was built with {origin}{given}; embeddings of other checkpoints "
                "are not comparable"
            )

    def check_preprocessing(self, image_size: int | None) -> int | None:
        """The image size that embeddings for this index must be computed at: the one its
        items were embedded at (``meta["image_size"]``; None for an index of a cdml that
        did not record it), ``ValueError`` if ``image_size`` (None: any) is another."""
        recorded = self.meta.get("image_size")
        if image_size is not None and recorded is not None and image_size != recorded:
            raise ValueError(
                f"the index's items were embedded at image size {recorded}, not {image_size}; "
                "embeddings of other sizes are not comparable (leave the size out to use "
                "the index's)"
            )
        return recorded if image_size is None else image_size

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Scores ``(q, k)`` float32 and gallery indices ``(q, k)`` int64 of each query's
        ``k`` nearest items, nearest first (``-1`` padding when the gallery holds fewer than
        ``k``). Scores are Euclidean distances (not squared) for ``l2``, similarities for
        ``cosine`` and ``ip``."""
        queries = self._check(queries, "queries")
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        if self.index is None or len(self) == 0:
            raise ValueError("the index is empty: add embeddings first")
        scores, indices = self.index.search(self._prepared(queries), k)
        if self.metric == "l2":
            scores = np.sqrt(np.maximum(scores, 0))
        return scores, indices

    def _prepared(self, embeddings: np.ndarray) -> np.ndarray:
        """``embeddings`` as the faiss index takes them: unit rows for ``cosine``."""
        if self.metric != "cosine":
            return embeddings
        embeddings = embeddings.copy()
        faiss.normalize_L2(embeddings)
        return embeddings

    def save(self, folder: str | Path) -> None:
        """Write ``folder`` (``index.faiss``, ``items.npz``, ``meta.json``) atomically: the
        files are written to a temporary folder beside it, which then replaces it."""
        folder = Path(folder)
        if self.index is None:
            raise ValueError("the index is empty: add embeddings first")
        if folder.is_dir():  # replaced whole: it may hold nothing but an index's own files
            others = sorted(p.name for p in folder.iterdir() if p.name not in INDEX_FILES)
            if others:
                raise ValueError(
                    f"{folder} holds files that are not an index's ({', '.join(others[:3])}); "
                    "nothing was changed (move them away or choose another folder)"
                )
        elif folder.exists():
            raise ValueError(f"{folder} is a file; give a folder")
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            faiss.write_index(self.index, str(staging / INDEX_FILE))
            np.savez(
                staging / ITEMS_FILE,
                paths=np.asarray(self.paths, dtype=np.str_),
                labels=self.labels,
            )
            meta = {**self.meta, "kind": self.kind, "count": len(self), "format": FORMAT_VERSION}
            write_json(staging / META_FILE, meta)
            if folder.exists():
                backup = folder.with_name(f".{folder.name}.old")
                shutil.rmtree(backup, ignore_errors=True)
                os.replace(folder, backup)
                os.replace(staging, folder)
                shutil.rmtree(backup)
            else:
                os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @classmethod
    def load(cls, folder: str | Path, mmap: bool = False) -> GalleryIndex:
        """Read an index written by :meth:`save` (``mmap``: memory-mapped, read-only), or the
        shards of one built in parts (searched together), checking that its files agree."""
        folder = Path(folder)
        if (folder / SHARDS_FILE).is_file():
            return cls._load_shards(folder)
        backup = folder.with_name(f".{folder.name}.old")
        if not folder.exists() and backup.is_dir():
            raise ValueError(
                f"{folder}: missing; a save interrupted while replacing it left the previous "
                f"index in {backup} (rename it back to use it)"
            )
        for name in (INDEX_FILE, ITEMS_FILE, META_FILE):
            if not (folder / name).is_file():
                raise ValueError(f"{folder / name}: missing (not a cdml index folder?)")
        try:
            meta = json.loads((folder / META_FILE).read_text())
            kind, dim, count = meta["kind"], int(meta["dim"]), int(meta["count"])
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{folder / META_FILE}: unreadable ({error})") from None
        try:
            flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
            index = faiss.read_index(str(folder / INDEX_FILE), flags)
        except RuntimeError as error:
            raise ValueError(f"{folder / INDEX_FILE}: not a faiss index ({error})") from None
        try:
            with np.load(folder / ITEMS_FILE, allow_pickle=False) as items:
                paths, labels = items["paths"].tolist(), items["labels"].astype(np.int64)
        except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as error:
            raise ValueError(f"{folder / ITEMS_FILE}: unreadable ({error})") from None
        if not isinstance(index, _faiss_type(kind, dim)):
            raise ValueError(
                f"{folder / META_FILE}: kind {kind!r} does not describe the index in "
                f"{INDEX_FILE} ({type(index).__name__}; kinds: {', '.join(KINDS)})"
            )
        if index.d != dim:
            raise ValueError(f"{folder / INDEX_FILE}: {index.d}-d index, {META_FILE} says {dim}")
        if not index.ntotal == len(paths) == len(labels) == count:
            raise ValueError(
                f"{folder}: {index.ntotal} indexed items but {len(paths)} paths, "
                f"{len(labels)} labels and {count} in {META_FILE}"
            )
        gallery = cls(index, kind, meta)
        gallery.paths, gallery.labels = paths, labels
        for ivf in gallery._ivfs():
            ivf.nprobe = gallery.search_width
        return gallery

    @classmethod
    def _load_shards(cls, folder: Path) -> GalleryIndex:
        try:
            listing = json.loads((folder / SHARDS_FILE).read_text())
            names, meta = list(listing["shards"]), dict(listing["meta"])
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{folder / SHARDS_FILE}: unreadable ({error})") from None
        shards = [cls.load(folder / name, mmap=True) for name in names]
        first = shards[0]

        def facts(shard: GalleryIndex) -> tuple:
            return shard.dim, shard.metric, shard.meta.get("checkpoint_sha256")

        for name, shard in zip(names, shards, strict=True):
            if facts(shard) != facts(first):
                raise ValueError(f"{folder / name}: another dimension, metric or checkpoint")
        combined = faiss.IndexShards(first.dim, True, True)  # threaded; ids follow on
        for shard in shards:
            combined.add_shard(shard.index)
        gallery = cls(combined, first.kind, {**first.meta, **meta, "shards": len(shards)})
        gallery.paths = [path for shard in shards for path in shard.paths]
        gallery.labels = np.concatenate([shard.labels for shard in shards])
        gallery._shards = shards  # the shards' indexes live as long as the combination
        return gallery

    def _check(self, array: Any, name: str) -> np.ndarray:
        array = np.ascontiguousarray(array, dtype=np.float32)
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise ValueError(f"{name} must have shape (n, {self.dim}), got {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"{name} contain NaN or inf")
        return array

    def train(self, sample: np.ndarray, progress: bool = False, prepared: bool = False) -> None:
        """Build the index of a kind that learns from data (IVF cells, PQ codebooks) from
        ``sample`` ``(m, dim)``, before anything is added; ``nlist`` defaults to
        ``4 sqrt(m)`` (at most ``m``). Faiss wants about 39 ``nlist`` points, PQ 256."""
        if self.index is not None:
            raise ValueError("the index is built already: train it before adding")
        sample = sample if prepared else self._prepared(self._check(sample, "sample"))
        nlist = self.meta.get("nlist") or max(1, int(4 * math.sqrt(len(sample))))
        nlist = min(nlist, len(sample))
        factories = {"ivf": f"IVF{nlist},Flat", "ivfpq": f"IVF{nlist},PQ{_pq_bytes(self.dim)}"}
        index = faiss.index_factory(self.dim, factories.get(self.kind, self.kind),
                                    self._faiss_metric)  # fmt: skip
        with Progress(f"training the {self.kind} index", enabled=progress):
            try:
                index.train(sample)
            except RuntimeError as error:
                first = str(error).strip().splitlines()[-1]
                raise ValueError(f"cannot train a {self.kind} index on {len(sample)} "
                                 f"embeddings: {first}") from None  # fmt: skip
        self.index = index
        for ivf in self._ivfs():
            self.meta["nlist"] = int(ivf.nlist)
            ivf.nprobe = self.search_width

    def empty_copy(self) -> GalleryIndex:
        """A copy of this index without its items (trained, for an index built in shards)."""
        if self.index is None or self.index.ntotal or self.paths:
            raise ValueError("copy a trained index before adding to it")
        return GalleryIndex(faiss.clone_index(self.index), self.kind, dict(self.meta))


def _faiss_type(kind: str, dim: int) -> type:
    """The faiss class an index of ``kind`` is (``NoneType`` for no kind at all)."""
    if kind in KINDS:
        return FAISS_TYPES[kind]
    try:
        return type(faiss.index_factory(dim, kind))
    except (RuntimeError, TypeError):
        return type(None)


def _pq_bytes(dim: int) -> int:
    """Product-quantisation sub-vectors of ``ivfpq``: 4 dimensions each, a byte a
    sub-vector (64-d embeddings: 16 bytes an item), or the fewest dimensions that divide."""
    return next(dim // step for step in (4, 2, 1) if dim % step == 0)


def approximate_recall(approximate: GalleryIndex, exact: GalleryIndex, queries: np.ndarray,
                       k: int = 10) -> float:  # fmt: skip
    """Recall@k of an approximate index against exact search: the share of each query's
    exact ``k`` nearest items that the approximate index also returns in its top ``k``."""
    _, found = approximate.search(queries, k)
    _, truth = exact.search(queries, k)
    return neighbour_recall(found, truth)


def neighbour_recall(found: np.ndarray, truth: np.ndarray) -> float:
    """The share of the true neighbours ``truth`` ``(q, k)`` that ``found`` ``(q, k)`` holds
    in the same row (indices, any order)."""
    hits = [len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.sum(hits) / truth.size)


def index_images(
    checkpoint: str | Path,
    out: str | Path,
    *,
    kind: str = "flat",
    metric: str | None = None,
    extend: bool = False,
    progress: bool = True,
    **source: Any,
) -> tuple[GalleryIndex, int]:
    """Embed images with ``checkpoint`` into the index folder ``out``: a new index of ``kind``
    comparing by ``metric`` (default ``l2``), or, with ``extend``, the index there (built
    with the same checkpoint and, if given, ``metric``), skipping the paths it holds.
    ``source`` are :func:`cdml.inference.embed_with_checkpoint`'s (``images=`` or
    ``dataset=``, ``data_root=``, ``split=``, ...); ``progress`` shows the embedding's and the
    indexing's. Returns the index, saved, and the number of items added.

    Args:
        checkpoint: a cdml training checkpoint.
        out: the index folder to write.
        kind: flat: exact; ivf / hnsw: approximate, for millions of items.
        metric: l2: Euclidean distance (default); cosine: cosine similarity; ip: inner
            product.
        extend: add the items not yet indexed to the index at out.
        progress: show progress bars.
        **source: the images, as :func:`cdml.inference.embed_with_checkpoint` takes them.
    """
    from cdml.inference import checkpoint_digest, embed_with_checkpoint

    out = check_not_inside(out, {"--checkpoint": checkpoint, "--images": source.get("images")})
    digest = checkpoint_digest(checkpoint)
    gallery = None
    if extend:
        gallery = GalleryIndex.load(out)
        gallery.check_checkpoint(digest, str(checkpoint))
        if metric not in (None, gallery.metric):
            raise ValueError(f"{out} compares by {gallery.metric}, not {metric}")
        source["image_size"] = gallery.check_preprocessing(source.get("image_size"))
    elif out.exists():
        raise ValueError(f"{out} exists; pass --extend to add to it or choose another --out")
    elif not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise ValueError(f"--out {out}: folder {out.parent} is not a writable folder")
    skip = frozenset(gallery.paths) if gallery is not None else frozenset()
    arrays = embed_with_checkpoint(checkpoint, skip=skip, progress=progress, **source)
    paths = arrays["paths"].tolist()
    if gallery is None:
        gallery = GalleryIndex.create(
            arrays["embeddings"].shape[1], kind=kind, metric=metric or "l2"
        )
        gallery.meta["checkpoint"] = str(checkpoint)
    gallery.meta["image_size"] = int(arrays["image_size"])
    if paths:
        gallery.add(
            arrays["embeddings"], paths, arrays.get("labels"), checkpoint_sha256=digest,
            progress=progress,
        )  # fmt: skip
    gallery.save(out)
    return gallery, len(paths)


def search_images(
    index: str | Path | GalleryIndex,
    checkpoint: str | Path,
    queries: Sequence[str | Path],
    k: int = 10,
    width: int | None = None,
    rerank: str | None = None,
) -> list[dict[str, Any]]:
    """The ``k`` nearest gallery items of each query image, embedded with ``checkpoint``
    (the index's own): per query ``{"query", "neighbours": [{"rank", "path", "label",
    "distance"}, ...]}`` (``"similarity"`` instead of ``"distance"`` for the cosine and
    inner-product metrics, unless a re-ranker scores by distance), nearest first.
    ``width`` sets :attr:`GalleryIndex.search_width`; ``rerank`` re-ranks with
    :func:`cdml.reranking.create_reranker`'s re-ranker, fitted to the whole gallery.

    Args:
        index: a folder written by cdml index (or the index, loaded).
        checkpoint: the cdml checkpoint the index was built with.
        queries: the query images.
        k: neighbours per query.
        width: approximate indexes only: IVF cells (nprobe, default 16) or HNSW candidates
            (efSearch, default 128) searched; wider recalls more and is slower.
        rerank: re-rank the neighbours: aqe (alpha query expansion), dba (database-side
            augmentation) or kreciprocal, with optional parameters, e.g. aqe:k=2,alpha=3 or
            kreciprocal:k1=20,k2=6,lambda=0.3 (default: none).
    """
    from cdml.inference import checkpoint_digest, embed_with_checkpoint

    reranker = create_reranker(rerank)
    gallery = index if isinstance(index, GalleryIndex) else GalleryIndex.load(index)
    gallery.check_checkpoint(checkpoint_digest(checkpoint), str(checkpoint))
    if width is not None:
        try:
            gallery.search_width = width
        except ValueError as error:
            raise ValueError(f"--width: {error}") from None
    missing = [str(q) for q in queries if not Path(q).is_file()]
    if missing:
        raise FileNotFoundError(f"no such query image: {', '.join(missing)}")
    embedded = embed_with_checkpoint(
        checkpoint,
        images=list(queries),
        image_size=gallery.check_preprocessing(None),
        progress=False,
    )
    if reranker is None:
        scores, indices = gallery.search(embedded["embeddings"], k)
        score = score_name(gallery.metric)
    else:
        scores, indices = reranker.fit(gallery).search(embedded["embeddings"], k)
        score = reranker.score_name(gallery.metric)
    return [
        {
            "query": str(query),
            "neighbours": [
                {
                    "rank": rank + 1,
                    "path": gallery.paths[i],
                    "label": int(gallery.labels[i]),
                    score: float(d),
                }  # fmt: skip
                for rank, (i, d) in enumerate(zip(row_indices, row_scores, strict=True))
                if i >= 0
            ],
        }
        for query, row_indices, row_scores in zip(queries, indices, scores, strict=True)
    ]
