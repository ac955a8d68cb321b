"""Gallery shards: the clusters one shard owns (``cluster_id % n_shards``), their counts and mean features.

A cluster's centre is the L2-normalised mean of its members' unit features. The mean itself is stored, so
that adding members is exact: ``mean' = (mean * count + sum) / (count + n)``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse

from daskcluster.gallery.manifest import write_parquet_atomic


@dataclass
class ClusterShard:
    shard: int
    cluster_id: np.ndarray   # (n,) int64, ascending
    count: np.ndarray        # (n,) int64
    mean: np.ndarray         # (n, d) float32
    first_day: np.ndarray    # (n,) datetime64[D]
    last_day: np.ndarray     # (n,) datetime64[D]
    joinable: np.ndarray     # (n,) bool: False for a low-quality singleton, which no face may join

    def __len__(self) -> int:
        return len(self.cluster_id)

    def centres(self) -> np.ndarray:
        norms = np.linalg.norm(self.mean, axis=1, keepdims=True)
        return (self.mean / np.maximum(norms, 1e-12)).astype(np.float32)


def empty_shard(shard: int, dim: int) -> ClusterShard:
    return ClusterShard(shard, np.empty(0, np.int64), np.empty(0, np.int64), np.empty((0, dim), np.float32),
                        np.empty(0, "datetime64[D]"), np.empty(0, "datetime64[D]"), np.empty(0, bool))


def shard_path(snapshot_dir: Path, shard: int) -> Path:
    return snapshot_dir / f"shard-{shard:05d}.parquet"


def load_shard(snapshot_dir: str | Path | None, shard: int, dim: int) -> ClusterShard:
    """The shard's clusters from a snapshot (empty when there is no snapshot yet)."""
    if snapshot_dir is None:
        return empty_shard(shard, dim)
    t = pq.read_table(shard_path(Path(snapshot_dir), shard))
    mean = t.column("mean").combine_chunks().flatten().to_numpy().reshape(-1, dim)
    joinable = (t.column("joinable").to_numpy(zero_copy_only=False).astype(bool) if "joinable" in t.schema.names
                else np.ones(t.num_rows, bool))
    return ClusterShard(shard, t.column("cluster_id").to_numpy(), t.column("count").to_numpy(),
                        mean.astype(np.float32), t.column("first_day").to_numpy().astype("datetime64[D]"),
                        t.column("last_day").to_numpy().astype("datetime64[D]"), joinable)


def write_shard(shard: ClusterShard, snapshot_dir: str | Path) -> int:
    """Write the shard's table; returns its cluster count."""
    d = shard.mean.shape[1]
    table = pa.table({
        "cluster_id": pa.array(shard.cluster_id, pa.int64()),
        "count": pa.array(shard.count, pa.int64()),
        "mean": pa.FixedSizeListArray.from_arrays(pa.array(shard.mean.ravel(), pa.float32()), d),
        "first_day": pa.array(shard.first_day, pa.date32()),
        "last_day": pa.array(shard.last_day, pa.date32()),
        "joinable": pa.array(shard.joinable, pa.bool_()),
    })
    write_parquet_atomic(table, shard_path(Path(snapshot_dir), shard.shard))
    return len(shard)


@dataclass
class ClusterSums:
    """Per-cluster sums of unit features and counts, for one shard's clusters."""

    cluster_id: np.ndarray  # (m,) int64, unique ascending
    sums: np.ndarray        # (m, d) float64
    count: np.ndarray       # (m,) int64
    joinable: np.ndarray | None = None  # (m,) bool for new clusters (None: all joinable)

    def joinable_mask(self) -> np.ndarray:
        return np.ones(len(self.cluster_id), bool) if self.joinable is None else self.joinable


def group_sums(cluster_id: np.ndarray, x: np.ndarray, joinable: np.ndarray | None = None) -> ClusterSums:
    """Sum ``x`` rows by ``cluster_id`` (a sparse one-hot product, no Python loop); a cluster is joinable
    when all its rows are (``joinable`` is per row)."""
    ids, inverse, counts = np.unique(cluster_id, return_inverse=True, return_counts=True)
    ok = None
    if joinable is not None:
        ok = np.ones(len(ids), bool)
        np.logical_and.at(ok, inverse, joinable)
    return ClusterSums(ids.astype(np.int64), _sum_rows(inverse, len(ids), x), counts.astype(np.int64), ok)


def _sum_rows(group: np.ndarray, n_groups: int, x: np.ndarray) -> np.ndarray:
    onehot = scipy.sparse.csr_matrix((np.ones(len(group)), (group, np.arange(len(group)))),
                                     shape=(n_groups, len(group)))
    return np.asarray(onehot @ x.astype(np.float64))


def reduce_sums(parts: list[ClusterSums], dim: int) -> ClusterSums:
    parts = [p for p in parts if len(p.cluster_id)]
    if not parts:
        return ClusterSums(np.empty(0, np.int64), np.empty((0, dim)), np.empty(0, np.int64))
    ids = np.concatenate([p.cluster_id for p in parts])
    uniq, inverse = np.unique(ids, return_inverse=True)
    sums = _sum_rows(inverse, len(uniq), np.concatenate([p.sums for p in parts]))
    counts = np.bincount(inverse, weights=np.concatenate([p.count for p in parts]), minlength=len(uniq))
    ok = np.ones(len(uniq), bool)
    np.logical_and.at(ok, inverse, np.concatenate([p.joinable_mask() for p in parts]))
    return ClusterSums(uniq, sums, counts.astype(np.int64), ok)


def update_shard(shard: ClusterShard, existing: ClusterSums, new: ClusterSums, day: str) -> ClusterShard:
    """Add the day's members to existing clusters and append the day's new clusters."""
    pos = np.searchsorted(shard.cluster_id, existing.cluster_id)
    if len(pos) and not np.array_equal(shard.cluster_id[np.minimum(pos, len(shard) - 1)], existing.cluster_id):
        raise ValueError(f"shard {shard.shard}: update for clusters it does not own")
    count = shard.count.copy()
    mean = shard.mean.astype(np.float64)
    mean[pos] = (mean[pos] * count[pos, None] + existing.sums) / (count[pos] + existing.count)[:, None]
    count[pos] += existing.count
    last = shard.last_day.copy()
    last[pos] = np.datetime64(day, "D")
    today = np.full(len(new.cluster_id), np.datetime64(day, "D"))
    new_mean = new.sums / np.maximum(new.count, 1)[:, None]
    return replace(
        shard, cluster_id=np.concatenate([shard.cluster_id, new.cluster_id]),
        count=np.concatenate([count, new.count]),
        mean=np.concatenate([mean, new_mean]).astype(np.float32),
        first_day=np.concatenate([shard.first_day, today]), last_day=np.concatenate([last, today]),
        joinable=np.concatenate([shard.joinable, new.joinable_mask()]))
