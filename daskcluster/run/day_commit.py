"""The end of a day: the summary and report written, then the manifest swapped (the single commit point)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from daskcluster.eval.report import quality, write_report
from daskcluster.gallery.lineage import read_lineage
from daskcluster.gallery.manifest import (
    DayRecord,
    Manifest,
    assignment_files,
    now_utc,
    write_manifest,
    write_npy_atomic,
)
from daskcluster.run.day import Day, DayCounts

__all__ = ["commit_day", "day_summary"]


def day_summary(day: Day, counts: DayCounts, timings: dict[str, float]) -> dict:
    """The day's figures, stage timings and, where the faces have labels, the quality of the day's clusters and
    of the whole gallery's (ids resolved through the consolidation lineage)."""
    plan = day.plan
    today = sorted(Path(day.path(plan.outputs.assignments)).glob("*.parquet"))
    summary = {
        "day": plan.day,
        "version": plan.version,
        "input": [str(f) for f in plan.files],
        **counts.to_dict(),
        "stage_seconds": timings,
    }
    summary["quality_day"] = quality(today)
    if not plan.base.days:
        summary["quality_gallery"] = summary["quality_day"]
        return summary
    lineage = None
    if plan.manifest is not None:
        table = read_lineage(plan.gallery, dataclasses.replace(plan.manifest, days=plan.base.days))
        lineage = (table.column("old_id").to_numpy(), table.column("new_id").to_numpy())
    summary["quality_gallery"] = quality(assignment_files(plan.gallery, plan.base.days) + today, lineage)
    return summary


def _written(ex, day: Day, handle, stored: dict | None, rel: str, record: dict) -> dict | None:
    """What the next day starts from: the array learned today (``handle``, written now to ``rel``), else the
    stored record."""
    if handle is None:
        return stored
    ex.gather(ex.submit("commit", write_npy_atomic, handle, day.path(rel)))
    return record


def _day_record(day: Day, counts: DayCounts, quantizer: dict | None, preprocess: dict | None) -> DayRecord:
    plan, base, out = day.plan, day.plan.base, day.plan.outputs
    return DayRecord(
        day=plan.day,
        version=plan.version,
        snapshot_before=base.snapshot,
        snapshot=out.snapshot,
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
    )


def commit_day(ex, day: Day, counts: DayCounts, summary: dict, quantizer, new_mean) -> None:
    """Write the report, the quantizer and centring mean learned today, then swap the manifest: the day is
    committed when the rename lands."""
    plan, base, out = day.plan, day.plan.base, day.plan.outputs
    write_report(Path(day.path(out.report)), summary, day.cfg.to_dict())
    trained = quantizer and {"path": out.quantizer, "nlist": quantizer.nlist}
    q = _written(ex, day, quantizer and quantizer.centroids, base.quantizer, out.quantizer, trained)
    pre = _written(ex, day, new_mean, base.preprocess, out.preprocess, {"centre": out.preprocess})
    record = _day_record(day, counts, q, pre)
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
    )
    write_manifest(plan.gallery, manifest)
