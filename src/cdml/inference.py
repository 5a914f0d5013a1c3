"""Using a trained model: load it from a checkpoint, embed datasets and image folders, read
embeddings files back."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset

from cdml.checks import check_image_size
from cdml.data import dataset_info, load_dataset, transforms_of
from cdml.data.folder import find_images, unlabelled_images
from cdml.io import check_output, is_json_object, write_json, write_npz
from cdml.metrics import DEFAULT_KS, ITEM_MARKS, evaluate
from cdml.models import EmbeddingModel, build_model
from cdml.progress import Progress
from cdml.reranking import create_reranker
from cdml.training.config import EVAL_BATCH_SIZE, RunConfig, checkpoint_config
from cdml.viz.inputs import sample_indices

__all__ = [
    "checkpoint_digest",
    "EmbeddedSample",
    "embed",
    "embed_test_sample",
    "embed_to_file",
    "embed_with_checkpoint",
    "evaluate_embeddings",
    "find_images",
    "load_checkpoint",
    "is_embeddings_file",
    "load_embeddings",
    "read_checkpoint",
    "rgb_pixels",
    "save_embeddings",
    "source_images",
]


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """The content of the cdml training checkpoint at ``path``, read with
    ``torch.load(weights_only=True)`` (tensors and plain data only; ``mmap``: memory-mapped,
    for reading its config alone); ``FileNotFoundError`` or ``ValueError`` naming the file
    when it is missing or not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:  # torch raises several types for foreign or corrupt files
        raise ValueError(
            f"{path}: not a readable cdml checkpoint ({type(error).__name__})"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{path}: not a cdml training checkpoint (no 'state_dict')")
    return checkpoint


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[EmbeddingModel, RunConfig]:
    """The embedding model saved in a cdml training checkpoint, in eval mode, and its config.

    The file is read with ``torch.load(weights_only=True)``: tensors and plain data only.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path)
    config = checkpoint_config(path, checkpoint.get("hyper_parameters", {}))
    model = build_model(config.model, pretrained=False)
    prefix = "model."
    state = {
        k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)
    }
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{path}: weights do not fit the model of its config ({error})") from None
    return model.to(device).eval(), config


@torch.inference_mode()
def embed(
    model: torch.nn.Module,
    dataset: Dataset,
    batch_size: int | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings ``(n, d)`` float32 and labels ``(n,)`` of a dataset of ``(image, label)``,
    ``batch_size`` images at a time (default ``EVAL_BATCH_SIZE``, 64)."""
    device = next(model.parameters()).device
    batch_size = EVAL_BATCH_SIZE if batch_size is None else batch_size
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    embeddings, labels = [], []
    with Progress("embedding", total=len(dataset), enabled=progress) as bar:
        for images, batch_labels in loader:
            embeddings.append(model(images.to(device)).float().cpu())
            labels.append(torch.as_tensor(batch_labels))
            bar.advance(len(images))
    return torch.cat(embeddings).numpy(), torch.cat(labels).numpy()


def checkpoint_digest(path: str | Path) -> str:
    """The sha256 of a checkpoint file (hex), which names the embedding it computes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_embedding_options(
    images: Any, dataset: str | None, counts: Sequence[tuple[str, int | None, int]]
) -> None:
    """Refuse, naming the flag, a source that is not exactly one of ``images`` and
    ``dataset``, and a count ``(flag, value, least)`` below its least (``None``: its
    default)."""
    if (dataset is None) == (images is None):
        raise ValueError(
            "give either --dataset (with --data-root and --split) or --images DIR (from "
            "Python: dataset= with data_root= and split=, or images=)"
        )
    for flag, value, least in counts:
        if value is not None and value < least:
            raise ValueError(f"{flag} must be at least {least}, got {value}")


def embed_with_checkpoint(
    checkpoint: str | Path,
    *,
    images: str | Path | Sequence[str | Path] | None = None,
    dataset: str | None = None,
    data_root: str | Path | None = None,
    split: str = "test",
    image_size: int | None = None,
    batch_size: int | None = None,
    workers: int = 0,
    skip: Collection[str] = frozenset(),
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Embed the images under a folder (or a list of image files), or a dataset's split,
    with the model of ``checkpoint`` and its test-time preprocessing.

    Returns the arrays ``cdml embed`` writes: ``embeddings`` ``(n, d)`` float32,
    ``paths`` ``(n,)`` (in-memory datasets name their items ``dataset/split/i``) and the
    ``image_size`` the images were embedded at (default the training size), plus for a
    dataset ``labels`` ``(n,)``, ``dataset``, ``split``, ``data_root`` and the split's
    ``evaluation`` arrays (``is_query``, ``is_gallery``, ``categories``) where it has them.

    Args:
        checkpoint: a cdml training checkpoint.
        images: embed every image under this folder (or these image files).
        dataset: the dataset's name (as for cdml train).
        data_root: the dataset's folder (the CSV file for csv).
        split: the dataset's half.
        image_size: the input size; default the training image size.
        batch_size: images per batch; default 64.
        workers: data loading processes.
        skip: paths left out before embedding (those an index holds, when extending it).
        progress: show a progress bar.
    """
    check_embedding_options(
        images, dataset, [("--batch-size", batch_size, 1), ("--workers", workers, 0)]
    )
    if image_size is not None:
        check_image_size(image_size, "--image-size")
    model, config = load_checkpoint(checkpoint)
    if image_size is not None:
        config = replace(config, data=replace(config.data, image_size=image_size))
    transform = transforms_of(config.data, train=False)
    if images is not None:
        files = find_images(images) if isinstance(images, str | Path) else list(images)
        paths = [str(p) for p in files if str(p) not in skip]
        items: Any = unlabelled_images(paths, transform)
        arrays: dict[str, np.ndarray] = {}
    else:
        items = load_dataset(dataset, data_root, split, transform=transform)
        paths = getattr(items, "paths", None)
        if paths is None:
            paths = [f"{dataset}/{split}/{i}" for i in range(len(items))]
        keep = [i for i, path in enumerate(paths) if str(path) not in skip]
        marks = {name: values[keep] for name, values in items.evaluation.items()}
        items, paths = Subset(items, keep), [str(paths[i]) for i in keep]
        source = {"dataset": dataset, "split": split, "data_root": str(data_root or "")}
        arrays = {k: np.array(v) for k, v in source.items()}
    arrays["image_size"] = np.array(config.data.image_size)
    if not paths:
        empty = {"labels": np.empty(0, np.int64)} if dataset is not None else {}
        return {
            **arrays,
            **empty,
            "embeddings": np.empty((0, 0), np.float32),
            "paths": np.empty(0, np.str_),
        }
    embeddings, labels = embed(model, items, batch_size, workers, progress=progress)
    arrays.update(embeddings=embeddings, paths=np.asarray(paths, dtype=np.str_))
    if dataset is not None:
        arrays.update(labels=labels, **marks)
    return arrays


EMBEDDINGS_FILE = "an embeddings file"


def is_embeddings_file(path: str | Path) -> bool:
    """Whether ``path`` is a ``.npz`` archive with an ``embeddings`` array (as
    :func:`save_embeddings` writes), which ``cdml embed`` may replace."""
    try:
        with zipfile.ZipFile(path) as archive:
            return "embeddings.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def save_embeddings(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` (as :func:`embed_with_checkpoint` returns them) to exactly ``path``
    as an uncompressed ``.npz``, atomically; an existing file is replaced only if it is an
    embeddings file (:func:`is_embeddings_file`), else ``ValueError``. Returns the path."""
    path = check_output(path, what=EMBEDDINGS_FILE, owned=is_embeddings_file)
    write_npz(path, arrays)
    return path


def embed_to_file(checkpoint: str | Path, out: str | Path, **source: Any) -> dict[str, np.ndarray]:
    """``cdml embed``: :func:`embed_with_checkpoint` of ``source`` saved to ``out``
    (:func:`save_embeddings`, checked before any work); returns the arrays.

    Args:
        checkpoint: a cdml training checkpoint.
        out: the .npz file to write: embeddings, and labels for a dataset, paths for images.
        **source: the images, as :func:`embed_with_checkpoint` takes them.
    """
    check_output(
        out, what=EMBEDDINGS_FILE, owned=is_embeddings_file, inputs={"--checkpoint": checkpoint}
    )
    arrays = embed_with_checkpoint(checkpoint, **source)
    save_embeddings(out, arrays)
    return arrays


def evaluate_embeddings(
    embeddings: str | Path | None = None,
    checkpoint: str | Path | None = None,
    *,
    ks: Sequence[int] | None = None,
    nmi: bool = True,
    nmi_runs: int = 1,
    metric: str = "l2",
    rerank: str | None = None,
    json_out: str | Path | None = None,
    **source: Any,
) -> tuple[dict[str, float], dict[str, np.ndarray], str]:
    """``cdml evaluate``: the zero-shot metrics (:func:`cdml.metrics.evaluate`) of an
    ``embeddings`` file, or of ``checkpoint`` on a dataset ``source``
    (:func:`embed_with_checkpoint`'s), with their query / gallery marks and categories when
    the items have them; ``ks`` default the file's 1, 2, 4, 8 or the dataset's own. With
    ``json_out`` the metrics are also written there (checked before any work). Returns the
    metrics, the items' arrays and a name of what was evaluated.

    Args:
        embeddings: a .npz file with 'embeddings' and 'labels' (as cdml embed writes it),
            or a folder of parts (cdml embed --parts), evaluated a part at a time.
        checkpoint: a cdml checkpoint, evaluated on a dataset's split instead.
        ks: K values of Recall@K; default 1,2,4,8 (a file) or the dataset's own.
        nmi: k-means and its NMI, AMI, ARI and purity.
        nmi_runs: average the clustering scores over N k-means seeds and report NMI's
            standard deviation.
        metric: what ranks neighbours: Euclidean distance (the papers'), cosine similarity
            or inner product.
        rerank: re-rank the neighbours: aqe (alpha query expansion), dba (database-side
            augmentation) or kreciprocal, with optional parameters, e.g. aqe:k=2,alpha=3 or
            kreciprocal:k1=20,k2=6,lambda=0.3 (default: none).
        json_out: also write the metrics to this JSON file.
        **source: the dataset split, as :func:`embed_with_checkpoint` takes it.
    """
    if (embeddings is None) == (checkpoint is None):
        raise ValueError("give either an EMBEDDINGS.npz file or --checkpoint with --dataset")
    reranker = create_reranker(rerank)  # a bad spec is refused before any work
    if json_out is not None:
        check_output(
            json_out,
            what="a metrics file",
            name="--json",
            owned=lambda path: is_json_object(path, "map@r"),
            inputs={"EMBEDDINGS": embeddings, "--checkpoint": checkpoint},
        )
    if embeddings is not None:
        arrays, name, default_ks = load_embeddings(embeddings), str(embeddings), DEFAULT_KS
    else:
        arrays = embed_with_checkpoint(checkpoint, **source)
        name = f"{checkpoint} on {source.get('dataset')}"
        default_ks = dataset_info(source["dataset"]).ks
    marks = {key: arrays[key] for key in ITEM_MARKS if key in arrays}
    try:
        metrics = evaluate(
            arrays["embeddings"],
            arrays["labels"],
            ks=ks or default_ks,
            nmi=nmi,
            nmi_runs=nmi_runs,
            metric=metric,
            progress=True,
            rerank=reranker,
            **marks,
        )
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None
    if json_out is not None:
        write_json(json_out, metrics)
    return metrics, arrays, name


def load_embeddings(path: str | Path, need_labels: bool = True) -> dict[str, np.ndarray]:
    """Read the arrays of a .npz file: ``embeddings`` ``(n, d)``, ``labels`` ``(n,)`` (unless
    ``need_labels`` is False) and any others (``paths``, ``dataset``, ``split``,
    ``data_root`` as :func:`embed_with_checkpoint` writes them). No pickle is read; a file
    that is not such an archive raises ``ValueError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a .npz archive")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as error:
        raise ValueError(f"{path}: not a readable .npz archive ({error})") from None
    required = ("embeddings", "labels") if need_labels else ("embeddings",)
    missing = [key for key in required if key not in arrays]
    if missing:
        raise ValueError(
            f"{path}: no array {missing[0]!r} (arrays in the file: {', '.join(arrays) or 'none'})"
        )
    shapes = {"embeddings": 2, "labels": 1}
    for key, ndim in shapes.items():
        if key in arrays and arrays[key].ndim != ndim:
            raise ValueError(
                f"{path}: {key!r} must be a {ndim}-D array, got shape {arrays[key].shape}"
            )
    rows = len(arrays["embeddings"])
    for key in ("labels", "paths", *ITEM_MARKS):
        if key in arrays and (arrays[key].ndim != 1 or len(arrays[key]) != rows):
            raise ValueError(
                f"{path}: 'embeddings' has {rows} rows but {key!r} has shape "
                f"{arrays[key].shape}; each needs one entry per embedding"
            )
    if "labels" in arrays:
        arrays["labels"] = _integer_labels(arrays["labels"], path)
    return arrays


def _integer_labels(labels: np.ndarray, path: Path) -> np.ndarray:
    """``labels`` as int64 class ids; ``ValueError`` naming ``path`` for any other values
    (floats with fractions, strings: truncating or renumbering them would be a guess)."""
    if labels.dtype.kind in "iub":
        return labels.astype(np.int64)
    if (
        labels.dtype.kind == "f"
        and np.isfinite(labels).all()
        and (labels == np.round(labels)).all()
    ):
        return labels.astype(np.int64)
    example = next((v for v in labels.tolist() if not _is_integral(v)), labels[:1].tolist())
    raise ValueError(
        f"{path}: 'labels' must be integer class ids, got {labels.dtype} values such as {example!r}"
    )


def _is_integral(value: Any) -> bool:
    return isinstance(value, int | float) and float(value).is_integer()


@dataclass
class EmbeddedSample:
    """A seeded sample of a checkpoint's test split, embedded: ``embeddings`` ``(n, d)``,
    ``labels`` ``(n,)``, ``images`` (n uint8 RGB arrays ``(H, W, 3)``, as stored), the
    split's ``class_names`` and ``total`` images."""

    embeddings: np.ndarray
    labels: np.ndarray
    images: list[np.ndarray]
    class_names: Sequence[str]
    total: int


def embed_test_sample(
    checkpoint: str | Path, max_items: int, seed: int = 0, progress: bool = True
) -> EmbeddedSample | None:
    """At most ``max_items`` images of the test split of the dataset ``checkpoint`` was
    trained on (a sample drawn with ``seed``), embedded with its model and test-time
    preprocessing; None when that dataset has no labelled test split (or fewer than 3
    images)."""
    model, config = load_checkpoint(checkpoint)
    data = config.data
    if not dataset_info(data.dataset).labelled:
        return None
    transform = transforms_of(data, train=False)
    dataset = load_dataset(data.dataset, data.root, "test", transform=transform,
                           skip_bad=data.skip_bad)  # fmt: skip
    if len(dataset) < 3:  # too few images to show
        return None
    chosen = sample_indices(len(dataset), max_items, seed)
    embeddings, labels = embed(model, Subset(dataset, chosen.tolist()), progress=progress)
    dataset.transform = None
    images = [rgb_pixels(dataset[int(i)][0]) for i in chosen]
    return EmbeddedSample(embeddings, labels, images, dataset.class_names, len(dataset))


def rgb_pixels(image: Any) -> np.ndarray:
    """A dataset's image (PIL or an array) as a uint8 array."""
    return np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)


def source_images(arrays: dict[str, np.ndarray], indices: Sequence[int]) -> list[np.ndarray]:
    """uint8 RGB images ``(H, W, 3)`` of the items at ``indices`` of an embeddings file's
    ``arrays``, read from the dataset or the files it names."""
    from cdml.data.image_dataset import open_rgb

    if "dataset" in arrays:
        root = str(arrays["data_root"]) or None
        items = load_dataset(str(arrays["dataset"]), root, str(arrays["split"]))
        return [rgb_pixels(items[int(i)][0]) for i in indices]
    if "paths" in arrays:
        return [np.asarray(open_rgb(str(arrays["paths"][i]))) for i in indices]
    raise ValueError(
        "has no 'paths' or 'dataset' entry to find the images (write it with cdml embed)"
    )
