"""Sources: read a BBBC021-layout folder (metadata CSVs + plate folders) into tables."""

from cellstore.sources.csvfile import MetadataError
from cellstore.sources.folder import existing_source, folder_digest
from cellstore.sources.images import load_images, load_moa
from cellstore.sources.reasons import ALL_REASONS

__all__ = [
    "ALL_REASONS",
    "MetadataError",
    "existing_source",
    "folder_digest",
    "load_images",
    "load_moa",
]
