"""The day pipeline on Dask: ingest -> assign -> cluster the rest -> merge and commit.

Every stage is a set of tasks on the cluster; the driver holds futures and small per-partition counts,
never feature vectors. Stage functions live in their own modules; this one only wires them together.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
import operator
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed import Client, Future, performance_report

from daskcluster.config import Config
from daskcluster.eval.report import quality, write_report
from daskcluster.gallery import outputs
from daskcluster.gallery.lineage import read_lineage
from daskcluster.gallery.manifest import (
    DayRecord,
    GalleryError,
    Manifest,
    load_npy,
    now_utc,
    read_face_ids,
    remove_uncommitted,
    write_manifest,
    write_npy_atomic,
)
from daskcluster.run.audit import audit_edges
from daskcluster.run.consolidate import consolidate_gallery
from daskcluster.run.executor import DayRunner, NullProgress, Progress
from daskcluster.run.plan import output_dirs, plan_day
from daskcluster.search.index import IndexSpec, choose_index, merge_topk, sample_rows, train_quantizer
from daskcluster.stages import assign, centres, components, ingest, knn, linking, prepare
from daskcluster.stages.inputs import InputError, length_histogram, modal_length

log = logging.getLogger(__name__)

__all__ = ["DayResult", "NullProgress", "Progress", "run_day"]

CUT_BUCKETS = 16  # most recut tasks: oversized components are few, and each is cut whole in one task


# --------------------------------------------------------------------------------------------- ingest
def _reason_counts(part: ingest.Part) -> Counter:
    return Counter() if part.bad is None else Counter(part.bad.column("reason").to_pylist())


def _known_buckets(path: str, n_buckets: int) -> list:
    return ingest.bucket_known_ids(read_face_ids(path), n_buckets)


def _dedupe(r: DayRunner, parts: list[Future]) -> list[Future]:
    """Duplicates within the day and against the gallery, bucketed by id hash across tasks."""
    n_b = max(1, min(len(parts), 16))
    buckets = [r.submit("id-buckets", ingest.bucket_ids, p, n_b) for p in parts]
    files = [str(f) for d in r.plan.base.days for f in sorted((r.plan.gallery / d.assignments).glob("*.parquet"))]
    known = [r.submit("gallery-ids", _known_buckets, f, n_b) for f in files]
    dups = [r.submit("duplicates", ingest.find_duplicates, [r.pick("bucket", b, j) for b in buckets],
                     [r.pick("bucket", k, j) for k in known]) for j in range(n_b)]
    return [r.submit("dedupe", ingest.drop_rows, p, dups, r.cfg.ingest) for p in parts]


def _check_bad_fraction(r: DayRunner, parts: list[Future]) -> None:
    counts = r.gather([r.submit("count", ingest.count_rows, p) for p in parts])
    n_ok, n_bad = sum(c[0] for c in counts), sum(c[1] for c in counts)
    r.state.counts.update(faces_in=n_ok + n_bad, faces_valid=n_ok, quarantined=n_bad,
                          part_sizes=[c[0] for c in counts])
    reasons = sum(r.gather([r.submit("reasons", _reason_counts, p) for p in parts]), Counter())
    r.state.counts["quarantine_reasons"] = dict(reasons.most_common())
    limit = r.cfg.ingest.max_bad_fraction
    if n_ok == 0 or n_bad > limit * (n_ok + n_bad):
        raise InputError(f"{n_bad} of {n_ok + n_bad} rows of {r.plan.files[0].parent} are bad (more than "
                         f"ingest.max_bad_fraction={limit}); reasons: {dict(reasons.most_common(5))}")


def _scan_dim(r: DayRunner) -> int:
    """A first day of variable-length lists: the most common length, counted on the workers."""
    feature = r.cfg.ingest.feature_column
    hists = r.wait("dim-scan", [r.submit("dim-scan", length_histogram, s, feature) for s in r.plan.partitions])
    return modal_length(r.gather(hists), feature)


def stage_ingest(r: DayRunner) -> None:
    if r.plan.dim is None:
        r.plan.dim = _scan_dim(r)
    spec_dim, icfg = r.plan.dim, r.cfg.ingest
    parts = r.wait("ingest", [r.submit("ingest", ingest.ingest_partition, s, spec_dim, icfg)
                              for s in r.plan.partitions])
    r.state.parts = r.wait("dedupe", _dedupe(r, parts))
    _check_bad_fraction(r, r.state.parts)
    stage_prepare(r)


def _centre_mean(r: DayRunner) -> Future | None:
    """The gallery's centring mean: the stored one, else learned from this (first) day when configured."""
    stored = r.plan.base.preprocess
    if stored and stored.get("centre"):
        if not r.cfg.preprocess.centre:
            log.warning("the gallery centres features (fixed by its first day): preprocess.centre=false is ignored")
        return r.submit("centre-load", load_npy, str(r.plan.gallery / stored["centre"]))
    if not r.cfg.preprocess.centre:
        return None
    if r.plan.base.days:
        raise GalleryError("preprocess.centre is fixed by the gallery's first day, which was not centred; "
                           "start a new gallery to centre features")
    sums = [r.submit("centre-sum", prepare.unit_sum, p) for p in r.state.parts]
    mean = r.submit("centre-mean", prepare.mean_feature, sums)
    r.state.new_mean = mean
    return mean


