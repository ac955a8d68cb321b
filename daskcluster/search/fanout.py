"""Every query partition against every shard, merged per partition by a tree reduction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from daskcluster.search.shard import probe
from daskcluster.search.topk import merge_topk

__all__ = ["search_all"]


def search_all(
    ex: Any, name: str, shards: list, queries: list, fn: Callable, k: int, coarse: tuple | None = None, **kw: Any
) -> list:
    """Per query partition, the top-``k`` of ``fn(shard, query, k, **kw)`` over every shard.

    Each search runs on the worker holding its shard: query partitions travel, shards never do, and only
    ``(similarity, id)`` top-k lists come back to be merged. ``coarse``: ``(xq_fn, centroids, nprobe,
    backend)``, to quantize each partition's queries ``xq_fn(query)`` once for every shard."""
    homes = ex.homes(shards)
    merged = []
    for q in queries:
        if coarse is not None:
            xq_fn, centroids, nprobe, backend = coarse
            kw["coarse"] = ex.submit(f"{name}-probe", _probe, xq_fn, q, centroids, nprobe, backend)
        per_shard = [ex.submit_at(h, f"{name}-search", fn, s, q, k, **kw) for s, h in zip(shards, homes)]
        merged.append(ex.tree_reduce(f"{name}-merge", merge_topk, per_shard, k))
    return merged


def _probe(xq_fn: Callable, query: Any, centroids: Any, nprobe: int, backend: str) -> Any:
    return probe(xq_fn(query), centroids, nprobe, backend)
