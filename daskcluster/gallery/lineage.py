"""Cluster lineage: which gallery ids consolidation merged into which, and resolving ids through it.

A consolidation never rewrites the days' assignments (they are the record of what each day decided, and a
forced re-run must find them as they were); it writes ``lineage/vNNNNNN.parquet`` instead, cumulative, one row
per absorbed cluster::

    old_id      int64    the absorbed cluster
    new_id      int64    the cluster it was merged into (always smaller: the older cluster survives)
    day         date32   the last committed day when it was merged
    similarity  float32  cosine similarity of the two centres
    version     int64    the manifest version that merged them

Because ``new_id < old_id`` on every row, following old -> new always ends, at a cluster of the snapshot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from daskcluster.gallery.layout import lineage_path
from daskcluster.gallery.manifest import GalleryError, Manifest, atomic_write_bytes
from daskcluster.gallery.store import gpath, read_table

__all__ = [
    "LINEAGE_SCHEMA",
    "lineage_in_force",
    "lineage_path",
    "read_lineage",
    "resolve",
    "resolve_table",
    "write_lineage",
]

LINEAGE_SCHEMA = pa.schema(
    [
        pa.field("old_id", pa.int64()),
        pa.field("new_id", pa.int64()),
        pa.field("day", pa.date32()),
        pa.field("similarity", pa.float32()),
        pa.field("version", pa.int64()),
    ]
)
_MAX_PASSES = 64  # pointer jumping doubles the links followed each pass: chains of up to 2**64 links


def lineage_in_force(manifest: Manifest) -> str | None:
    """The lineage the committed assignments resolve through: the latest day's that has one.

    A day run after a consolidation carries none of its own (its faces joined the merged clusters), and a
    forced re-run of a day drops the records from that day on, with the lineage of their consolidations."""
    for record in sorted(manifest.days, key=lambda d: d.day, reverse=True):
        if record.lineage:
            return record.lineage
    return None


def read_lineage(gallery: str | Path, manifest: Manifest) -> pa.Table:
    """The lineage in force (an empty table when the gallery was never consolidated)."""
    rel = lineage_in_force(manifest)
    if rel is None:
        return LINEAGE_SCHEMA.empty_table()
    try:
        return read_table(gpath(gallery) / rel).select(LINEAGE_SCHEMA.names).cast(LINEAGE_SCHEMA)
    except (OSError, KeyError, pa.ArrowException) as exc:
        raise GalleryError(f"{gpath(gallery) / rel}: unreadable lineage ({exc})") from exc


def _step(ids: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Each id mapped one link (ids not in ``old``, which is sorted, stay)."""
    pos = np.minimum(np.searchsorted(old, ids), len(old) - 1)
    return np.where(old[pos] == ids, new[pos], ids)


def resolve(ids: np.ndarray, old_id: np.ndarray, new_id: np.ndarray) -> np.ndarray:
    """``ids`` with every chain old -> new -> newer followed to its end.

    The lineage is first closed over itself by pointer jumping (each pass maps every target through the
    current map, so the links followed double: log2 of the longest chain passes), then ``ids`` are mapped once:
    no Python loop over rows, and cost O((n + m) log m) for n ids and m lineage rows."""
    ids = np.asarray(ids, np.int64)
    if len(old_id) == 0:
        return ids.copy()
    if np.any(np.asarray(new_id) >= np.asarray(old_id)):
        raise GalleryError("the lineage maps an id to itself or to a newer id (a cycle is possible)")
    order = np.argsort(old_id, kind="stable")
    old, new = np.asarray(old_id, np.int64)[order], np.asarray(new_id, np.int64)[order]
    for _ in range(_MAX_PASSES):
        nxt = _step(new, old, new)
        if np.array_equal(nxt, new):
            return _step(ids, old, new)
        new = nxt
    raise AssertionError("unreachable: ids strictly decrease along every chain")


def resolve_table(table: pa.Table, lineage: pa.Table, column: str = "cluster_id") -> pa.Table:
    """``table`` with ``column`` resolved through ``lineage`` (unchanged when the lineage is empty)."""
    if lineage.num_rows == 0:
        return table
    ids = resolve(
        table.column(column).to_numpy(), lineage.column("old_id").to_numpy(), lineage.column("new_id").to_numpy()
    )
    return table.set_column(table.schema.get_field_index(column), column, pa.array(ids, pa.int64()))


def write_lineage(table: pa.Table, path: Path) -> None:
    """Write the lineage table atomically (in memory first: a failed write leaves no temporary file behind)."""
    buf = pa.BufferOutputStream()
    pq.write_table(table.cast(LINEAGE_SCHEMA), buf)
    atomic_write_bytes(path, buf.getvalue().to_pybytes())