def stage_prepare(r: DayRunner) -> None:
    """Centring and quality flags (see ``prepare``)."""
    mean = _centre_mean(r)
    if mean is None and r.cfg.quality.floor <= 0:
        r.state.counts["low_quality"] = 0
        return
    r.state.parts = r.wait("prepare", [r.submit("prepare", prepare.prepare, p, mean, r.cfg.quality)
                                       for p in r.state.parts])
    r.state.counts["low_quality"] = sum(r.gather([r.submit("count", _count_low, p) for p in r.state.parts]))


def _count_low(part: ingest.Part) -> int:
    return int(part.low_quality.sum())


# --------------------------------------------------------------------------------------------- search
def _quantizer(r: DayRunner, spec: IndexSpec, sources: list[Future], sample_fn: Callable,
               stage: str) -> Future | None:
    """Train the shared IVF quantizer on a worker from a sample of each source (None for flat search)."""
    if spec.is_flat:
        return None
    n_max = max(r.cfg.search.train_sample, 39 * spec.nlist)
    samples = [r.submit(f"{stage}-sample", sample_fn, src, n_max) for src in sources]
    fut = r.submit(f"{stage}-train", train_quantizer, samples, spec.nlist, n_max, r.backend)
    return r.wait(f"{stage}-train", [fut])[0]


def _search_all(r: DayRunner, name: str, shard_futs: list[Future], queries: list[Future],
                fn: Callable, k: int, probe: tuple | None = None, **kw: Any) -> list[Future]:
    """Every query partition against every shard, merged per partition (top-k by similarity, then id).

    Each search runs on the worker holding its shard: query partitions travel, shards never do, and only
    ``(similarity, id)`` top-k lists come back to be merged."""
    homes = r.homes(shard_futs)
    merged = []
    for q in queries:
        if probe is not None:  # (probe_fn, centroids, nprobe): quantize the partition once, not per shard
            kw["probes"] = r.submit(f"{name}-probe", probe[0], q, probe[1], probe[2])
        per_shard = [r.submit_at(h, f"{name}-search", fn, s, q, k, **kw) for s, h in zip(shard_futs, homes)]
        merged.append(r.tree_reduce(f"{name}-merge", merge_topk, per_shard, k))
    return merged


# --------------------------------------------------------------------------------------------- assign
def _gallery_sample(table: centres.ClusterShard, n_max: int) -> tuple:
    return sample_rows(table.cluster_id, table.centres(), n_max)


