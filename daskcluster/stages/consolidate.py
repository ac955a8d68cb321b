"""Cross-day consolidation, the array side: the merge rule and the tasks that apply it (orchestrated by
:mod:`daskcluster.run.consolidate`).

Merging gallery clusters that are one person split across days.

Why: a face joins a cluster only when it is close to the cluster's centre as it was at the start of the day.
A person seen from a new angle, camera or light on a later day can miss his cluster and seed a second one,
which then grows on its own. Consolidation compares the clusters' centres with each other and merges such
pairs. It never rewrites a day's assignments: the merges go to a cumulative lineage table that readers follow
(:mod:`daskcluster.lineage`), so ``export`` and ``eval`` see one id per merged cluster.

The merge rule (every similarity is the cosine similarity of two clusters' unit centres):

1. Eligible clusters: joinable (a low-quality singleton never merges) and at least ``consolidate.min_count``
   faces.
2. Candidates: each eligible cluster's ``consolidate.k`` most similar eligible centres (a k-NN search on the
   workers: every shard's centres against every shard), kept when both

   * ``sim >= consolidate.threshold + 0.1 / sqrt(n_min)``, ``n_min`` the smaller cluster's face count. This is
     the size-aware margin: the centre of n faces is the mean of n noisy unit vectors, its direction errs by
     ~1/sqrt(n) of the face noise, so a small cluster's centre can come close to a stranger's by chance. A pair
     whose smaller side has 2 faces needs +0.071, 25 faces +0.02, 100 faces +0.01;
   * ``n_a + n_b <= cluster.max_size`` when that is set (a merge must not build what step 2 would re-cut).
3. Mutual best: a cluster's best candidate is its most similar one (ties to the smaller id), and a pair merges
   only when each is the other's best. The merging pairs are then a matching: no cluster takes part in two
   merges of one round, so no chain A-B-C (each link plausible, the ends strangers) can form, and the result
   depends neither on the order of the merges nor on the sharding. ``rounds`` repeats 1-3 on the merged centres;
   each round can extend a merge by one more link, which must again be a mutual best.
4. The survivor is the smaller (older) id; its mean becomes the count-weighted mean of the two means, its count
   the sum, its first and last day the earlier and the later. The update runs at the owning shards
   (``cluster_id % n_shards``): an absorbed cluster's sums travel to its survivor's shard as a task result.

Durability is a day's: a new snapshot version (every shard) and the cumulative lineage are written, then the
manifest is swapped; on any failure what was written is removed and the gallery is unchanged. With nothing to
merge nothing is written. The driver holds futures and the candidate pairs (one row per eligible cluster at
most), never the centres.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from daskcluster.search import IndexShard, IndexSpec, build_shard, sample_rows, search_shard
from daskcluster.stages.centres import CentreTable, add_members

__all__ = [
    "SIZE_MARGIN",
    "Candidates",
    "CentreIndex",
    "Centres",
    "Merges",
    "Moved",
    "absorb",
    "best_candidates",
    "centre_index",
    "centre_sample",
    "concat_candidates",
    "eligible_centres",
    "mutual_best",
    "search_centres",
    "size_aware_threshold",
    "take_absorbed",
]

SIZE_MARGIN = 0.1  # similarity added to consolidate.threshold for a pair whose smaller cluster has one face


@dataclass
class Centres:
    """One shard's eligible clusters: the queries, and the database, of the centre search."""

    ids: np.ndarray  # (n,) int64, ascending
    xq: np.ndarray  # (n, d) float32 unit centres
    count: np.ndarray  # (n,) int64 faces

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Candidates:
    """Each query cluster ``a``'s best candidate ``b`` (clusters without one are left out)."""

    a: np.ndarray
    b: np.ndarray
    sim: np.ndarray
    n_a: np.ndarray
    n_b: np.ndarray


@dataclass
class Merges:
    """One round's merges: ``absorbed[i]`` goes into ``survivor[i]`` (the smaller id)."""

    survivor: np.ndarray
    absorbed: np.ndarray
    similarity: np.ndarray

    def __len__(self) -> int:
        return len(self.absorbed)


@dataclass
class Moved:
    """Absorbed clusters on their way to their survivors' shard, as sums (mean * count)."""

    survivor: np.ndarray
    count: np.ndarray
    sums: np.ndarray  # (m, d) float64
    first_day: np.ndarray
    last_day: np.ndarray


def eligible_centres(table: CentreTable, min_count: int) -> Centres:
    """The ``consolidate-eligible`` task: the shard's joinable clusters of at least ``min_count`` faces."""
    keep = table.joinable & (table.count >= min_count)
    return Centres(table.cluster_id[keep], table.centres()[keep], table.count[keep])


@dataclass
class CentreIndex:
    """One shard's eligible centres, searchable, with their face counts (which the size rules need)."""

    shard: IndexShard
    count: np.ndarray  # (n,) int64, in the order of ``shard.ids`` (ascending)

    def __sizeof__(self) -> int:
        return self.shard.__sizeof__() + int(self.count.nbytes)


