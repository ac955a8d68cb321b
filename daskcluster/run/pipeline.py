"""The day pipeline: ingest -> prepare -> assign -> cluster the rest -> merge, then commit.

Written once, against an executor (:mod:`daskcluster.run.executor`): on a Dask cluster every stage is a set of
tasks and the driver holds handles and small counts, never feature vectors; in process the same stages run
here (calibration, benchmarks, unit tests). Each stage is a function of its own module returning a typed
result; this one calls them in order.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daskcluster.backends import resolve_backend_name
from daskcluster.config import Config
from daskcluster.gallery.manifest import remove_uncommitted
from daskcluster.gallery.store import remove_tree
from daskcluster.run.compact import maintain_after_day
from daskcluster.run.day import Day, DayCounts
from daskcluster.run.day_assign import assign_day
from daskcluster.run.day_cluster import cluster_day
from daskcluster.run.day_commit import commit_day, day_summary, state
from daskcluster.run.day_ingest import ingest_day, prepare_day, scan_dim, write_ids
from daskcluster.run.day_merge import day_lists, merge_day
from daskcluster.run.executor import NullProgress, Progress, as_executor
from daskcluster.run.plan import DayPlan, plan_day

log = logging.getLogger(__name__)

__all__ = ["DayResult", "NullProgress", "Progress", "run_day", "run_stages"]


@dataclass
class DayResult:
    status: str  # "committed" or "skipped"
    day: str
    message: str
    summary: dict = field(default_factory=dict)


def run_stages(ex, plan: DayPlan, cfg: Config) -> dict:
    """Run a planned day's stages and commit it; returns the day's summary."""
    t0 = time.perf_counter()
    day = Day(plan, cfg, resolve_backend_name(cfg.backend), plan.dim or 0)
    if plan.dim is None:
        day = dataclasses.replace(day, dim=scan_dim(ex, day))
    ingested = ingest_day(ex, day)
    prepared = prepare_day(ex, day, ingested)
    assigned = assign_day(ex, day, prepared.parts)
    clustered = cluster_day(ex, cfg, day.backend, day.dim, assigned.parts, plan.base.next_cluster_id)
    lists = day_lists(ex, day, assigned.quantizer is not None, assigned.centroids)
    merged = merge_day(ex, day, assigned.parts, assigned.tables, clustered.rest, clustered.labels, lists)
    id_index = write_ids(ex, day, ingested)
    counts = DayCounts()
    for result in (ingested, prepared, assigned, clustered, merged):
        counts.update(**{k: v for k, v in vars(result).items() if hasattr(counts, k)})
    ex.timings["total"] = time.perf_counter() - t0
    summary = day_summary(day, counts, ex.timings, ex.tasks)
    commit_day(ex, day, counts, summary, assigned.quantizer, prepared.new_mean, state(day, merged, lists, id_index))
    return summary


def run_day(
    where: Any,
    input_path: str | Path,
    gallery: str | Path,
    cfg: Config,
    day: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> DayResult:
    """Run one day into the gallery on ``where`` (a Dask client, or an executor); the gallery is unchanged
    unless the day commits."""
    plan = plan_day(input_path, gallery, cfg, day, force)
    if plan.skip_reason:
        log.warning(plan.skip_reason)
        return DayResult("skipped", plan.day, plan.skip_reason)
    if plan.dropped_days:
        log.warning("recomputing %s drops the committed days %s from the gallery", plan.day, plan.dropped_days)
    root_existed = plan.gallery.exists()
    ex = as_executor(where, progress)
    try:
        report = str(plan.gallery / plan.outputs.report / "dask-report.html")
        with ex.current(), ex.report(report):
            summary = run_stages(ex, plan, cfg)
    except BaseException:
        remove_uncommitted(plan.gallery, plan.outputs.paths())
        if not root_existed:
            remove_tree(plan.gallery)
        raise
    result = DayResult("committed", plan.day, f"day {plan.day} committed as version {plan.version}", summary)
    result.summary["maintenance"] = maintain_after_day(plan.gallery, cfg)
    return result
