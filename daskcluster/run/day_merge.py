"""Step 3 of a day on the executor: centre updates and new clusters at their owning shards, then the snapshot,
assignments and quarantine written (nothing is committed until the manifest swap)."""

from __future__ import annotations

from dataclasses import dataclass

from daskcluster.gallery import outputs
from daskcluster.gallery.tables import write_shard
from daskcluster.run.day import Day
from daskcluster.stages import assign, centres, components

__all__ = ["Merged", "merge_day"]


@dataclass
class Merged:
    gallery_clusters: int
    gallery_faces: int
    largest_cluster: int


def _shard_update(table: centres.CentreTable, existing: list, new: list, day: str) -> centres.CentreTable:
    dim = table.mean.shape[1]
    return centres.update_shard(table, centres.reduce_sums(existing, dim), centres.reduce_sums(new, dim), day)


def _shard_stats(table: centres.CentreTable) -> tuple[int, int, int]:
    return len(table), int(table.count.sum()), int(table.count.max()) if len(table) else 0


def merge_day(ex, day: Day, parts: list, tables: list, rest: list, labels: list) -> Merged:
    """Per shard, the sums of the faces that joined its clusters (``parts``) and of the new clusters it owns
    (``rest`` with their ``labels``) are reduced where the shard lives; then every file of the day is written."""
    n_s, out = day.plan.n_shards, day.plan.outputs
    old = [ex.submit("centre-sums", assign.assigned_sums, p, n_s) for p in parts]
    new = [ex.submit("new-centres", components.new_cluster_sums, p, lab, n_s) for p, lab in zip(rest, labels)]
    homes = ex.homes(ex.wait("load-shard", tables))
    updated = [
        ex.submit_at(
            h,
            "centre-update",
            _shard_update,
            t,
            [ex.pick("sums", o, s) for o in old],
            [ex.pick("sums", n, s) for n in new],
            day.plan.day,
        )
        for s, (t, h) in enumerate(zip(tables, homes))
    ]
    ex.wait("centre-update", updated)
    writes = [ex.submit_at(h, "write-shard", write_shard, t, day.path(out.snapshot)) for t, h in zip(updated, homes)]
    writes += [
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
    ex.wait("write", writes)
    stats = ex.gather([ex.submit("shard-stats", _shard_stats, t) for t in updated])
    return Merged(sum(s[0] for s in stats), sum(s[1] for s in stats), max((s[2] for s in stats), default=0))
