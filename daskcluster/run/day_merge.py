"""Step 3 of a day on the executor: centre updates and new clusters at their owning shards, then the day's
centre rows, assignments and quarantine written (nothing is committed until the manifest swap).

The sums of a day's faces travel to the worker that holds their shard: one pick per (partition, worker) and a
tree reduction per worker, so the tasks follow partitions x workers, never partitions x shards. A day writes a
*delta* of the rows it changed (clusters that gained members, new clusters); a full *base* when the gallery
has none yet, when its IVF quantizer changed today (every cluster is then re-listed), or when the deltas
would outgrow ``gallery.compact_fraction`` of the base (the day compacts: it holds every shard already).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from daskcluster.gallery import outputs
from daskcluster.gallery.manifest import load_npy
from daskcluster.gallery.tables import write_delta, write_shard
from daskcluster.run.day import Day
from daskcluster.search import gallery_lists
from daskcluster.stages import assign, centres, components

__all__ = ["Lists", "Merged", "day_lists", "merge_day"]


@dataclass
class Merged:
    gallery_clusters: int
    gallery_faces: int
    largest_cluster: int
    wrote_base: bool = False  # the day wrote a whole base (first day, or its quantizer changed)
    centre_rows: int = 0  # centre rows written (delta or base)


@dataclass(frozen=True)
class Lists:
    """The IVF list ids the day writes: under ``centroids`` (a handle; None: the gallery is unlisted), for
    every cluster (``relist_all``: the quantizer changed) or only those the day touched."""

    centroids: object
    path: str | None
    relist_all: bool


def day_lists(ex, day: Day, trained: bool, centroids) -> Lists:
    """The lists the day writes: under the quantizer it commits (trained today: every cluster re-listed;
    else the stored one, re-listing everything only if the snapshot's lists are under another)."""
    base = day.plan.base
    if trained:
        return Lists(centroids, day.plan.outputs.quantizer, True)
    if base.quantizer is None:
        return Lists(None, None, False)
    path = base.quantizer["path"]
    if centroids is None:
        centroids = ex.submit("assign-quantizer", load_npy, day.path(path))
    return Lists(centroids, path, base.lists != path)


def _day_sums(part, rest, labels, n_shards: int) -> dict[int, tuple]:
    """The ``centre-sums`` task: per shard, (sums of the faces that joined its clusters, sums of its new
    clusters) of one partition; shards without either are left out."""
    old = assign.assigned_sums(part, n_shards)
    new = components.new_cluster_sums(rest, labels, n_shards)
    return {s: (o, n) for s, (o, n) in enumerate(zip(old, new)) if len(o.cluster_id) or len(n.cluster_id)}


def _select(sums: dict[int, tuple], shards: frozenset) -> dict[int, list[tuple]]:
    """The ``sums`` task: the entries of one worker's shards."""
    return {s: [v] for s, v in sums.items() if s in shards}


def _combine(groups: list[dict[int, list[tuple]]]) -> dict[int, list[tuple]]:
    """The ``sums-reduce`` task: one worker's entries from several partitions, in partition order."""
    out: dict[int, list[tuple]] = defaultdict(list)
    for g in groups:
        for s, values in g.items():
            out[s].extend(values)
    return dict(out)


def _shard_update(table: centres.CentreTable, sums: dict, day: str, lists: tuple) -> centres.CentreTable:
    """The ``centre-update`` task: the day's members and new clusters added to one shard, and the rows it
    touched (or all, when re-listing) given their IVF list under the day's quantizer."""
    dim = table.mean.shape[1]
    mine = sums.get(table.shard, [])
    existing = centres.reduce_sums([o for o, _ in mine], dim)
    new = centres.reduce_sums([n for _, n in mine], dim)
    updated = centres.update_shard(table, existing, new, day)
    centroids, backend, relist_all, spill, below = lists
    if centroids is None:
        updated.list_id = updated.spill_id = None
        return updated
    spilled = updated.spill_id is not None and updated.spill_id.shape[1] == spill
    if relist_all or updated.list_id is None or (spill and not spilled):
        rows = np.ones(len(updated), bool)
    else:
        rows = touched(updated, day)
    list_id = np.full(len(updated), -1, np.int32) if updated.list_id is None else updated.list_id.copy()
    spill_id = np.full((len(updated), spill), -1, np.int32) if not spilled else updated.spill_id.copy()
    list_id[rows], spill_rows = gallery_lists(centroids, updated.centres()[rows], backend, spill, below)
    if spill:
        spill_id[rows] = spill_rows
    updated.list_id, updated.spill_id = list_id, (spill_id if spill else None)
    return updated


def touched(table: centres.CentreTable, day: str) -> np.ndarray:
    """The rows a day changed: its clusters seen that day (days only move forward, so no earlier row has it)."""
    return table.last_day == np.datetime64(day, "D")


def _write_rows(table: centres.CentreTable, day: str, path: str, base: bool) -> int:
    """The ``write-shard`` (base) or ``write-delta`` task; returns the rows written."""
    if base:
        return write_shard(table, path)
    return write_delta(table.take(touched(table, day)), np.empty(0, np.int64), path)


def _count_touched(table: centres.CentreTable, day: str) -> int:
    return int(touched(table, day).sum())


def _writes_base(ex, day: Day, updated: list, lists: Lists) -> bool:
    """A whole base instead of a delta: on the gallery's first day, when every cluster is re-listed, and when
    the deltas would hold more rows than ``gallery.compact_fraction`` x the base (compaction, see
    :mod:`daskcluster.run.compact`)."""
    base = day.plan.base
    if base.snapshot is None or lists.relist_all:
        return True
    rows = sum(ex.gather([ex.submit("count", _count_touched, t, day.plan.day) for t in updated]))
    return base.delta_rows + rows > day.cfg.gallery.compact_fraction * max(base.base_rows or base.n_clusters, 1)


def _shard_stats(table: centres.CentreTable) -> tuple[int, int, int]:
    return len(table), int(table.count.sum()), int(table.count.max()) if len(table) else 0


def _reduced_sums(ex, day: Day, parts: list, rest: list, labels: list, homes: list) -> dict:
    """Per worker, the day's sums of the shards it holds (a handle of ``{shard: [(old, new), ...]}``)."""
    n_s = day.plan.n_shards
    per_part = [ex.submit("centre-sums", _day_sums, p, r, lab, n_s) for p, r, lab in zip(parts, rest, labels)]
    by_home: dict = defaultdict(set)
    for s, h in enumerate(homes):
        by_home[h].add(s)
    return {
        h: ex.tree_reduce("sums-reduce", _combine, [ex.submit("sums", _select, p, frozenset(shards)) for p in per_part])
        for h, shards in by_home.items()
    }


def merge_day(ex, day: Day, parts: list, tables: list, rest: list, labels: list, lists: Lists) -> Merged:
    """Per shard, the sums of the faces that joined its clusters (``parts``) and of the new clusters it owns
    (``rest`` with their ``labels``) are reduced where the shard lives; then every file of the day is written."""
    out, today = day.plan.outputs, day.plan.day
    homes = ex.homes(ex.wait("load-shard", tables))
    sums = _reduced_sums(ex, day, parts, rest, labels, homes)
    relist = (lists.centroids, day.backend, lists.relist_all, day.cfg.search.spill, day.cfg.search.spill_below)
    updated = [
        ex.submit_at(h, "centre-update", _shard_update, t, sums[h], today, relist) for t, h in zip(tables, homes)
    ]
    ex.wait("centre-update", updated)
    base = _writes_base(ex, day, updated, lists)
    target, name = (out.snapshot, "write-shard") if base else (out.deltas, "write-delta")
    rows = [ex.submit_at(h, name, _write_rows, t, today, day.path(target), base) for t, h in zip(updated, homes)]
    writes = [
        ex.submit(
            "write-assignments",
            outputs.write_outputs,
            p,
            lab,
            day.path(out.assignments),
            day.path(out.quarantine),
            day.cfg.ingest.id_column,
        )
        for p, lab in zip(parts, labels)
    ]
    ex.wait("write", rows + writes)
    stats = ex.gather([ex.submit("shard-stats", _shard_stats, t) for t in updated])
    return Merged(
        sum(s[0] for s in stats),
        sum(s[1] for s in stats),
        max((s[2] for s in stats), default=0),
        base,
        sum(ex.gather(rows)),
    )
