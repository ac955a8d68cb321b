"""Centre tables on disk: a base snapshot plus an ordered list of deltas, one Parquet file per shard in each.

A *base* (``snapshots/vNNNNNN/``) holds every cluster of each shard; a *delta* (``deltas/vNNNNNN/``) holds only
the rows a version changed: the clusters that gained members, the new ones, and tombstones (``deleted``) of
clusters merged away. A reader takes the base and applies the deltas in order, the last row of a cluster
winning (Delta Lake's and Iceberg's merge-on-read), so a day writes what it changed, not the gallery.

Columns: ``cluster_id`` int64, ``count`` int64, ``mean`` fixed-size list of float32, ``first_day``/``last_day``
date32, ``joinable`` bool, ``list_id`` int32 (the cluster's IVF list under the quantizer the snapshot names, -1
unlisted), optionally ``spill_id`` fixed-size list of int32 (further lists a centre far from every centroid is
stored in, -1 none; a reader that finds it missing or of mixed widths reads no spills) and, in deltas,
``deleted`` bool.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from daskcluster.gallery.layout import shard_file
from daskcluster.gallery.manifest import GalleryError, write_parquet_atomic
from daskcluster.gallery.store import gpath, read_table
from daskcluster.stages.centres import CentreTable, empty_shard

__all__ = ["SnapshotRef", "load_shard", "shard_rows", "write_delta", "write_shard"]


@dataclass(frozen=True)
class SnapshotRef:
    """A gallery state's centre tables: the base directory and the deltas on top of it, oldest first (all
    absolute paths); ``lists`` is the quantizer path the stored list ids refer to (None: unlisted)."""

    base: str | None
    deltas: tuple[str, ...] = ()
    lists: str | None = None
    delta_rows: int = 0  # rows in the deltas (the compaction rule's measure)
    base_rows: int = 0

    @classmethod
    def of(cls, root: str | Path, record) -> SnapshotRef:
        """The state a manifest or day record names (``snapshot``, ``deltas``, ``lists``), under ``root``."""
        if record is None or record.snapshot is None:
            return cls(None)
        return cls(
            str(gpath(root) / record.snapshot),
            tuple(str(gpath(root) / d) for d in record.deltas),
            record.lists,
            record.delta_rows,
            record.base_rows,
        )

    def dirs(self) -> list[str]:
        return [d for d in (self.base, *self.deltas) if d is not None]


def _read(path: Path) -> pa.Table:
    try:
        return read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise GalleryError(f"{path}: unreadable centre table ({exc})") from exc


def _column(t: pa.Table, name: str, default, dtype) -> np.ndarray:
    if name not in t.schema.names:
        return np.full(t.num_rows, default, dtype)
    return t.column(name).to_numpy(zero_copy_only=False).astype(dtype)


def _spill_width(tables: list[pa.Table]) -> int | None:
    """The width of the tables' ``spill_id`` column when every table has one of the same width, else None."""
    widths = {x.schema.field("spill_id").type.list_size if "spill_id" in x.schema.names else None for x in tables}
    return widths.pop() if len(widths) == 1 else None


def _merged(tables: list[pa.Table]) -> pa.Table:
    """Base and deltas applied in order: the last row of each cluster wins; tombstones drop the cluster."""
    cols = ["cluster_id", "count", "mean", "first_day", "last_day", "joinable", "list_id", "deleted"]
    spill = ["_spill"] if _spill_width(tables) else []
    t = pa.concat_tables(
        [
            x.select([c for c in cols if c in x.schema.names])
            .append_column("_joinable", [_column(x, "joinable", True, bool)])
            .append_column("_list", [_column(x, "list_id", -1, np.int32)])
            .append_column("_deleted", [_column(x, "deleted", False, bool)])
            .append_column("_spill", x.column("spill_id") if spill else pa.nulls(x.num_rows))
            .select(["cluster_id", "count", "mean", "first_day", "last_day", "_joinable", "_list", "_deleted", *spill])
            for x in tables
        ]
    )
    ids = t.column("cluster_id").to_numpy()
    _, last = np.unique(ids[::-1], return_index=True)  # ascending ids; the last occurrence of each
    keep = (len(ids) - 1 - last).astype(np.int64)
    keep = keep[~t.column("_deleted").to_numpy()[keep]]
    return t.take(pa.array(keep))


