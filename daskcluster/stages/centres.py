"""Centre tables: the clusters one gallery shard owns (``cluster_id % n_shards``), their counts and mean features.

A cluster's centre is the L2-normalised mean of its members' unit features. The mean itself is stored, so
that adding members is exact: ``mean' = (mean * count + sum) / (count + n)`` (:func:`add_members`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse


@dataclass
class CentreTable:
    shard: int
    cluster_id: np.ndarray  # (n,) int64, ascending
    count: np.ndarray  # (n,) int64
    mean: np.ndarray  # (n, d) float32
    first_day: np.ndarray  # (n,) datetime64[D]
    last_day: np.ndarray  # (n,) datetime64[D]
    joinable: np.ndarray  # (n,) bool: False for a low-quality singleton, which no face may join
    list_id: np.ndarray | None = (
        None  # (n,) int32: each centre's IVF list under the gallery's quantizer; None: unlisted
    )
    spill_id: np.ndarray | None = None  # (n, s) int32: further lists a far centre is stored in (-1: none)

    def __len__(self) -> int:
        return len(self.cluster_id)

    def centres(self) -> np.ndarray:
        norms = np.linalg.norm(self.mean, axis=1, keepdims=True)
        return (self.mean / np.maximum(norms, 1e-12)).astype(np.float32)

    def positions(self, cluster_id: np.ndarray, what: str) -> np.ndarray:
        """Rows of ``cluster_id`` (ascending ids) in this table; ``ValueError`` naming ``what`` when the table
        does not own them all."""
        pos = np.searchsorted(self.cluster_id, cluster_id)
        if len(pos) and not np.array_equal(self.cluster_id[np.minimum(pos, len(self) - 1)], cluster_id):
            raise ValueError(f"shard {self.shard}: {what} clusters it does not own")
        return pos

    def __sizeof__(self) -> int:
        return int(
            self.cluster_id.nbytes
            + self.count.nbytes
            + self.mean.nbytes
            + self.first_day.nbytes
            + self.last_day.nbytes
            + self.joinable.nbytes
            + (0 if self.list_id is None else self.list_id.nbytes)
            + (0 if self.spill_id is None else self.spill_id.nbytes)
        )

    def take(self, rows: np.ndarray) -> CentreTable:
        """The table's rows ``rows`` (positions or a mask), in order."""
        lists = None if self.list_id is None else self.list_id[rows]
        spill = None if self.spill_id is None else self.spill_id[rows]
        return CentreTable(
            self.shard,
            self.cluster_id[rows],
            self.count[rows],
            self.mean[rows],
            self.first_day[rows],
            self.last_day[rows],
            self.joinable[rows],
            lists,
            spill,
        )


def empty_shard(shard: int, dim: int) -> CentreTable:
    return CentreTable(
        shard,
        np.empty(0, np.int64),
        np.empty(0, np.int64),
        np.empty((0, dim), np.float32),
        np.empty(0, "datetime64[D]"),
        np.empty(0, "datetime64[D]"),
        np.empty(0, bool),
    )


@dataclass
class ClusterSums:
    """Per-cluster sums of unit features and counts, for one shard's clusters."""

    cluster_id: np.ndarray  # (m,) int64, unique ascending
    sums: np.ndarray  # (m, d) float64
    count: np.ndarray  # (m,) int64
    joinable: np.ndarray | None = None  # (m,) bool for new clusters (None: all joinable)

    def joinable_mask(self) -> np.ndarray:
        return np.ones(len(self.cluster_id), bool) if self.joinable is None else self.joinable

    def __sizeof__(self) -> int:
        return int(self.cluster_id.nbytes + self.sums.nbytes + self.count.nbytes)


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
    onehot = scipy.sparse.csr_matrix(
        (np.ones(len(group)), (group, np.arange(len(group)))), shape=(n_groups, len(group))
    )
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


def add_members(mean: np.ndarray, count: np.ndarray, pos: np.ndarray, sums: np.ndarray, n: np.ndarray) -> None:
    """Add members (their feature ``sums`` and counts ``n``) to the clusters at rows ``pos``, in place: float64
    ``mean`` and int64 ``count``."""
    mean[pos] = (mean[pos] * count[pos, None] + sums) / (count[pos] + n)[:, None]
    count[pos] += n


def update_shard(shard: CentreTable, existing: ClusterSums, new: ClusterSums, day: str) -> CentreTable:
    """Add the day's members to existing clusters and append the day's new clusters (their list ids, and
    those of the clusters that moved, are the caller's to set: -1 here)."""
    pos = shard.positions(existing.cluster_id, "update for")
    count, mean = shard.count.copy(), shard.mean.astype(np.float64)
    add_members(mean, count, pos, existing.sums, existing.count)
    last = shard.last_day.copy()
    last[pos] = np.datetime64(day, "D")
    today = np.full(len(new.cluster_id), np.datetime64(day, "D"))
    new_mean = new.sums / np.maximum(new.count, 1)[:, None]
    return replace(
        shard,
        cluster_id=np.concatenate([shard.cluster_id, new.cluster_id]),
        count=np.concatenate([count, new.count]),
        mean=np.concatenate([mean, new_mean]).astype(np.float32),
        first_day=np.concatenate([shard.first_day, today]),
        last_day=np.concatenate([last, today]),
        joinable=np.concatenate([shard.joinable, new.joinable_mask()]),
        list_id=None
        if shard.list_id is None
        else np.concatenate([shard.list_id, np.full(len(new.cluster_id), -1, np.int32)]),
        spill_id=None
        if shard.spill_id is None
        else np.concatenate([shard.spill_id, np.full((len(new.cluster_id), shard.spill_id.shape[1]), -1, np.int32)]),
    )