def stage_assign(r: DayRunner) -> None:
    plan, cfg = r.plan, r.cfg
    if plan.base.n_clusters == 0:
        r.state.parts = r.wait("assign", [r.submit("assign-skip", assign.unassigned_part, p)
                                          for p in r.state.parts])
        r.state.tables = r.spread("load-shard", centres.empty_shard, [(s, plan.dim) for s in range(plan.n_shards)])
        r.state.counts["assigned"] = 0
        return
    snapshot = str(plan.gallery / plan.base.snapshot)
    tables = r.wait("load-shard", r.spread("load-shard", centres.load_shard,
                                           [(snapshot, s, plan.dim) for s in range(plan.n_shards)]))
    spec = choose_index(plan.base.n_clusters, cfg.search)
    centroids = _gallery_quantizer(r, spec, tables)
    index = [r.submit_at(h, "gallery-index", assign.gallery_search_shard, t, spec, centroids, r.backend,
                         cfg.cluster.max_size)
             for t, h in zip(tables, r.homes(tables))]
    probe = None if spec.is_flat else (assign.probe_part, centroids, spec.nprobe)
    best = _search_all(r, "assign", index, r.state.parts, assign.search_part, assign.ASSIGN_K, probe,
                       min_sim=cfg.assign.threshold)
    parts = [r.submit("assign-decide", assign.decide, p, b, cfg.assign, cfg.quality.join_threshold)
             for p, b in zip(r.state.parts, best)]
    r.state.parts, r.state.tables = r.wait("assign", parts), tables
    counts = r.gather([r.submit("count", _count_assigned, p) for p in parts])
    r.state.counts.update(assigned=sum(c[0] for c in counts), assign_ambiguous=sum(c[1] for c in counts),
                          assigned_low_quality=sum(c[2] for c in counts))
    r.state.counts["assign_index"] = spec.describe()


def _gallery_quantizer(r: DayRunner, spec: IndexSpec, tables: list[Future]) -> Future | None:
    """The gallery's IVF quantizer: the stored one while its list count is still what the index rule picks
    for the gallery's size (nlist ~ 2 sqrt(n): it is re-trained each time the gallery has grown ~4x), else
    a new one, trained on a worker and written at commit."""
    if spec.is_flat:
        return None
    stored = r.plan.base.quantizer
    if stored and stored["nlist"] == spec.nlist and not r.cfg.search.exact:
        r.state.counts["assign_quantizer"] = f"reused {stored['path']}"
        return r.submit("assign-quantizer", load_npy, str(r.plan.gallery / stored["path"]))
    centroids = _quantizer(r, spec, tables, _gallery_sample, "assign")
    r.state.counts["assign_quantizer"] = "trained"
    r.state.new_quantizer = (centroids, spec.nlist)
    return centroids


def _count_assigned(part: ingest.Part) -> tuple[int, int, int]:
    """(assigned, sent to step 2 by the margin, assigned low-quality faces)."""
    assigned = part.cluster_id >= 0
    return int(assigned.sum()), int(part.ambiguous.sum()), int((assigned & part.low_quality).sum())


def _count_unassigned(part: ingest.Part) -> int:
    return int(part.unassigned.sum())


# --------------------------------------------------------------------------------------------- cluster
def _graph_index(r: DayRunner, sizes: list[int],
                 offsets: list[int]) -> tuple[list[Future], IndexSpec, list[range]]:
    """The unassigned faces as shards of consecutive partitions, about ``search.shard_mb`` of features each:
    fewer, longer IVF lists search faster, and the grouping does not depend on the number of workers (every
    partition is searched against every shard, so there are always as many tasks as partitions)."""
    n_total = sum(sizes)
    spec = choose_index(n_total, r.cfg.search)
    centroids = r.state.knn_centroids = _quantizer(r, spec, r.state.rest, knn.graph_sample, "knn")
    n_groups = math.ceil(n_total * r.plan.dim * 4 / 2**20 / r.cfg.search.shard_mb)
    groups = knn.group_partitions(sizes, n_groups)
    built = r.spread("knn-build", knn.graph_shard, [([r.state.rest[i] for i in g], offsets[g.start], spec,
                                                        centroids, r.backend) for g in groups])
    return r.wait("knn-build", built), spec, groups


