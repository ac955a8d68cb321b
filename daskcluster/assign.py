"""Assign stage: each face's best gallery centre; at or above ``assign.threshold`` the face joins it.

Decisions are taken against the centres as they were at the start of the day; the centres are then
updated once, at their owning shard, from per-cluster sums of the faces that joined them.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import ivf
from .ingest import Part
from .search import IndexSpec, Shard, build_shard, search_shard
from .shards import ClusterShard, ClusterSums, group_sums

ASSIGN_K = 2  # the runner-up is kept for the assignment margin guard


def gallery_search_shard(shard: ClusterShard, spec: IndexSpec, centroids: np.ndarray | None,
                         backend: str) -> Shard:
    """The searchable form of a gallery shard: its cluster centres, keyed by cluster id."""
    return build_shard(shard.cluster_id, shard.centres(), spec, centroids, backend)


def search_part(shard: Shard, part: Part, k: int, min_sim: float,
                probes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``assign-search`` task: top-k gallery clusters at or above ``min_sim`` (the assignment
    threshold: nothing below it can be chosen) of a partition's faces, in one shard."""
    return search_shard(shard, part.x, k, min_sim, probes)


def probe_part(part: Part, centroids: np.ndarray, nprobe: int) -> np.ndarray:
    """The ``assign-probe`` task: the IVF lists of a partition's faces, computed once for every shard."""
    return ivf.probe(centroids, part.x, nprobe)


def decide(part: Part, best: tuple[np.ndarray, np.ndarray], threshold: float) -> Part:
    """The ``assign-decide`` task: record the chosen cluster (-1: unassigned) and its similarity."""
    D, I = best
    sim = D[:, 0].astype(np.float32) if len(part) else np.empty(0, np.float32)
    cid = np.where((I[:, 0] >= 0) & (sim >= threshold), I[:, 0], -1) if len(part) else np.empty(0, np.int64)
    return replace(part, cluster_id=cid.astype(np.int64), similarity=np.where(np.isfinite(sim), sim, np.nan))


def unassigned_part(part: Part) -> Part:
    """A part with no decision: every face goes to step 2 (first day, empty gallery)."""
    n = len(part)
    return replace(part, cluster_id=np.full(n, -1, np.int64), similarity=np.full(n, np.nan, np.float32))


def assigned_sums(part: Part, n_shards: int) -> list[ClusterSums]:
    """The ``centre-sums`` task: per shard, sums and counts of the faces assigned to its clusters."""
    mask = part.cluster_id >= 0
    cid, x = part.cluster_id[mask], part.x[mask]
    owner = cid % n_shards
    return [group_sums(cid[owner == s], x[owner == s]) for s in range(n_shards)]
