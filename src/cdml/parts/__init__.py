"""Collections too large for one process: embeddings written in parts (resumable, by local
processes or Ray), and what reads them back."""

from cdml.parts.embedding import PartsSummary, embed_collection, embed_to_parts
from cdml.parts.engines import ENGINES
from cdml.parts.indexing import build_index, index_parts
from cdml.parts.store import PartsFolder, is_parts_folder

__all__ = [
    "ENGINES",
    "PartsFolder",
    "PartsSummary",
    "build_index",
    "embed_collection",
    "embed_to_parts",
    "index_parts",
    "is_parts_folder",
]
