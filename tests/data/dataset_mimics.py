"""Writers of tiny folders that copy the real datasets' layouts file for file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from PIL import Image


@dataclass
class Mimic:
    """A generated dataset: the root to load, and per split, in annotation order, each
    image's file, original class key and red value (see ``add``)."""

    root: Path
    paths: dict[str, list[Path]] = field(default_factory=lambda: {"train": [], "test": []})
    classes: dict[str, list[Any]] = field(default_factory=lambda: {"train": [], "test": []})
    reds: dict[str, list[int]] = field(default_factory=lambda: {"train": [], "test": []})

    def add(self, split: str, path: Path, class_key: Any) -> None:
        """Write a small flat-colour JPEG at ``path`` whose red value identifies it."""
        red = 10 * (sum(len(p) for p in self.paths.values()) + 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (12, 10), (red, 128, 30)).save(path, quality=95)
        self.paths[split].append(path)
        self.classes[split].append(class_key)
        self.reds[split].append(red)


def truncate(path: Path) -> None:
    """Cut ``path`` to half its bytes, as an interrupted download would."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_noise_jpeg(path: Path) -> None:
    """A JPEG large enough that truncating it loses image data, not only the trailer."""
    pixels = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


CAR_NAMES = [f"Make Model {i} 2012" for i in range(1, 197)]


def write_cars_annotations(
    path: Path, rows: list[tuple[str, int, int]], names: list[str] | None = CAR_NAMES
) -> None:
    """``cars_annos.mat``: struct array ``annotations`` (1 x n) and cell row ``class_names``."""
    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    annotations = np.zeros((1, len(rows)), dtype=[(f, "O") for f in fields])
    for i, (rel, class_id, test) in enumerate(rows):
        annotations[0, i] = (rel, 1, 2, 11, 9, np.uint8(class_id), np.uint8(test))
    variables = {"annotations": annotations}
    if names is not None:
        variables["class_names"] = np.array(names, dtype=object).reshape(1, -1)
    scipy.io.savemat(path, variables)


def write_csv(path: Path, rows: list[tuple[str, ...]], header: str = "label,path,split") -> None:
    path.write_text("\n".join([header, *(",".join(row) for row in rows)]) + "\n")


def make_cub(tmp_path: Path) -> Mimic:
    """``CUB_200_2011/``: classes 1, 7, 100 (train half) and 101, 150, 200 (test half).

    Image ids interleave the halves, so a loader must split by class, not by position.
    """
    mimic = Mimic(tmp_path / "CUB_200_2011")
    sizes = {1: 2, 7: 3, 100: 2, 101: 2, 150: 4, 200: 2}
    per_image = sorted(((n, c) for c, k in sizes.items() for n in range(k)))
    images_lines, label_lines = [], []
    for image_id, (n, class_id) in enumerate(per_image, start=1):
        rel = f"{class_id:03d}.Bird_{class_id}/Bird_{class_id}_{n:04d}.jpg"
        mimic.add("train" if class_id <= 100 else "test", mimic.root / "images" / rel, class_id)
        images_lines.append(f"{image_id} {rel}")
        label_lines.append(f"{image_id} {class_id}")
    (mimic.root / "images.txt").write_text("\n".join(images_lines) + "\n")
    (mimic.root / "image_class_labels.txt").write_text("\n".join(label_lines) + "\n")
    return mimic


def make_cars(tmp_path: Path) -> Mimic:
    """``cars_annos.mat`` + ``car_ims/``: classes 1, 50, 98 (train) and 99, 150, 196 (test).

    Classes are listed out of order and the ``test`` flag (the classification split) is set
    on every other image, so a loader splitting by position or by that flag would be caught.
    """
    mimic = Mimic(tmp_path / "cars196")
    sizes = {99: 2, 1: 2, 150: 2, 50: 3, 196: 3, 98: 2}
    rows = []
    for class_id, k in sizes.items():
        for _ in range(k):
            rel = f"car_ims/{len(rows) + 1:06d}.jpg"
            mimic.add("train" if class_id <= 98 else "test", mimic.root / rel, class_id)
            rows.append((rel, class_id, len(rows) % 2))
    write_cars_annotations(mimic.root / "cars_annos.mat", rows)
    return mimic


def make_sop(tmp_path: Path) -> Mimic:
    """``Ebay_train.txt`` / ``Ebay_test.txt`` with their header, and the image folders."""
    mimic = Mimic(tmp_path / "Stanford_Online_Products")
    halves = {
        "train": [(1, "bicycle", 2), (2, "bicycle", 3), (3, "chair", 2)],
        "test": [(4, "mug", 2), (5, "mug", 2), (6, "sofa", 4)],
    }
    super_ids = {"bicycle": 1, "chair": 2, "mug": 3, "sofa": 4}
    image_id = 0
    for split, classes in halves.items():
        lines = ["image_id class_id super_class_id path"]
        for class_id, super_name, k in classes:
            for n in range(k):
                image_id += 1
                rel = f"{super_name}_final/{100000 + class_id}_{n}.JPG"
                mimic.add(split, mimic.root / rel, class_id)
                lines.append(f"{image_id} {class_id} {super_ids[super_name]} {rel}")
        (mimic.root / f"Ebay_{split}.txt").write_text("\n".join(lines) + "\n")
    return mimic


def make_csv(tmp_path: Path) -> Mimic:
    """``dataset.csv`` beside ``imgs/``; the ``validation`` rows belong to the test half.

    Labels are strings and the CSV has an extra column, as open-metric-learning CSVs do.
    """
    mimic = Mimic(tmp_path / "dataset.csv")
    written = [("dog", "train", 3), ("cat", "train", 2), ("owl", "validation", 3)]
    written.append(("fox", "test", 2))
    rows = []
    for label, split, k in written:
        for n in range(k):
            rel = f"imgs/{label}/{n}.jpg"
            mimic.add("train" if split == "train" else "test", tmp_path / rel, label)
            rows.append((label, rel, split, "0"))
    write_csv(mimic.root, rows, header="label,path,split,x_1")
    return mimic
