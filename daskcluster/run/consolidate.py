"""Cross-day consolidation on an executor: rounds of mutual-best merges found and applied where the shards live,
then committed as a new gallery version. The merge rule is in :mod:`daskcluster.stages.consolidate`.

Durability is a day's: a new snapshot version (every shard) and the cumulative lineage are written, then the
manifest is swapped; on any failure what was written is removed and the gallery is unchanged. With nothing to
merge nothing is written. The driver holds handles and the candidate pairs (one row per eligible cluster at
most), never the centres.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from daskcluster.backends import resolve_backend_name
from daskcluster.config import Config
from daskcluster.gallery.layout import lineage_path, version_dir
from daskcluster.gallery.lineage import LINEAGE_SCHEMA, lineage_in_force, read_lineage, write_lineage
from daskcluster.gallery.manifest import (
    GalleryError,
    Manifest,
    now_utc,
    read_manifest,
    remove_uncommitted,
    write_manifest,
)
from daskcluster.gallery.store import gpath
from daskcluster.gallery.tables import SnapshotRef, load_shard, write_shard
from daskcluster.run.executor import Progress, as_executor
from daskcluster.search import choose_index, quantizer
from daskcluster.search.fanout import by_home, search_all
from daskcluster.stages.centres import CentreTable
from daskcluster.stages.consolidate import (
    SIZE_MARGIN,
    Merges,
    absorb,
    best_candidates,
    centre_index,
    centre_sample,
    concat_candidates,
    eligible_centres,
    mutual_best,
    search_centres,
    take_absorbed,
)

log = logging.getLogger(__name__)

__all__ = ["ConsolidateResult", "consolidate_after_day", "consolidate_gallery"]


@dataclass
class ConsolidateResult:
    merges: int  # clusters absorbed, i.e. lineage rows added
    added: pa.Table  # the lineage rows added (lineage.LINEAGE_SCHEMA)
    version: int | None  # the manifest version committed; None when there was nothing to merge
    message: str
    rounds: int = 0  # rounds run (a round that finds nothing ends the run)
    n_clusters: int = 0  # clusters in the gallery afterwards


@dataclass(frozen=True)
class _Job:
    """One consolidation run: where it runs, on which gallery state, and the version it writes."""

    ex: Any
    cfg: Config
    gallery: Path
    manifest: Manifest
    backend: str

    @property
    def version(self) -> int:
        return self.manifest.version + 1


def _find_merges(job: _Job, tables: list) -> Merges:
    """One round's mutual-best pairs: eligible centres indexed at their shards, every shard's centres searched
    against every shard, each cluster's best candidate chosen on the workers; only those come back."""
    ex, ccfg = job.ex, job.cfg.consolidate
    homes = ex.homes(tables)
    queries = [
        ex.submit_at(h, "consolidate-eligible", eligible_centres, t, ccfg.min_count) for t, h in zip(tables, homes)
    ]
    n_eligible = sum(ex.gather([ex.submit("count", len, q) for q in queries]))
    if n_eligible < 2:
        return mutual_best(concat_candidates([]))
    spec = choose_index(n_eligible, job.cfg.search)
    quant = quantizer(
        ex,
        "consolidate",
        spec,
        job.cfg.search,
        job.backend,
        queries,
        centre_sample,
        job.manifest.quantizer,
        job.gallery,
    )
    index = ex.wait(
        "consolidate-index",
        [
            ex.submit_at(h, "consolidate-index", centre_index, q, spec, quant.centroids, job.backend)
            for q, h in zip(queries, homes)
        ],
    )
    # k + 1: a centre finds itself; each shard's search also reports the neighbours' face counts
    tops = search_all(ex, "consolidate", index, queries, search_centres, ccfg.k + 1, min_sim=ccfg.threshold)
    best = [
        ex.submit("consolidate-best", best_candidates, q, top, ccfg.k, ccfg.threshold, job.cfg.cluster.max_size)
        for q, top in zip(queries, tops)
    ]
    merges = mutual_best(concat_candidates(ex.gather(ex.wait("consolidate-search", best))))
    log.info("consolidate: %d eligible clusters (%s), %d mutual-best pairs", n_eligible, spec.describe(), len(merges))
    return merges


