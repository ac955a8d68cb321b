"""Centre tables on disk: one Parquet file per shard in a snapshot directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from daskcluster.gallery.layout import shard_file
from daskcluster.gallery.manifest import write_parquet_atomic
from daskcluster.stages.centres import CentreTable, empty_shard

__all__ = ["load_shard", "write_shard"]


def load_shard(snapshot_dir: str | Path | None, shard: int, dim: int) -> CentreTable:
    """The shard's clusters from a snapshot (empty when there is no snapshot yet)."""
    if snapshot_dir is None:
        return empty_shard(shard, dim)
    t = pq.read_table(shard_file(snapshot_dir, shard))
    mean = t.column("mean").combine_chunks().flatten().to_numpy().reshape(-1, dim)
    joinable = (
        t.column("joinable").to_numpy(zero_copy_only=False).astype(bool)
        if "joinable" in t.schema.names
        else np.ones(t.num_rows, bool)
    )
    return CentreTable(
        shard,
        t.column("cluster_id").to_numpy(),
        t.column("count").to_numpy(),
        mean.astype(np.float32),
        t.column("first_day").to_numpy().astype("datetime64[D]"),
        t.column("last_day").to_numpy().astype("datetime64[D]"),
        joinable,
    )


def write_shard(shard: CentreTable, snapshot_dir: str | Path) -> int:
    """Write the shard's table; returns its cluster count."""
    d = shard.mean.shape[1]
    table = pa.table(
        {
            "cluster_id": pa.array(shard.cluster_id, pa.int64()),
            "count": pa.array(shard.count, pa.int64()),
            "mean": pa.FixedSizeListArray.from_arrays(pa.array(shard.mean.ravel(), pa.float32()), d),
            "first_day": pa.array(shard.first_day, pa.date32()),
            "last_day": pa.array(shard.last_day, pa.date32()),
            "joinable": pa.array(shard.joinable, pa.bool_()),
        }
    )
    write_parquet_atomic(table, shard_file(snapshot_dir, shard.shard))
    return len(shard)