def centre_index(centres: Centres, spec: IndexSpec, centroids: np.ndarray | None, backend: str) -> CentreIndex:
    """The ``consolidate-index`` task: the searchable form of one shard's eligible centres."""
    return CentreIndex(build_shard(centres.ids, centres.xq, spec, centroids, backend), centres.count)


def search_centres(index: CentreIndex, queries: Centres, k: int, min_sim: float) -> tuple:
    """The ``consolidate-search`` task: top-k of ``queries`` in one shard (similarity >= ``min_sim``), with the
    neighbours' face counts: ``(D, I, N)``."""
    D, I = search_shard(index.shard, queries.xq, k, min_sim)
    ids = index.shard.ids
    if not len(ids):
        return D, I, np.zeros_like(I)
    pos = np.minimum(np.searchsorted(ids, I), len(ids) - 1)
    return D, I, np.where(I >= 0, index.count[pos], 0)


def size_aware_threshold(threshold: float, n_min: np.ndarray) -> np.ndarray:
    """The similarity a pair needs when its smaller cluster has ``n_min`` faces (see the module docstring)."""
    return threshold + SIZE_MARGIN / np.sqrt(np.maximum(n_min, 1))


def best_candidates(queries: Centres, topk: tuple, k: int, threshold: float, max_size: int) -> Candidates:
    """The ``consolidate-best`` task: each query's most similar neighbour among its ``k`` nearest others that
    passes the size-aware threshold and the size cap."""
    D, I, N = topk
    other = (I >= 0) & (I != queries.ids[:, None])
    n_a = queries.count[:, None]
    ok = other & (np.cumsum(other, axis=1) <= k) & (D >= size_aware_threshold(threshold, np.minimum(n_a, N)))
    if max_size > 0:
        ok &= n_a + N <= max_size
    rows = np.flatnonzero(ok.any(axis=1))
    j = ok[rows].argmax(axis=1)
    return Candidates(queries.ids[rows], I[rows, j], D[rows, j], queries.count[rows], N[rows, j])


def take_absorbed(table: CentreTable, merges: Merges, n_shards: int) -> list[Moved]:
    """The ``consolidate-take`` task: the shard's absorbed clusters as sums, one list entry per target shard."""
    mine = merges.absorbed % n_shards == table.shard
    pos = table.positions(merges.absorbed[mine], "asked to give away")
    survivor, count = merges.survivor[mine], table.count[pos]
    sums = table.mean[pos].astype(np.float64) * count[:, None]
    to = survivor % n_shards
    return [
        Moved(
            survivor[to == s],
            count[to == s],
            sums[to == s],
            table.first_day[pos][to == s],
            table.last_day[pos][to == s],
        )
        for s in range(n_shards)
    ]


def absorb(table: CentreTable, moved: list[Moved], merges: Merges) -> CentreTable:
    """The ``consolidate-absorb`` task: add the moved clusters to their survivors, drop the shard's absorbed."""
    survivor = np.concatenate([m.survivor for m in moved])
    pos = table.positions(survivor, "merges into")
    if len(np.unique(pos)) < len(pos):
        raise ValueError(f"shard {table.shard}: merges twice into one cluster")
    count, mean = table.count.copy(), table.mean.astype(np.float64)
    first, last = table.first_day.copy(), table.last_day.copy()
    add_members(mean, count, pos, np.concatenate([m.sums for m in moved]), np.concatenate([m.count for m in moved]))
    first[pos] = np.minimum(first[pos], np.concatenate([m.first_day for m in moved]))
    last[pos] = np.maximum(last[pos], np.concatenate([m.last_day for m in moved]))
    keep = ~np.isin(table.cluster_id, merges.absorbed)
    return dataclasses.replace(
        table,
        cluster_id=table.cluster_id[keep],
        count=count[keep],
        mean=mean[keep].astype(np.float32),
        first_day=first[keep],
        last_day=last[keep],
        joinable=table.joinable[keep],
        list_id=None,  # survivors moved: the next day re-lists (and re-spills) the table
        spill_id=None,
    )


def centre_sample(centres: Centres, n_max: int) -> tuple:
    """The ``consolidate-sample`` task: the shard's share of the quantizer training sample."""
    return sample_rows(centres.ids, centres.xq, n_max)


def mutual_best(c: Candidates) -> Merges:
    """The pairs that are each other's best candidate, once each (survivor = the smaller id); the pair's
    similarity is the smaller of its two directions."""
    order = np.argsort(c.a, kind="stable")
    a, b, sim = c.a[order], c.b[order], c.sim[order]
    pos = np.minimum(np.searchsorted(a, b), max(len(a) - 1, 0))
    mutual = (a[pos] == b) & (b[pos] == a) & (a < b) if len(a) else np.zeros(0, bool)
    return Merges(a[mutual], b[mutual], np.minimum(sim[mutual], sim[pos[mutual]]).astype(np.float32))


def concat_candidates(cands: list[Candidates]) -> Candidates:
    return Candidates(*(np.concatenate([getattr(c, f.name) for c in cands]) for f in dataclasses.fields(Candidates)))
