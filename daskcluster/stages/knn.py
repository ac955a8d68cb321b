"""Step 2's k-NN graph among the unassigned faces: every partition's unassigned faces become a shard,
every partition is searched against every shard, and edges at or above ``cluster.threshold`` are kept.

Vertices are numbered by position in input order among the unassigned faces (partition offset + row).
Low-quality faces are vertices too (each becomes a singleton) but are neither indexed nor searched.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from daskcluster.backends.candidates import Reverse
from daskcluster.search import IndexShard, IndexSpec, build_shard, sample_rows, search_shard
from daskcluster.search.shard import shard_both_ways
from daskcluster.stages.ingest import Part


def graph_shard(
    parts: list[Part], offset: int, spec: IndexSpec, centroids: np.ndarray | None, backend: str
) -> IndexShard:
    """The ``knn-build`` task: index the unassigned faces of consecutive partitions under their vertex
    numbers (``offset`` is the first partition's)."""
    x = np.concatenate([p.x[p.searchable] for p in parts])
    mask = np.concatenate([p.searchable for p in parts])
    vertex = np.arange(offset, offset + len(mask), dtype=np.int64)[mask]
    return build_shard(vertex, x, spec, centroids, backend)


def group_partitions(sizes: list[int], n_groups: int) -> list[range]:
    """Consecutive partitions in ``n_groups`` groups of about equal row counts (a shard each)."""
    n_groups = max(1, min(n_groups, len(sizes)))
    cum = np.cumsum([0, *sizes])
    targets = np.linspace(0, cum[-1], n_groups + 1)[1:-1]
    cuts = np.abs(cum[None, :] - targets[:, None]).argmin(axis=1)
    bounds = sorted({0, *np.clip(cuts, 1, len(sizes) - 1).tolist(), len(sizes)}) if len(sizes) > 1 else [0, 1]
    return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def graph_sample(part: Part, n_max: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``knn-sample`` task: the partition's share of the quantizer training sample."""
    mask = part.searchable
    return sample_rows(part.ids[mask], part.x[mask], n_max)


def queries(part: Part) -> np.ndarray:
    """The features step 2 searches: the partition's searchable (unassigned, not low-quality) faces."""
    return part.x[part.searchable]


def graph_both(shard: IndexShard, probes: list, k: int, min_sim: float) -> Any:
    """The ``knn-both`` task: what searching the graph both ways needs of a shard's rows (``probes``: the
    ``knn-probe`` results of its partitions, in order); None where the backend cannot."""
    return shard_both_ways(shard, probes, k, min_sim)


def knn_search(
    shard: IndexShard, part: Part, k: int, min_sim: float, coarse: Any = None, both: Any = None, offset: int = 0
) -> tuple:
    """The ``knn-search`` task: top-k neighbours at or above ``min_sim`` of the unassigned faces in one shard
    (callers ask for ``cluster.k + 1``: a face finds itself). Only those can become edges. Rows of
    low-quality faces stay empty. With ``both`` (the shard's :func:`graph_both`), also the reverse candidates
    of the shard's faces among this partition's (numbered from ``offset``), ``(D, I, Reverse)``."""
    mask = part.searchable
    if both is not None:
        D, I, rev = search_shard(shard, part.x[mask], k, min_sim, coarse, both)
        rev = Reverse(rev.row, offset + np.flatnonzero(mask)[rev.nb], rev.s)
    else:
        D, I = search_shard(shard, part.x[mask], k, min_sim, coarse)
        rev = None
    if not mask.all():
        D_all = np.full((len(mask), k), -np.inf, np.float32)
        I_all = np.full((len(mask), k), -1, np.int64)
        D_all[mask], I_all[mask] = D, I
        D, I = D_all, I_all
    return (D, I) if rev is None else (D, I, rev)
