"""Assign stage: each face's best gallery centre; at or above ``assign.threshold`` the face joins it.

Decisions are taken against the centres as they were at the start of the day; the centres are then
updated once, at their owning shard, from per-cluster sums of the faces that joined them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from daskcluster.backends import get_backend
from daskcluster.config import AssignConfig
from daskcluster.search import IndexShard, IndexSpec, build_shard, gallery_lists, search_shard
from daskcluster.stages.centres import CentreTable, ClusterSums, group_sums
from daskcluster.stages.ingest import Part

ASSIGN_K = 2  # the runner-up is kept for the assignment margin guard


def gallery_search_shard(
    shard: CentreTable,
    spec: IndexSpec,
    centroids: np.ndarray | None,
    backend: str,
    max_size: int = 0,
    stored_lists: bool = False,
    spill: tuple[int, float] = (0, 0.0),
) -> IndexShard:
    """The searchable form of a gallery shard: the centres of its joinable clusters, keyed by cluster id.
    A low-quality singleton is a cluster no face may join, and so is a cluster that has reached
    ``cluster.max_size`` faces (the chaining guard's bound holds across days too: a cluster grows past it
    by at most one day's faces). ``stored_lists``: the shard's list ids are under ``centroids``, so no centre
    is quantized. ``spill``: ``(search.spill, search.spill_below)``; on a backend that spills, a centre far
    from every centroid is also stored in its next lists (the stored ones, else quantized here)."""
    ok = shard.joinable & ((shard.count < max_size) if max_size else True)
    x = shard.centres()[ok]
    lists = shard.list_id[ok].astype(np.int64) if stored_lists and shard.list_id is not None else None
    extra, below = spill
    if extra and centroids is not None and not spec.is_flat and get_backend(backend).spills:
        if lists is not None and shard.spill_id is not None:
            lists = np.column_stack([lists, shard.spill_id[ok]])
        else:
            own, more = gallery_lists(centroids, x, backend, extra, below)
            lists = np.column_stack([own if lists is None else lists, more])
    return build_shard(shard.cluster_id[ok], x, spec, centroids, backend, lists)


def search_part(
    shard: IndexShard, part: Part, k: int, min_sim: float, coarse: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``assign-search`` task: top-k gallery clusters at or above ``min_sim`` (the assignment
    threshold: nothing below it can be chosen) of a partition's faces, in one shard."""
    return search_shard(shard, part.x, k, min_sim, coarse)


def queries(part: Part) -> np.ndarray:
    """The features the assignment searches: every face of the partition."""
    return part.x


def decide(part: Part, best: tuple[np.ndarray, np.ndarray], cfg: AssignConfig, join_low: float) -> Part:
    """The ``assign-decide`` task: record the chosen cluster (-1: unassigned) and its similarity.

    A face joins its best cluster at ``assign.threshold``, a low-quality face only at ``join_low``. With
    ``assign.margin``, a face whose two best clusters both pass the threshold within the margin of each
    other is ambiguous (two look-alikes, or one person split in two): it goes to step 2 instead, where a
    wrong join cannot pull a centre away from its identity."""
    D, I = best
    n = len(part)
    if n == 0:
        return replace(
            part, cluster_id=np.empty(0, np.int64), similarity=np.empty(0, np.float32), ambiguous=np.empty(0, bool)
        )
    sim = D[:, 0].astype(np.float32)
    ok = (I[:, 0] >= 0) & (sim >= cfg.threshold)
    ok &= ~part.low_quality | (sim >= join_low)
    ambiguous = np.zeros(n, bool)
    if cfg.margin > 0 and I.shape[1] > 1:
        second = np.where(I[:, 1] >= 0, D[:, 1], -np.inf)
        ambiguous = ok & (second >= cfg.threshold) & (sim - np.maximum(second, -1.0) < cfg.margin)
        ok &= ~ambiguous
    cid = np.where(ok, I[:, 0], -1).astype(np.int64)
    return replace(
        part, cluster_id=cid, similarity=np.where(np.isfinite(sim), sim, np.nan).astype(np.float32), ambiguous=ambiguous
    )


def unassigned_part(part: Part) -> Part:
    """A part with no decision: every face goes to step 2 (first day, empty gallery)."""
    n = len(part)
    return replace(part, cluster_id=np.full(n, -1, np.int64), similarity=np.full(n, np.nan, np.float32))


def assigned_sums(part: Part, n_shards: int) -> list[ClusterSums]:
    """The ``centre-sums`` task: per shard, sums and counts of the faces assigned to its clusters.

    A low-quality face is counted as a member with a zero vector: a cluster's mean is ``sum / count``, so it
    changes the mean's length but never its direction, which is the centre (now and after any later update,
    since the sum of the members' vectors is what the mean keeps)."""
    mask = part.cluster_id >= 0
    cid = part.cluster_id[mask]
    x = part.x[mask] * (~part.low_quality[mask])[:, None].astype(np.float32)
    owner = cid % n_shards
    return [group_sums(cid[owner == s], x[owner == s]) for s in range(n_shards)]
