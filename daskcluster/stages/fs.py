"""Paths at any fsspec URL: a local path stays a :class:`pathlib.Path`; ``s3://``, ``gs://``, ``memory://`` ...
become a ``universal_pathlib`` ``UPath`` with the same path API (credentials and endpoint from the
environment). The day's input and the gallery (:mod:`daskcluster.gallery.store`) are both read through it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

__all__ = ["gpath", "is_remote", "parquet_file"]


def gpath(where: Any) -> Any:
    """A path of ``where``'s filesystem: ``Path`` for a local path (or ``file://``), ``UPath`` for a URL."""
    if not isinstance(where, str | os.PathLike) and hasattr(where, "fs"):
        return where
    text = str(where)
    if "://" in text and not text.startswith("file://"):
        from upath import UPath

        return UPath(text)
    return Path(text.removeprefix("file://"))


def is_remote(p: Any) -> bool:
    return hasattr(p, "fs") and getattr(p, "protocol", "") not in ("", "file", "local")


def parquet_file(path: Any) -> pq.ParquetFile:
    """A Parquet file's reader, local or remote (the remote file is opened through fsspec, read by ranges)."""
    path = gpath(path)
    return pq.ParquetFile(path.fs.open(path.path, "rb")) if is_remote(path) else pq.ParquetFile(path)