def _annotations(r: DayRunner, gshards: list[Future], groups: list[range], nbs: list[Future]) -> list[Future]:
    """Per partition, what its neighbours know (mutual, shared neighbourhood, density): each graph shard's
    lists are gathered next to the shard, and every partition's lists visit every shard, as in the search."""
    homes = r.homes(gshards)
    tables = [r.submit_at(h, "knn-table", linking.concat, [nbs[i] for i in g]) for g, h in zip(groups, homes)]
    return [r.tree_reduce("annotate-merge", _sum_annotations,
                          [r.submit_at(h, "annotate", linking.annotate, t, nb) for t, h in zip(tables, homes)])
            for nb in nbs]


def _sum_annotations(anns: list[linking.Annotation]) -> linking.Annotation:
    return functools.reduce(operator.add, anns)


def stage_cluster(r: DayRunner) -> list[Future]:
    """Step 2; returns, per partition, a future of the new cluster ids of its unassigned faces."""
    cfg = r.cfg.cluster
    r.state.rest = [r.submit("unassigned", ingest.unassigned_view, p) for p in r.state.parts]
    sizes = r.gather([r.submit("count", _count_unassigned, p) for p in r.state.rest])
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    n_total = sum(sizes)
    gshards, spec, groups = _graph_index(r, sizes, offsets)
    r.state.counts["knn_index"] = spec.describe()
    probe = None if spec.is_flat else (knn.probe_part, r.state.knn_centroids, spec.nprobe)
    best = _search_all(r, "knn", gshards, r.state.rest, knn.knn_search, cfg.k + 1, probe, min_sim=cfg.threshold)
    nbs = [r.submit("neighbours", linking.neighbours, b, off, cfg.k, cfg.threshold) for b, off in zip(best, offsets)]
    anns = _annotations(r, gshards, groups, nbs) if linking.needs_annotation(cfg) else [None] * len(nbs)
    edge_futs = r.wait("edges", [r.submit("edges", linking.link, nb, ann, cfg) for nb, ann in zip(nbs, anns)])
    if r.cfg.search.audit:
        r.state.counts["edge_recall"] = audit_edges(r, gshards, best, offsets, spec)
    forests = [r.submit("cc-forest", components.edge_forest, e, r.backend) for e in edge_futs]
    forest = r.tree_reduce("cc-merge", components.merge_forests, forests, r.backend)
    roots = r.submit("cc-roots", components.vertex_roots, n_total, forest)
    recuts = _chaining_guard(r, roots, edge_futs, offsets, sizes)
    vids = [r.submit("vertex-ids", components.unassigned_ids, p) for p in r.state.rest]
    comp = r.submit("components", components.label_components, roots, vids, r.plan.base.next_cluster_id, recuts)
    result = r.wait("components", [comp])[0]
    stats = r.gather(r.submit("component-stats", _component_stats, result))
    r.state.counts.update(stats, knn_edges=sum(r.gather([r.submit("count", len, e) for e in edge_futs])))
    return [r.submit("labels", components.part_labels, result, off, off + n) for off, n in zip(offsets, sizes)]


def _chaining_guard(r: DayRunner, roots: Future, edge_futs: list[Future], offsets: list[int],
                    sizes: list[int]) -> list[Future]:
    """Re-cut the components over ``cluster.max_size`` (see ``linking.recut``): their vertices and edges go
    to buckets by component, one ``recut`` task each; nothing else moves."""
    cfg = r.cfg.cluster
    if not cfg.max_size:
        return []
    over = r.submit("oversize", components.oversize_roots, roots, cfg.max_size)
    n_over = r.gather(r.submit("count", len, over))
    if not n_over:
        return []
    n_b = max(1, min(len(edge_futs), n_over, CUT_BUCKETS))
    inputs = [r.submit("cut-inputs", linking.cut_inputs, e, r.submit("part-roots", components.part_slice, roots,
                                                                      off, off + n), off, over, n_b)
              for e, off, n in zip(edge_futs, offsets, sizes)]
    return r.wait("recut", [r.submit("recut", linking.recut, [r.pick("cut-bucket", i, b) for i in inputs],
                                     cfg.threshold, cfg.max_size, cfg.recut_step, r.backend)
                            for b in range(n_b)])