def _entries(items: list, positions: list[int]) -> list:
    """The ``moved`` task: the entries of one ``take_absorbed`` list bound for one worker's shards."""
    return [items[i] for i in positions]


def _absorb_at(table: CentreTable, picked: list[list], j: int, merges: Merges) -> CentreTable:
    """The ``consolidate-absorb`` task: the shard's ``j``-th entry of every source's pick, then ``absorb``."""
    return absorb(table, [p[j] for p in picked], merges)


def _apply(job: _Job, tables: list, merges: Merges) -> list:
    """Each absorbed cluster's sums moved to its survivor's shard; every shard updated where it lives. Each
    source's moved sums are split once per destination worker, where the source lives: shards x workers
    ``moved`` tasks, each travelling once to its worker."""
    ex = job.ex
    n_shards, homes = len(tables), ex.homes(tables)
    plan = ex.scatter(merges)
    moved = [ex.submit_at(h, "consolidate-take", take_absorbed, t, plan, n_shards) for t, h in zip(tables, homes)]
    updated: list = [None] * n_shards
    for h, shards in by_home(homes):
        picked = [ex.submit_at(hm, "moved", _entries, m, shards) for m, hm in zip(moved, homes)]
        for j, s in enumerate(shards):
            updated[s] = ex.submit_at(h, "consolidate-absorb", _absorb_at, tables[s], picked, j, plan)
    return ex.wait("consolidate-absorb", updated)


def _merge_rounds(job: _Job, rounds: int) -> tuple[list, list[Merges], int]:
    """Up to ``rounds`` rounds of merges; returns the shard tables, each round's merges and the rounds run."""
    manifest = job.manifest
    snapshot = SnapshotRef.of(job.gallery, manifest)
    tables = job.ex.wait(
        "consolidate-load",
        job.ex.spread("consolidate-load", load_shard, [(snapshot, s, manifest.dim) for s in range(manifest.n_shards)]),
    )
    done: list[Merges] = []
    for i in range(rounds):
        merges = _find_merges(job, tables)
        if not len(merges):
            return tables, done, i + 1
        tables = _apply(job, tables, merges)
        done.append(merges)
    return tables, done, rounds


def _lineage_rows(done: list[Merges], day: str, version: int) -> pa.Table:
    n = sum(len(m) for m in done)
    return pa.Table.from_arrays(
        [
            pa.array(np.concatenate([m.absorbed for m in done]), pa.int64()),
            pa.array(np.concatenate([m.survivor for m in done]), pa.int64()),
            pa.array(np.full(n, np.datetime64(day, "D")), pa.date32()),
            pa.array(np.concatenate([m.similarity for m in done]), pa.float32()),
            pa.array(np.full(n, version, np.int64), pa.int64()),
        ],
        schema=LINEAGE_SCHEMA,
    )


def _next_manifest(job: _Job, snapshot: str, lineage: str, n_clusters: int, note: dict) -> Manifest:
    """The last day's record now ends with the consolidated snapshot and lineage; what they replaced is noted
    in its ``consolidated`` list. Earlier records are untouched, so a forced re-run of the last day starts from
    the day before it, with the day before's lineage."""
    manifest = job.manifest
    last = max(manifest.days, key=lambda d: d.day)
    note = {
        "version": job.version,
        "snapshot_before": last.snapshot,
        "deltas_before": list(last.deltas),
        "n_clusters_before": last.n_clusters_after,
        "lineage_before": lineage_in_force(manifest),
        **note,
        "committed_at": now_utc(),
    }
    # a whole new base, unlisted (survivors moved): the next day re-lists every cluster
    tables = {"snapshot": snapshot, "deltas": [], "base_rows": n_clusters, "delta_rows": 0, "lists": None}
    record = dataclasses.replace(
        last, lineage=lineage, n_clusters_after=n_clusters, consolidated=[*last.consolidated, note], **tables
    )
    return dataclasses.replace(
        manifest,
        version=job.version,
        lineage=lineage,
        n_clusters=n_clusters,
        days=[record if d is last else d for d in manifest.days],
        **tables,
    )


