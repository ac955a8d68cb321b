"""Where a gallery lives: a local directory, or any fsspec URL (``s3://bucket/gallery``, ``gs://...``).

Local paths stay :class:`pathlib.Path` and keep their POSIX guarantees (write to a temporary name, fsync,
rename). A URL becomes a ``universal_pathlib`` ``UPath`` with the same path API; an object store has no
rename, but a single PUT is atomic (a reader sees the whole object or none), so objects are written whole
from memory. The commit point differs accordingly (see :mod:`daskcluster.gallery.manifest`): a local gallery
swaps ``manifest.json``; an object store gets numbered manifests written with put-if-absent (S3 conditional
writes), the newest found by listing, as Delta Lake and Iceberg do. Credentials and the endpoint come from
the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ...), which the
Dask workers inherit.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from daskcluster.stages.fs import gpath, is_remote, parquet_file

__all__ = [
    "atomic_write_bytes",
    "gpath",
    "is_remote",
    "listing",
    "load_npy",
    "parquet_file",
    "put_if_absent",
    "read_table",
    "remove_tree",
    "tree_bytes",
    "write_parquet",
]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Any, data: bytes) -> None:
    """Write ``data`` so that readers see all of it or nothing: locally a temporary name in the same directory,
    fsync, rename, fsync the directory; on an object store one PUT."""
    path = gpath(path)
    if is_remote(path):
        path.fs.pipe_file(path.path, data)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def put_if_absent(path: Any, data: bytes) -> bool:
    """Create ``path`` with ``data`` only if it does not exist; False when it does (another writer was first).
    Locally ``O_EXCL`` on a temporary-then-link; on S3 a conditional PUT (``If-None-Match: *``)."""
    path = gpath(path)
    if not is_remote(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                os.fsync(fh.fileno())
            os.link(tmp, path)  # fails if path exists: the whole file appears at once, or not at all
        except FileExistsError:
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)
        _fsync_dir(path.parent)
        return True
    return _put_if_absent_remote(path, data)


def _put_if_absent_remote(path: Any, data: bytes) -> bool:
    if path.protocol in ("s3", "s3a"):
        bucket, _, key = path.path.partition("/")
        try:
            path.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        except Exception as exc:  # botocore's ClientError, as s3fs translates it
            if "PreconditionFailed" in repr(exc) or "412" in str(exc) or isinstance(exc, FileExistsError):
                return False
            raise
        path.fs.invalidate_cache()
        return True
    if path.fs.exists(path.path):  # a store without conditional writes: check, then write (not race-free)
        return False
    path.fs.pipe_file(path.path, data)
    return True


def write_parquet(table: pa.Table, path: Any, **kw: Any) -> None:
    """A Parquet file written whole (see :func:`atomic_write_bytes`)."""
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, **kw)
    atomic_write_bytes(path, buf.getvalue().to_pybytes())


def read_table(path: Any, **kw: Any) -> pa.Table:
    path = gpath(path)
    if is_remote(path):
        return pq.read_table(path.path, filesystem=path.fs, **kw)
    return pq.read_table(path, **kw)


def load_npy(path: Any) -> np.ndarray:
    path = gpath(path)
    if is_remote(path):
        return np.load(io.BytesIO(path.fs.cat_file(path.path)), allow_pickle=False)
    return np.load(path, allow_pickle=False)


def listing(path: Any, pattern: str) -> list:
    """Sorted entries of the directory ``path`` matching ``pattern`` (fresh: no cached listing)."""
    path = gpath(path)
    if is_remote(path):
        path.fs.invalidate_cache()
    return sorted(path.glob(pattern), key=str)


def remove_tree(path: Any) -> None:
    """Remove a file or a directory tree, if there."""
    path = gpath(path)
    if is_remote(path):
        path.fs.invalidate_cache()
        if path.fs.exists(path.path):
            path.fs.rm(path.path, recursive=True)
        return
    if path.is_file():
        path.unlink()
    shutil.rmtree(path, ignore_errors=True)


def tree_bytes(path: Any) -> int:
    """Bytes of a file, or of every file under a directory (0 when absent)."""
    path = gpath(path)
    if is_remote(path):
        path.fs.invalidate_cache()
        return int(path.fs.du(path.path)) if path.fs.exists(path.path) else 0
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return 0