def _component_stats(result: components.ComponentResult) -> dict[str, Any]:
    return {"new_clusters": result.n_clusters, "singletons": result.n_singletons,
            "largest_new_cluster": result.largest, "cut_components": result.cuts}


# --------------------------------------------------------------------------------------------- merge
def _shard_update(table: centres.ClusterShard, existing: list, new: list, day: str) -> centres.ClusterShard:
    dim = table.mean.shape[1]
    return centres.update_shard(table, centres.reduce_sums(existing, dim), centres.reduce_sums(new, dim), day)


def _shard_stats(table: centres.ClusterShard) -> tuple[int, int, int]:
    return len(table), int(table.count.sum()), int(table.count.max()) if len(table) else 0


def stage_merge(r: DayRunner, labels: list[Future]) -> None:
    """Centre updates and new clusters at their shards; the snapshot, assignments and quarantine written."""
    n_s, parts = r.plan.n_shards, r.state.parts
    old = [r.submit("centre-sums", assign.assigned_sums, p, n_s) for p in parts]
    new = [r.submit("new-centres", components.new_cluster_sums, p, lab, n_s) for p, lab in zip(r.state.rest, labels)]
    homes = r.homes(r.wait("load-shard", r.state.tables))
    updated = [r.submit_at(h, "centre-update", _shard_update, t, [r.pick("sums", o, s) for o in old],
                           [r.pick("sums", n, s) for n in new], r.plan.day)
               for s, (t, h) in enumerate(zip(r.state.tables, homes))]
    r.wait("centre-update", updated)
    writes = [r.submit_at(h, "write-shard", centres.write_shard, t, r.dirs["snapshot"]) for t, h in zip(updated, homes)]
    writes += [r.submit("write-assignments", outputs.write_outputs, p, lab, r.dirs["assignments"],
                        r.dirs["quarantine"], r.cfg.ingest.id_column) for p, lab in zip(parts, labels)]
    r.wait("write", writes)
    stats = r.gather([r.submit("shard-stats", _shard_stats, t) for t in updated])
    r.state.counts.update(gallery_clusters=sum(s[0] for s in stats), gallery_faces=sum(s[1] for s in stats),
                          largest_cluster=max((s[2] for s in stats), default=0))


# --------------------------------------------------------------------------------------------- commit
@dataclass
class DayResult:
    status: str            # "committed" or "skipped"
    day: str
    message: str
    summary: dict = field(default_factory=dict)


def _summary(r: DayRunner) -> dict:
    c = r.state.counts
    files = [f for d in r.plan.base.days for f in sorted((r.plan.gallery / d.assignments).glob("*.parquet"))]
    today = sorted(Path(r.dirs["assignments"]).glob("*.parquet"))
    summary = {"day": r.plan.day, "version": r.plan.version, "input": [str(f) for f in r.plan.files],
               **{k: v for k, v in c.items() if k != "part_sizes"}, "stage_seconds": r.state.timings}
    summary["quality_day"] = quality(today)
    lineage = None
    if r.plan.manifest is not None and r.plan.base.days:
        table = read_lineage(r.plan.gallery, dataclasses.replace(r.plan.manifest, days=r.plan.base.days))
        lineage = (table.column("old_id").to_numpy(), table.column("new_id").to_numpy())
    summary["quality_gallery"] = quality(files + today, lineage) if r.plan.base.days else summary["quality_day"]
    return summary


def _commit_quantizer(r: DayRunner) -> dict | None:
    """The quantizer the next day starts from: the one trained today (written now), else the stored one."""
    if r.state.new_quantizer is None:
        return r.plan.base.quantizer
    centroids, nlist = r.state.new_quantizer
    rel = output_dirs(r.plan)["quantizer"]
    r.gather(r.submit("commit", write_npy_atomic, centroids, str(r.plan.gallery / rel)))
    return {"path": rel, "nlist": nlist}