def shard_rows(snapshot: SnapshotRef, shard: int) -> pa.Table:
    """One shard's merged rows (columns as :func:`_merged` names them)."""
    tables = [_read(shard_file(d, shard)) for d in snapshot.dirs()]
    return tables[0] if len(tables) == 1 and "list_id" in tables[0].schema.names else _merged(tables)


def load_shard(snapshot: SnapshotRef | str | Path | None, shard: int, dim: int) -> CentreTable:
    """The shard's clusters from a snapshot (a :class:`SnapshotRef`, or a base directory); empty when there is
    no snapshot yet."""
    if snapshot is None:
        return empty_shard(shard, dim)
    if not isinstance(snapshot, SnapshotRef):
        snapshot = SnapshotRef(str(snapshot))
    if snapshot.base is None:
        return empty_shard(shard, dim)
    t = _merged([_read(shard_file(d, shard)) for d in snapshot.dirs()])
    mean = t.column("mean").combine_chunks().flatten().to_numpy().reshape(-1, dim)
    lists = t.column("_list").to_numpy().astype(np.int32)
    spill = None
    if "_spill" in t.schema.names and snapshot.lists is not None:
        width = t.schema.field("_spill").type.list_size
        spill = t.column("_spill").combine_chunks().flatten().to_numpy().reshape(-1, width).astype(np.int32)
    return CentreTable(
        shard,
        t.column("cluster_id").to_numpy(),
        t.column("count").to_numpy(),
        mean.astype(np.float32),
        t.column("first_day").to_numpy().astype("datetime64[D]"),
        t.column("last_day").to_numpy().astype("datetime64[D]"),
        t.column("_joinable").to_numpy(zero_copy_only=False).astype(bool),
        lists if snapshot.lists is not None else None,
        spill,
    )


def _table(shard: CentreTable, deleted: np.ndarray | None = None) -> pa.Table:
    d = shard.mean.shape[1]
    lists = shard.list_id if shard.list_id is not None else np.full(len(shard), -1, np.int32)
    columns = {
        "cluster_id": pa.array(shard.cluster_id, pa.int64()),
        "count": pa.array(shard.count, pa.int64()),
        "mean": pa.FixedSizeListArray.from_arrays(pa.array(shard.mean.ravel(), pa.float32()), d),
        "first_day": pa.array(shard.first_day, pa.date32()),
        "last_day": pa.array(shard.last_day, pa.date32()),
        "joinable": pa.array(shard.joinable, pa.bool_()),
        "list_id": pa.array(lists, pa.int32()),
    }
    if shard.spill_id is not None and shard.spill_id.shape[1]:
        width = shard.spill_id.shape[1]
        columns["spill_id"] = pa.FixedSizeListArray.from_arrays(pa.array(shard.spill_id.ravel(), pa.int32()), width)
    if deleted is not None:
        columns["deleted"] = pa.array(deleted, pa.bool_())
    return pa.table(columns)


def write_shard(shard: CentreTable, snapshot_dir: str | Path) -> int:
    """Write the shard's whole table into a base; returns its cluster count."""
    write_parquet_atomic(_table(shard), shard_file(snapshot_dir, shard.shard))
    return len(shard)


def write_delta(rows: CentreTable, deleted_ids: np.ndarray, delta_dir: str | Path) -> int:
    """Write the shard's changed ``rows`` and tombstones of ``deleted_ids`` into a delta; returns its rows."""
    dim = rows.mean.shape[1]
    n_del = len(deleted_ids)
    gone = CentreTable(
        rows.shard,
        np.asarray(deleted_ids, np.int64),
        np.zeros(n_del, np.int64),
        np.zeros((n_del, dim), np.float32),
        np.zeros(n_del, "datetime64[D]"),
        np.zeros(n_del, "datetime64[D]"),
        np.zeros(n_del, bool),
        np.full(n_del, -1, np.int32),
        None if rows.spill_id is None else np.full((n_del, rows.spill_id.shape[1]), -1, np.int32),
    )
    both = pa.concat_tables([_table(rows), _table(gone)])
    deleted = np.concatenate([np.zeros(len(rows), bool), np.ones(n_del, bool)])
    table = both.append_column("deleted", pa.array(deleted, pa.bool_()))
    write_parquet_atomic(table, shard_file(delta_dir, rows.shard))
    return table.num_rows
