"""Every query partition against every shard: one task per (partition, worker) that searches all the shards on
that worker and merges their top-k there, then the workers' lists merged per partition by a tree reduction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from daskcluster.search.shard import probe
from daskcluster.search.topk import merge_topk

__all__ = ["by_home", "search_all"]


def by_home(homes: list) -> list[tuple[Any, list[int]]]:
    """Positions grouped by where they live, ``(home, positions)``, groups in order of first appearance."""
    groups: dict[Any, list[int]] = {}
    for i, h in enumerate(homes):
        groups.setdefault(h, []).append(i)
    return list(groups.items())


def search_all(
    ex: Any, name: str, shards: list, queries: list, fn: Callable, k: int, coarse: tuple | None = None, **kw: Any
) -> list:
    """Per query partition, the top-``k`` of ``fn(shard, query, k, **kw)`` over every shard.

    Each ``<name>-search`` task runs on a worker with the shards held there: query partitions travel, shards
    never do, and only ``(similarity, id)`` top-k lists come back to be merged. Tasks: partitions x workers
    holding shards (plus the merge trees), whatever the number of shards. ``coarse``: ``(xq_fn, centroids,
    nprobe, backend, gap)``, to quantize each partition's queries ``xq_fn(query)`` once for every shard (``gap``,
    possibly a handle: see :func:`~daskcluster.backends.ivf.probe`)."""
    groups = [(h, [shards[i] for i in pos]) for h, pos in by_home(ex.homes(shards))]
    merged = []
    for q in queries:
        if coarse is not None:
            xq_fn, centroids, nprobe, backend, gap = coarse
            kw["coarse"] = ex.submit(f"{name}-probe", _probe, xq_fn, q, centroids, nprobe, backend, gap)
        per_home = [ex.submit_at(h, f"{name}-search", _search_group, fn, group, q, k, **kw) for h, group in groups]
        merged.append(ex.tree_reduce(f"{name}-merge", merge_topk, per_home, k))
    return merged


def _search_group(fn: Callable, shards: list, query: Any, k: int, **kw: Any) -> tuple:
    """The ``-search`` task: ``fn(shard, query, k, **kw)`` in each of ``shards``, merged as they come (only two
    top-k lists held at a time); the same lists as one task per shard merged later (``merge_topk``)."""
    best = fn(shards[0], query, k, **kw)
    for shard in shards[1:]:
        best = merge_topk([best, fn(shard, query, k, **kw)], k)
    return best


def _probe(xq_fn: Callable, query: Any, centroids: Any, nprobe: int, backend: str, gap: float | None) -> Any:
    return probe(xq_fn(query), centroids, nprobe, backend, gap)
