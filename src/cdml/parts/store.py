"""A folder of embedding parts: the plan (``manifest.json``, ``items.parquet`` with one row
group a part) and each finished part (``part-NNNNN.npy`` embeddings, ``.parquet`` items,
``.json`` its completion record, written last), so that a killed job loses one part at most."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cdml.io import atomic_path, check_output_folder, remove_temporaries, write_json

FORMAT = 1
MANIFEST, ITEMS = "manifest.json", "items.parquet"
# What a rerun must find unchanged to continue a folder's parts.
PLAN_KEYS = ("checkpoint_sha256", "image_size", "source", "part_size")


def is_parts_folder(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


def _is_begun(folder: Path) -> bool:
    """A folder of parts, or one whose listing a killed job left before its manifest."""
    return is_parts_folder(folder) or all(p.name.startswith((ITEMS, ".")) for p in folder.iterdir())


class PartsFolder:
    """The parts of one embedding job in ``folder`` (see the module's docstring).

    :meth:`plan` lists the items once; :meth:`todo` are the parts without a completion
    record; :meth:`write_part` writes one part, its record last; :meth:`parts` reads them
    back in order, one at a time (memory-mapped embeddings)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @property
    def manifest(self) -> dict[str, Any]:
        try:
            return json.loads((self.folder / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.folder}: no {MANIFEST} (not parts)") from None
        except ValueError as error:
            raise ValueError(f"{self.folder / MANIFEST}: unreadable ({error})") from None

    def plan(self, plan: dict[str, Any], batches: Iterator[pa.RecordBatch],
             inputs: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
        """The folder's manifest: the one there if it has the same ``plan`` (a rerun
        continues it), else a new listing of ``batches`` (one per part) and ``plan``."""
        if is_parts_folder(self.folder):
            manifest = self.manifest
            changed = [key for key in PLAN_KEYS if manifest.get(key) != plan.get(key)]
            if changed:
                raise ValueError(
                    f"{self.folder} holds parts of another job ({', '.join(changed)} differ); "
                    "choose another --out or remove it"
                )
            self._remove_temporaries()
            return manifest
        check_output_folder(self.folder, what="a folder of parts", owned=_is_begun,
                            inputs=inputs)  # fmt: skip
        self.folder.mkdir(parents=True, exist_ok=True)
        self._remove_temporaries()
        items, parts = 0, 0
        with atomic_path(self.folder / ITEMS) as tmp:
            writer = None
            for batch in batches:
                table = pa.Table.from_batches([batch])
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table, row_group_size=max(1, table.num_rows))
                items, parts = items + table.num_rows, parts + 1
            if writer is None:
                raise ValueError(f"{inputs.get('--images') or 'the source'}: no items to embed")
            writer.close()
        manifest = {"format": FORMAT, **plan, "items": items, "parts": parts}
        write_json(self.folder / MANIFEST, manifest)
        return manifest

    def _remove_temporaries(self) -> None:
        """The half-written files of a killed job (one job writes a folder at a time)."""
        for suffix in ("", ".npy", ".parquet", ".json"):
            remove_temporaries(self.folder, suffix)

    def name(self, part: int) -> Path:
        return self.folder / f"part-{part:05d}"

    def items(self, part: int) -> pa.Table:
        """The items planned for ``part``."""
        return pq.ParquetFile(self.folder / ITEMS).read_row_group(part)

    def done(self, part: int) -> bool:
        return self.name(part).with_suffix(".json").is_file()

    def todo(self) -> list[int]:
        return [part for part in range(self.manifest["parts"]) if not self.done(part)]

    def write_part(self, part: int, embeddings: np.ndarray, items: pa.Table,
                   record: dict[str, Any]) -> None:  # fmt: skip
        """Write ``part``: embeddings ``(rows, d)``, their items, then its record."""
        base = self.name(part)
        with atomic_path(base.with_suffix(".npy")) as tmp:
            np.save(tmp, np.ascontiguousarray(embeddings, dtype=np.float32))
        with atomic_path(base.with_suffix(".parquet")) as tmp:
            pq.write_table(items, tmp)
        write_json(base.with_suffix(".json"), {"rows": len(embeddings), **record})

    def record(self, part: int) -> dict[str, Any]:
        return json.loads(self.name(part).with_suffix(".json").read_text(encoding="utf-8"))

    def embeddings(self, part: int) -> np.ndarray:
        """The embeddings ``(rows, d)`` of a finished part, memory-mapped (its items unread)."""
        base = self.name(part)
        if not self.done(part):
            raise ValueError(f"{base}: part {part} is not finished (run cdml embed again)")
        return np.load(base.with_suffix(".npy"), mmap_mode="r", allow_pickle=False)

    def read(self, part: int) -> tuple[np.ndarray, pa.Table]:
        """The embeddings ``(rows, d)`` (memory-mapped) and items of a finished part."""
        base, embeddings = self.name(part), self.embeddings(part)
        items = pq.read_table(base.with_suffix(".parquet"))
        if len(embeddings) != items.num_rows:
            raise ValueError(f"{base}: {len(embeddings)} embeddings but {items.num_rows} items")
        return embeddings, items

    def check_finished(self) -> None:
        """``ValueError`` unless every part is finished."""
        unfinished = self.todo()
        if unfinished:
            raise ValueError(
                f"{self.folder}: {len(unfinished)} of {self.manifest['parts']} parts are "
                f"unfinished (e.g. part {unfinished[0]}); run the same cdml embed again"
            )

    def parts(self) -> Iterator[tuple[np.ndarray, pa.Table]]:
        """Every part in order; ``ValueError`` if one is unfinished."""
        self.check_finished()
        for part in range(self.manifest["parts"]):
            yield self.read(part)

    def skipped(self) -> list[dict[str, str]]:
        """The unreadable items that finished parts left out, with their errors."""
        return [item for part in range(self.manifest["parts"]) if self.done(part)
                for item in self.record(part).get("skipped", [])]  # fmt: skip


def part_files(folder: Path) -> list[str]:
    """The names of the part files in ``folder``, sorted (to compare two jobs' parts)."""
    return sorted(name for name in os.listdir(folder) if name.startswith("part-"))