def _commit(job: _Job, tables: list, done: list[Merges], n_rounds: int) -> ConsolidateResult:
    """Write the snapshot (at the shards) and the cumulative lineage, then swap the manifest."""
    gallery, version, manifest = job.gallery, job.version, job.manifest
    rel_snapshot, rel_lineage = version_dir("snapshots", version), lineage_path(version)
    added = _lineage_rows(done, manifest.last_day, version)
    ccfg = job.cfg.consolidate
    note = {
        "merges": added.num_rows,
        "rounds": n_rounds,
        "threshold": ccfg.threshold,
        "k": ccfg.k,
        "min_count": ccfg.min_count,
        "max_size": job.cfg.cluster.max_size,
        "config_digest": job.cfg.digest(),
    }
    try:
        writes = [
            job.ex.submit_at(h, "consolidate-write", write_shard, t, str(gallery / rel_snapshot))
            for t, h in zip(tables, job.ex.homes(tables))
        ]
        n_clusters = sum(job.ex.gather(job.ex.wait("consolidate-write", writes)))
        write_lineage(pa.concat_tables([read_lineage(gallery, manifest), added]), gallery / rel_lineage)
        write_manifest(gallery, _next_manifest(job, rel_snapshot, rel_lineage, n_clusters, note))
    except BaseException:
        remove_uncommitted(gallery, [rel_snapshot, rel_lineage])
        raise
    message = (
        f"{added.num_rows} clusters merged in {n_rounds} round(s): {manifest.n_clusters} -> {n_clusters} "
        f"clusters, committed as version {version}"
    )
    return ConsolidateResult(added.num_rows, added, version, message, n_rounds, n_clusters)


def consolidate_gallery(
    client: Any, gallery: str | Path, cfg: Config, progress: Progress | None = None, rounds: int = 1
) -> ConsolidateResult:
    """Merge the gallery's clusters that are one person split across days (the rule is in
    :mod:`daskcluster.stages.consolidate`) and commit them as a new version; with nothing to merge the gallery is
    left as it is. ``client``: a Dask client, or an executor."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    manifest = read_manifest(gallery)
    if manifest is None:
        raise GalleryError(f"{gallery} is not a gallery (no manifest.json)")
    nothing = ConsolidateResult(0, LINEAGE_SCHEMA.empty_table(), None, "", 0, manifest.n_clusters)
    if manifest.snapshot is None or manifest.n_clusters < 2:
        return dataclasses.replace(nothing, message="nothing to merge: the gallery has fewer than two clusters")
    ex = as_executor(client, progress)
    job = _Job(ex, cfg, gpath(gallery), manifest, resolve_backend_name(cfg.backend))
    with ex.current():
        tables, done, n_rounds = _merge_rounds(job, rounds)
        if not done:
            return dataclasses.replace(
                nothing,
                rounds=n_rounds,
                message=(
                    f"nothing to merge: no mutual-best pair of clusters reaches consolidate.threshold="
                    f"{cfg.consolidate.threshold} (+{SIZE_MARGIN}/sqrt(smaller count)); the gallery is unchanged"
                ),
            )
        return _commit(job, tables, done, n_rounds)


def consolidate_after_day(client: Any, gallery: str | Path, cfg: Config, progress: Progress | None = None) -> dict:
    """``consolidate.after_day``: one consolidation of a gallery whose day has just committed (a failure here
    leaves the day committed and removes only consolidation's own writes); its result for the day's summary."""
    merged = consolidate_gallery(client, gallery, cfg, progress)
    log.info(merged.message)
    return {"merges": merged.merges, "version": merged.version, "message": merged.message}
