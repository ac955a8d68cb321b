"""Every query partition against every shard: one task per (partition, worker) that searches all the shards on
that worker and merges their top-k there, then the workers' lists merged per partition by a tree reduction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from daskcluster.backends.candidates import Reverse, join_reverse
from daskcluster.search.shard import probe
from daskcluster.search.topk import merge_topk

__all__ = ["by_home", "probe_partition", "search_all", "search_both_ways"]


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
            kw["coarse"] = ex.submit(f"{name}-probe", probe_partition, xq_fn, q, centroids, nprobe, backend, gap)
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


def search_both_ways(
    ex: Any,
    name: str,
    shards: list,
    groups: list[range],
    queries: list,
    probes: list,
    offsets: list[int],
    fn: Callable,
    k: int,
    both_fn: Callable,
    **kw: Any,
) -> list:
    """The k-NN graph of the queries against themselves, searched both ways: per query partition, the top-``k``
    of its faces joined with what the searches of the other partitions found for them (``ivf.Both``).

    The shards hold the queries' own rows: shard ``g`` the partitions ``groups[g]``, whose ``probes`` tell
    ``both_fn(shard, probes, k, **kw)`` (one ``<name>-both`` task per shard, where it lives) what each row
    probes itself. Each ``<name>-search`` task ``fn(shard, query, k, coarse=, both=, offset=, **kw)`` returns
    the query partition's top-k and the reverse candidates of the shards' rows. The forward lists are merged
    per partition, the reverse ones per worker (trees over the partitions), and each partition's lists are
    joined with its rows' reverse candidates (``<name>-join``). Tasks: partitions x workers holding shards,
    twice, plus one per partition and one per shard: the same whatever the number of shards."""
    homes = ex.homes(shards)
    boths = [
        ex.submit_at(h, f"{name}-both", both_fn, s, [probes[i] for i in g], k, **kw)
        for s, g, h in zip(shards, groups, homes)
    ]
    on = [(h, [shards[i] for i in pos], [boths[i] for i in pos]) for h, pos in by_home(homes)]
    searches = [
        [
            ex.submit_at(h, f"{name}-search", _search_group_both, fn, ss, bs, q, k, coarse=p, offset=off, **kw)
            for h, ss, bs in on
        ]
        for q, p, off in zip(queries, probes, offsets)
    ]
    reverse = {
        h: ex.tree_reduce(f"{name}-reverse", _merge_reverse, [row[j] for row in searches], k)
        for j, (h, _, _) in enumerate(on)
    }
    home_of = {i: homes[g] for g, rng in enumerate(groups) for i in rng}
    return [
        ex.submit(
            f"{name}-join", _join, ex.tree_reduce(f"{name}-merge", _merge_forward, row, k), reverse[home_of[i]], off
        )
        for i, (row, off) in enumerate(zip(searches, offsets))
    ]


def _search_group_both(fn: Callable, shards: list, boths: list, query: Any, k: int, **kw: Any) -> tuple:
    """The ``-search`` task searched both ways: ``(D, I, Reverse)`` over the shards held on one worker."""
    out = [fn(s, query, k, both=b, **kw) for s, b in zip(shards, boths)]
    D, I = merge_topk([o[:2] for o in out], k)
    return D, I, Reverse.merge([o[2] for o in out if len(o) > 2], k)  # a shard with no rows has no reverse


def _merge_forward(results: list[tuple], k: int) -> tuple:
    """``-merge``: the forward top-k lists of one partition (search results or merged ones)."""
    return merge_topk([r[:2] for r in results], k)


def _merge_reverse(results: list, k: int) -> Any:
    """``-reverse``: the reverse candidates of one worker's rows from many query partitions."""
    return Reverse.merge([r[2] if isinstance(r, tuple) else r for r in results], k)


def _join(forward: tuple, reverse: Any, offset: int) -> tuple:
    """``-join``: a partition's top-k lists (rows numbered from ``offset``) with their reverse candidates."""
    if isinstance(reverse, tuple):  # a single partition: its search result itself
        reverse = reverse[2]
    return join_reverse(forward[0], forward[1], reverse, offset)


def probe_partition(xq_fn: Callable, query: Any, centroids: Any, nprobe: int, backend: str, gap: float | None) -> Any:
    """The ``-probe`` task: the lists the queries ``xq_fn(query)`` of one partition probe."""
    return probe(xq_fn(query), centroids, nprobe, backend, gap)
