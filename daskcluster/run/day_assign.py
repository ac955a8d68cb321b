"""Step 1 of a day on the executor: each face against the gallery's centres, where the shards live."""

from __future__ import annotations

from dataclasses import dataclass, replace

from daskcluster.gallery.tables import SnapshotRef, load_shard
from daskcluster.run.audit import audit_assignment, choose_gap, exact_sample
from daskcluster.run.day import Day
from daskcluster.search import IndexSpec, Quantizer, choose_index, quantizer, sample_rows
from daskcluster.search.fanout import search_all
from daskcluster.stages import assign, centres, ingest

__all__ = ["Assigned", "assign_day"]


@dataclass
class Assigned:
    """Per partition, a handle of its faces with their decisions; per gallery shard, a handle of its centre
    table (on the worker that holds it); the counts; and the quantizer, when trained today."""

    parts: list
    tables: list
    assigned: int = 0
    assign_ambiguous: int | None = None
    assigned_low_quality: int | None = None
    assign_index: str | None = None
    assign_quantizer: str | None = None
    quantizer: Quantizer | None = None
    centroids: object = None  # handle of the coarse centroids the search used (None: flat)
    assign_agreement: float | None = None  # search.audit: audit faces given the exact search's best cluster


def _gallery_sample(table: centres.CentreTable, n_max: int) -> tuple:
    return sample_rows(table.cluster_id, table.centres(), n_max)


def _count_assigned(part: ingest.Part) -> tuple[int, int, int]:
    """(assigned, sent to step 2 by the margin, assigned low-quality faces)."""
    is_assigned = part.cluster_id >= 0
    return int(is_assigned.sum()), int(part.ambiguous.sum()), int((is_assigned & part.low_quality).sum())


def _first_day(ex, day: Day, parts: list) -> Assigned:
    """An empty gallery: every face goes to step 2; the shards start empty."""
    parts = ex.wait("assign", [ex.submit("assign-skip", assign.unassigned_part, p) for p in parts])
    tables = ex.spread("load-shard", centres.empty_shard, [(s, day.dim) for s in range(day.plan.n_shards)])
    return Assigned(parts, tables)


def _best_clusters(ex, day: Day, tables: list, parts: list) -> tuple[list, Quantizer, IndexSpec, float | None]:
    """Per partition, the top ``ASSIGN_K`` gallery clusters at or above ``assign.threshold`` of its faces:
    each table indexed where it lives, every partition searched against every shard. IVF probes by a gap
    chosen on an exact sample of the day's faces (``search.assign_recall`` of them keep their exact best
    cluster); the sample's other half measures the agreement."""
    plan, cfg = day.plan, day.cfg
    spec = choose_index(plan.base.n_clusters, cfg.search)
    if not cfg.search.nprobe:  # the gap alone bounds the probes: a cap only loses far faces' clusters
        spec = replace(spec, nprobe=spec.nlist)
    spec = spec.with_codec(cfg.search)  # search.codec: pq codes for the gallery's centres
    quant = quantizer(
        ex, "assign", spec, cfg.search, day.backend, tables, _gallery_sample, plan.base.quantizer, plan.gallery
    )
    stored = plan.base.quantizer
    listed = not quant.trained and stored is not None and plan.base.lists == stored["path"]
    spill = (cfg.search.spill, cfg.search.spill_below)
    build = (assign.gallery_search_shard, spec, quant.centroids, day.backend, cfg.cluster.max_size, listed, spill)
    index = [ex.submit_at(h, "gallery-index", build[0], t, *build[1:]) for t, h in zip(tables, ex.homes(tables))]
    coarse, agreement = None, None
    threshold, k = cfg.assign.threshold, assign.ASSIGN_K
    if not spec.is_flat:
        sample = None
        if spec.gap is None or cfg.search.audit:
            sizes = ex.gather([ex.submit("count", len, p) for p in parts])
            offsets = [sum(sizes[:i]) for i in range(len(sizes))]
            fixed = spec.gap is not None
            sample = exact_sample(
                ex, cfg, index, parts, offsets, k, threshold, "assign-", searchable=False, audit_only=fixed
            )
        if spec.gap is None:
            target = cfg.search.assign_recall
            gap = choose_gap(ex, cfg, sample, threshold, target, "assign", "assign-", False)
            spec = spec.with_gap(gap)
        coarse = (assign.queries, quant.centroids, spec.nprobe, day.backend, spec.gap)
    best = search_all(ex, "assign", index, parts, assign.search_part, k, coarse, min_sim=threshold)
    if not spec.is_flat and cfg.search.audit:
        agreement = audit_assignment(ex, sample, best, offsets)
    return best, quant, spec, agreement


def assign_day(ex, day: Day, parts: list) -> Assigned:
    """Every partition searched against every gallery shard; the best cluster at or above ``assign.threshold``
    is chosen (see :func:`daskcluster.stages.assign.decide`). The gallery's quantizer is reused while its list
    count is what the index rule picks for the gallery's size (nlist ~ 2 sqrt(n): it is re-trained each time the
    gallery has grown ~4x)."""
    plan, cfg = day.plan, day.cfg
    if plan.base.n_clusters == 0:
        return _first_day(ex, day, parts)
    snapshot = SnapshotRef.of(plan.gallery, plan.base)
    shards = [(snapshot, s, day.dim) for s in range(plan.n_shards)]
    tables = ex.wait("load-shard", ex.spread("load-shard", load_shard, shards))
    best, quant, spec, agreement = _best_clusters(ex, day, tables, parts)
    decide = (assign.decide, cfg.assign, cfg.quality.join_threshold)
    parts = ex.wait("assign", [ex.submit("assign-decide", decide[0], p, b, *decide[1:]) for p, b in zip(parts, best)])
    counts = ex.gather([ex.submit("count", _count_assigned, p) for p in parts])
    n_assigned, n_ambiguous, n_low = (sum(c[i] for c in counts) for i in range(3))
    used = None if spec.is_flat else ("trained" if quant.trained else f"reused {plan.base.quantizer['path']}")
    trained = quant if quant.trained else None
    return Assigned(
        parts, tables, n_assigned, n_ambiguous, n_low, spec.describe(), used, trained, quant.centroids, agreement
    )
