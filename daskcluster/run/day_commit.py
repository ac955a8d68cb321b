"""The end of a day: the summary and report written, then the manifest swapped (the single commit point)."""

from __future__ import annotations

import dataclasses

from daskcluster.eval.report import quality, write_report
from daskcluster.gallery import ids
from daskcluster.gallery.lineage import read_lineage
from daskcluster.gallery.manifest import (
    DayRecord,
    Manifest,
    assignment_files,
    now_utc,
    write_manifest,
    write_npy_atomic,
)
from daskcluster.gallery.retention import paths_bytes
from daskcluster.gallery.store import listing
from daskcluster.run.day import Day, DayCounts

__all__ = ["commit_day", "day_summary", "state"]


def state(day: Day, merged, lists, id_index: dict) -> dict:
    """The gallery state the day commits (``DayRecord`` and ``Manifest`` fields): its base and deltas, the
    quantizer its list ids are under, their row counts, and the face-id index."""
    base, out = day.plan.base, day.plan.outputs
    if merged.wrote_base:
        tables = {"snapshot": out.snapshot, "deltas": [], "base_rows": merged.centre_rows, "delta_rows": 0}
    else:
        tables = {
            "snapshot": base.snapshot,
            "deltas": [*base.deltas, out.deltas],
            "base_rows": base.base_rows or base.n_clusters,
            "delta_rows": base.delta_rows + merged.centre_rows,
        }
    return {**tables, "lists": lists.path, "id_index": id_index}


def _bytes_read(day: Day) -> int:
    """Bytes of the gallery files and inputs the day reads: its input, the centre tables (base and deltas),
    the quantizer and centring mean, and the face-id index's Bloom filters (its runs' ids are read only where
    a filter reports a hit: not counted)."""
    base = day.plan.base
    rels = [*([base.snapshot] if base.snapshot else []), *base.deltas]
    rels += [r[k] for r, k in ((base.quantizer, "path"), (base.preprocess, "centre")) if r and r.get(k)]
    index = base.id_index or {"buckets": 0, "runs": []}
    rels += [ids.bucket_files(run, b)[1] for run in ids.run_paths(index) for b in range(index["buckets"])]
    return sum(f.stat().st_size for f in day.plan.files) + paths_bytes(day.plan.gallery, rels)


def day_summary(day: Day, counts: DayCounts, timings: dict[str, float], tasks: dict[str, int]) -> dict:
    """The day's figures, stage timings and task counts, bytes read and, where the faces have labels, the
    quality of the day's clusters and (while the gallery holds at most ``gallery.quality_max_faces``) of the
    whole gallery's (ids resolved through the consolidation lineage)."""
    plan = day.plan
    today = listing(day.path(plan.outputs.assignments), "*.parquet")
    summary = {
        "day": plan.day,
        "version": plan.version,
        "input": [str(f) for f in plan.files],
        **counts.to_dict(),
        "stage_seconds": timings,
        "stage_tasks": dict(tasks),
        "bytes_read": _bytes_read(day),
    }
    summary["quality_day"] = quality(today)
    if not plan.base.days:
        summary["quality_gallery"] = summary["quality_day"]
        return summary
    if plan.base.n_faces + counts.faces_valid > day.cfg.gallery.quality_max_faces:
        return summary
    lineage = None
    if plan.manifest is not None:
        table = read_lineage(plan.gallery, dataclasses.replace(plan.manifest, days=plan.base.days))
        lineage = (table.column("old_id").to_numpy(), table.column("new_id").to_numpy())
    history = assignment_files(plan.gallery, plan.base.days)
    summary["bytes_read"] += sum(f.stat().st_size for f in history)
    summary["quality_gallery"] = quality(history + today, lineage)
    return summary


def _written(ex, day: Day, handle, stored: dict | None, rel: str, record: dict) -> dict | None:
    """What the next day starts from: the array learned today (``handle``, written now to ``rel``), else the
    stored record."""
    if handle is None:
        return stored
    ex.gather(ex.submit("commit", write_npy_atomic, handle, day.path(rel)))
    return record


def _day_record(
    day: Day, counts: DayCounts, quantizer: dict | None, preprocess: dict | None, tables: dict, stats: dict
) -> DayRecord:
    plan, base, out = day.plan, day.plan.base, day.plan.outputs
    return DayRecord(
        day=plan.day,
        version=plan.version,
        snapshot_before=base.snapshot,
        assignments=out.assignments,
        quarantine=out.quarantine if counts.quarantined else None,
        report=out.report,
        input_checksum=plan.checksum,
        config_digest=day.cfg.digest(),
        config=day.cfg.to_dict(),
        next_cluster_id_before=base.next_cluster_id,
        next_cluster_id_after=base.next_cluster_id + counts.new_clusters,
        n_clusters_after=counts.gallery_clusters,
        n_faces_after=counts.gallery_faces,
        n_faces=counts.faces_valid,
        n_quarantined=counts.quarantined,
        committed_at=now_utc(),
        quantizer=quantizer,
        preprocess=preprocess,
        stats=stats,
        **tables,
    )


def commit_day(ex, day: Day, counts: DayCounts, summary: dict, quantizer, new_mean, tables: dict) -> None:
    """Write the report, the quantizer and centring mean learned today, then swap the manifest: the day is
    committed when the rename lands."""
    plan, base, out = day.plan, day.plan.base, day.plan.outputs
    trained = quantizer and {"path": out.quantizer, "nlist": quantizer.nlist}
    q = _written(ex, day, quantizer and quantizer.centroids, base.quantizer, out.quantizer, trained)
    pre = _written(ex, day, new_mean, base.preprocess, out.preprocess, {"centre": out.preprocess})
    summary["bytes_written"] = paths_bytes(plan.gallery, [p for p in out.paths() if p != out.report])
    write_report(day.path(out.report), summary, day.cfg.to_dict())
    stats = {k: summary[k] for k in ("bytes_read", "bytes_written", "stage_tasks", "stage_seconds") if k in summary}
    record = _day_record(day, counts, q, pre, tables, stats)
    manifest = Manifest(
        dim=day.dim,
        n_shards=plan.n_shards,
        version=plan.version,
        next_cluster_id=record.next_cluster_id_after,
        snapshot=record.snapshot,
        n_clusters=record.n_clusters_after,
        n_faces=record.n_faces_after,
        days=[*base.days, record],
        quantizer=q,
        preprocess=pre,
        deltas=record.deltas,
        lists=record.lists,
        base_rows=record.base_rows,
        delta_rows=record.delta_rows,
        id_index=record.id_index,
    )
    write_manifest(plan.gallery, manifest)