def _commit_preprocess(r: DayRunner) -> dict | None:
    """The centring mean learned today (written now), else the stored one."""
    if r.state.new_mean is None:
        return r.plan.base.preprocess
    rel = output_dirs(r.plan)["preprocess"]
    r.gather(r.submit("commit", write_npy_atomic, r.state.new_mean, str(r.plan.gallery / rel)))
    return {"centre": rel}


def commit(r: DayRunner, summary: dict) -> None:
    """Write the report, then swap the manifest: the day is committed when the rename lands."""
    plan, base, c = r.plan, r.plan.base, r.state.counts
    write_report(Path(r.dirs["report"]), summary, r.cfg.to_dict())
    quantizer, preprocess = _commit_quantizer(r), _commit_preprocess(r)
    rel = output_dirs(plan)
    record = DayRecord(
        day=plan.day, version=plan.version, snapshot_before=base.snapshot, snapshot=rel["snapshot"],
        assignments=rel["assignments"], quarantine=rel["quarantine"] if c["quarantined"] else None,
        report=rel["report"], input_checksum=plan.checksum, config_digest=r.cfg.digest(), config=r.cfg.to_dict(),
        next_cluster_id_before=base.next_cluster_id, next_cluster_id_after=base.next_cluster_id + c["new_clusters"],
        n_clusters_after=c["gallery_clusters"], n_faces_after=c["gallery_faces"], n_faces=c["faces_valid"],
        n_quarantined=c["quarantined"], committed_at=now_utc(), quantizer=quantizer, preprocess=preprocess)
    manifest = Manifest(dim=plan.dim, n_shards=plan.n_shards, version=plan.version,
                        next_cluster_id=record.next_cluster_id_after, snapshot=record.snapshot,
                        n_clusters=record.n_clusters_after, n_faces=record.n_faces_after,
                        days=[*base.days, record], quantizer=quantizer, preprocess=preprocess)
    write_manifest(plan.gallery, manifest)


def _run_stages(r: DayRunner) -> dict:
    t0 = time.perf_counter()
    stage_ingest(r)
    stage_assign(r)
    labels = stage_cluster(r)
    stage_merge(r, labels)
    r.state.timings["total"] = time.perf_counter() - t0
    summary = _summary(r)
    commit(r, summary)
    return summary


def run_day(client: Client, input_path: str | Path, gallery: str | Path, cfg: Config, day: str | None = None,
            force: bool = False, progress: Progress | None = None) -> DayResult:
    """Run one day into the gallery; the gallery is unchanged unless the day commits."""
    plan = plan_day(input_path, gallery, cfg, day, force)
    if plan.skip_reason:
        log.warning(plan.skip_reason)
        return DayResult("skipped", plan.day, plan.skip_reason)
    if plan.dropped_days:
        log.warning("recomputing %s drops the committed days %s from the gallery", plan.day, plan.dropped_days)
    root_existed = plan.gallery.exists()
    runner = DayRunner(client, cfg, plan, progress)
    try:
        report = str(plan.gallery / output_dirs(plan)["report"] / "dask-report.html")
        with client.as_current(), performance_report(filename=report):
            summary = _run_stages(runner)
    except BaseException:
        remove_uncommitted(plan.gallery, list(output_dirs(plan).values()))
        if not root_existed:
            shutil.rmtree(plan.gallery, ignore_errors=True)
        raise
    result = DayResult("committed", plan.day, f"day {plan.day} committed as version {plan.version}", summary)
    if cfg.consolidate.after_day:  # the day is committed: a failure here leaves it, and removes only its own writes
        merged = consolidate_gallery(client, plan.gallery, cfg, progress)
        summary["consolidate"] = {"merges": merged.merges, "version": merged.version, "message": merged.message}
        log.info(merged.message)
    return result
