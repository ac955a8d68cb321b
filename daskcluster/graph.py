"""Step 2's k-NN graph among the unassigned faces: every partition's unassigned faces become a shard,
every partition is searched against every shard, and edges at or above ``cluster.threshold`` are kept.

Vertices are numbered by position in input order among the unassigned faces (partition offset + row).
"""
from __future__ import annotations

import numpy as np

from . import ivf
from .ingest import Part
from .search import IndexSpec, Shard, build_shard, sample_rows, search_shard


def graph_shard(parts: list[Part], offset: int, spec: IndexSpec, centroids: np.ndarray | None,
                backend: str) -> Shard:
    """The ``knn-build`` task: index the unassigned faces of consecutive partitions under their vertex
    numbers (``offset`` is the first partition's)."""
    x = np.concatenate([p.x[p.unassigned] for p in parts])
    return build_shard(np.arange(offset, offset + len(x), dtype=np.int64), x, spec, centroids, backend)


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
    mask = part.unassigned
    return sample_rows(part.ids[mask], part.x[mask], n_max)


def probe_part(part: Part, centroids: np.ndarray, nprobe: int) -> np.ndarray:
    """The ``knn-probe`` task: the IVF lists of a partition's unassigned faces, once for every shard."""
    return ivf.probe(centroids, part.x[part.unassigned], nprobe)


def knn_search(shard: Shard, part: Part, k: int, min_sim: float,
               probes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``knn-search`` task: top-k neighbours at or above ``min_sim`` of the unassigned faces in one shard
    (callers ask for ``cluster.k + 1``: a face finds itself). Only those can become edges."""
    return search_shard(shard, part.x[part.unassigned], k, min_sim, probes)


def edges(best: tuple[np.ndarray, np.ndarray], offset: int, threshold: float) -> np.ndarray:
    """The ``edges`` task: ``(src, dst, sim)`` rows with ``src < dst`` and ``sim >= threshold``.

    Returned as a structured array; an edge found from both ends appears once per end (harmless for the
    components; ``knn_edges`` in the summary counts these directed rows).
    """
    D, I = best
    src = np.repeat(np.arange(offset, offset + len(D), dtype=np.int64), D.shape[1] if len(D) else 0)
    dst, sim = I.ravel(), D.ravel()
    keep = (dst >= 0) & (dst != src) & (sim >= threshold)
    src, dst, sim = src[keep], dst[keep], sim[keep]
    out = np.empty(len(src), dtype=[("src", np.int64), ("dst", np.int64), ("sim", np.float32)])
    out["src"], out["dst"], out["sim"] = np.minimum(src, dst), np.maximum(src, dst), sim
    return out
