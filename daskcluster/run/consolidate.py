"""Cross-day consolidation: merging gallery clusters that are one person split across days.

Why: a face joins a cluster only when it is close to the cluster's centre as it was at the start of the day.
A person seen from a new angle, camera or light on a later day can miss his cluster and seed a second one,
which then grows on its own. Consolidation compares the clusters' centres with each other and merges such
pairs. It never rewrites a day's assignments: the merges go to a cumulative lineage table that readers follow
(:mod:`daskcluster.lineage`), so ``export`` and ``eval`` see one id per merged cluster.

The merge rule (every similarity is the cosine similarity of two clusters' unit centres):

1. Eligible clusters: joinable (a low-quality singleton never merges) and at least ``consolidate.min_count``
   faces.
2. Candidates: each eligible cluster's ``consolidate.k`` most similar eligible centres (a k-NN search on the
   workers: every shard's centres against every shard), kept when both

   * ``sim >= consolidate.threshold + 0.1 / sqrt(n_min)``, ``n_min`` the smaller cluster's face count. This is
     the size-aware margin: the centre of n faces is the mean of n noisy unit vectors, its direction errs by
     ~1/sqrt(n) of the face noise, so a small cluster's centre can come close to a stranger's by chance. A pair
     whose smaller side has 2 faces needs +0.071, 25 faces +0.02, 100 faces +0.01;
   * ``n_a + n_b <= cluster.max_size`` when that is set (a merge must not build what step 2 would re-cut).
3. Mutual best: a cluster's best candidate is its most similar one (ties to the smaller id), and a pair merges
   only when each is the other's best. The merging pairs are then a matching: no cluster takes part in two
   merges of one round, so no chain A-B-C (each link plausible, the ends strangers) can form, and the result
   depends neither on the order of the merges nor on the sharding. ``rounds`` repeats 1-3 on the merged centres;
   each round can extend a merge by one more link, which must again be a mutual best.
4. The survivor is the smaller (older) id; its mean becomes the count-weighted mean of the two means, its count
   the sum, its first and last day the earlier and the later. The update runs at the owning shards
   (``cluster_id % n_shards``): an absorbed cluster's sums travel to its survivor's shard as a task result.

Durability is a day's: a new snapshot version (every shard) and the cumulative lineage are written, then the
manifest is swapped; on any failure what was written is removed and the gallery is unchanged. With nothing to
merge nothing is written. The driver holds futures and the candidate pairs (one row per eligible cluster at
most), never the centres.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from distributed import Client, Future

from daskcluster.config import Config
from daskcluster.gallery.lineage import LINEAGE_SCHEMA, lineage_in_force, lineage_path, read_lineage, write_lineage
from daskcluster.gallery.manifest import (
    GalleryError,
    Manifest,
    load_npy,
    now_utc,
    read_manifest,
    remove_uncommitted,
    version_dir,
    write_manifest,
)
from daskcluster.run.executor import DayRunner, Progress
from daskcluster.run.plan import BaseState, DayPlan
from daskcluster.search.index import (
    IndexSpec,
    Shard,
    build_shard,
    choose_index,
    sample_rows,
    search_shard,
    train_quantizer,
)
from daskcluster.stages.centres import ClusterShard, load_shard, write_shard

log = logging.getLogger(__name__)

__all__ = ["ConsolidateResult", "Merges", "consolidate_gallery", "mutual_best", "size_aware_threshold"]

SIZE_MARGIN = 0.1  # similarity added to consolidate.threshold for a pair whose smaller cluster has one face


@dataclass
class ConsolidateResult:
    merges: int           # clusters absorbed, i.e. lineage rows added
    added: pa.Table       # the lineage rows added (lineage.LINEAGE_SCHEMA)
    version: int | None   # the manifest version committed; None when there was nothing to merge
    message: str
    rounds: int = 0       # rounds run (a round that finds nothing ends the run)
    n_clusters: int = 0   # clusters in the gallery afterwards


# --------------------------------------------------------------------------------------------- tasks
@dataclass
class Centres:
    """One shard's eligible clusters: the queries, and the database, of the centre search."""

    ids: np.ndarray    # (n,) int64, ascending
    xq: np.ndarray     # (n, d) float32 unit centres
    count: np.ndarray  # (n,) int64 faces

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Candidates:
    """Each query cluster ``a``'s best candidate ``b`` (clusters without one are left out)."""

    a: np.ndarray
    b: np.ndarray
    sim: np.ndarray
    n_a: np.ndarray
    n_b: np.ndarray


@dataclass
class Merges:
    """One round's merges: ``absorbed[i]`` goes into ``survivor[i]`` (the smaller id)."""

    survivor: np.ndarray
    absorbed: np.ndarray
    similarity: np.ndarray

    def __len__(self) -> int:
        return len(self.absorbed)


@dataclass
class Moved:
    """Absorbed clusters on their way to their survivors' shard, as sums (mean * count)."""

    survivor: np.ndarray
    count: np.ndarray
    sums: np.ndarray  # (m, d) float64
    first_day: np.ndarray
    last_day: np.ndarray


def eligible_centres(table: ClusterShard, min_count: int) -> Centres:
    """The ``consolidate-eligible`` task: the shard's joinable clusters of at least ``min_count`` faces."""
    keep = table.joinable & (table.count >= min_count)
    return Centres(table.cluster_id[keep], table.centres()[keep], table.count[keep])


def centre_index(centres: Centres, spec: IndexSpec, centroids: np.ndarray | None, backend: str) -> Shard:
    """The ``consolidate-index`` task: the searchable form of one shard's eligible centres."""
    return build_shard(centres.ids, centres.xq, spec, centroids, backend)


def search_centres(index: Shard, own: Centres, queries: Centres, k: int, min_sim: float) -> tuple:
    """The ``consolidate-search`` task: top-k of ``queries`` in one shard (similarity >= ``min_sim``), with the
    neighbours' face counts, which the size rules need: ``(D, I, N)``."""
    D, I = search_shard(index, queries.xq, k, min_sim)
    if not len(own):
        return D, I, np.zeros_like(I)
    pos = np.minimum(np.searchsorted(own.ids, I), len(own) - 1)
    return D, I, np.where(I >= 0, own.count[pos], 0)


def merge_counted(results: list[tuple], k: int) -> tuple:
    """:func:`search.merge_topk` for ``(D, I, N)``: the same order (similarity, then the smaller id)."""
    D, I, N = (np.concatenate([r[j] for r in results], axis=1) for j in range(3))
    id_key = np.where(I >= 0, I, np.iinfo(np.int64).max)
    order = np.lexsort((id_key, -D.astype(np.float64)), axis=1)[:, :k]
    return tuple(np.take_along_axis(a, order, axis=1) for a in (D, I, N))


def size_aware_threshold(threshold: float, n_min: np.ndarray) -> np.ndarray:
    """The similarity a pair needs when its smaller cluster has ``n_min`` faces (see the module docstring)."""
    return threshold + SIZE_MARGIN / np.sqrt(np.maximum(n_min, 1))


def best_candidates(queries: Centres, topk: tuple, k: int, threshold: float, max_size: int) -> Candidates:
    """The ``consolidate-best`` task: each query's most similar neighbour among its ``k`` nearest others that
    passes the size-aware threshold and the size cap."""
    D, I, N = topk
    other = (I >= 0) & (I != queries.ids[:, None])
    n_a = queries.count[:, None]
    ok = other & (np.cumsum(other, axis=1) <= k) & (D >= size_aware_threshold(threshold, np.minimum(n_a, N)))
    if max_size > 0:
        ok &= n_a + N <= max_size
    rows = np.flatnonzero(ok.any(axis=1))
    j = ok[rows].argmax(axis=1)
    return Candidates(queries.ids[rows], I[rows, j], D[rows, j], queries.count[rows], N[rows, j])


def take_absorbed(table: ClusterShard, merges: Merges, n_shards: int) -> list[Moved]:
    """The ``consolidate-take`` task: the shard's absorbed clusters as sums, one list entry per target shard."""
    mine = merges.absorbed % n_shards == table.shard
    pos = np.searchsorted(table.cluster_id, merges.absorbed[mine])
    if len(pos) and not np.array_equal(table.cluster_id[np.minimum(pos, len(table) - 1)], merges.absorbed[mine]):
        raise ValueError(f"shard {table.shard}: asked to give away clusters it does not own")
    survivor, count = merges.survivor[mine], table.count[pos]
    sums = table.mean[pos].astype(np.float64) * count[:, None]
    to = survivor % n_shards
    return [Moved(survivor[to == s], count[to == s], sums[to == s], table.first_day[pos][to == s],
                  table.last_day[pos][to == s]) for s in range(n_shards)]


def absorb(table: ClusterShard, moved: list[Moved], merges: Merges) -> ClusterShard:
    """The ``consolidate-absorb`` task: add the moved clusters to their survivors, drop the shard's absorbed."""
    survivor = np.concatenate([m.survivor for m in moved])
    pos = np.searchsorted(table.cluster_id, survivor)
    if len(pos) and (len(np.unique(pos)) < len(pos)
                     or not np.array_equal(table.cluster_id[np.minimum(pos, len(table) - 1)], survivor)):
        raise ValueError(f"shard {table.shard}: merges into clusters it does not own, or twice into one")
    count, mean = table.count.copy(), table.mean.astype(np.float64)
    first, last = table.first_day.copy(), table.last_day.copy()
    added = np.concatenate([m.count for m in moved])
    total = mean[pos] * count[pos, None] + np.concatenate([m.sums for m in moved])
    count[pos] += added
    mean[pos] = total / count[pos, None]
    first[pos] = np.minimum(first[pos], np.concatenate([m.first_day for m in moved]))
    last[pos] = np.maximum(last[pos], np.concatenate([m.last_day for m in moved]))
    keep = ~np.isin(table.cluster_id, merges.absorbed)
    return dataclasses.replace(table, cluster_id=table.cluster_id[keep], count=count[keep],
                               mean=mean[keep].astype(np.float32), first_day=first[keep], last_day=last[keep],
                               joinable=table.joinable[keep])


def _sample(centres: Centres, n_max: int) -> tuple:
    return sample_rows(centres.ids, centres.xq, n_max)


# --------------------------------------------------------------------------------------------- driver
def mutual_best(c: Candidates) -> Merges:
    """The pairs that are each other's best candidate, once each (survivor = the smaller id); the pair's
    similarity is the smaller of its two directions."""
    order = np.argsort(c.a, kind="stable")
    a, b, sim = c.a[order], c.b[order], c.sim[order]
    pos = np.minimum(np.searchsorted(a, b), max(len(a) - 1, 0))
    mutual = (a[pos] == b) & (b[pos] == a) & (a < b) if len(a) else np.zeros(0, bool)
    return Merges(a[mutual], b[mutual], np.minimum(sim[mutual], sim[pos[mutual]]).astype(np.float32))


def _concat(cands: list[Candidates]) -> Candidates:
    return Candidates(*(np.concatenate([getattr(c, f.name) for c in cands])
                        for f in dataclasses.fields(Candidates)))


def _runner(client: Client, cfg: Config, gallery: Path, manifest: Manifest, progress: Progress | None) -> DayRunner:
    """A DayRunner for its task helpers (naming, placement, progress, reductions); the plan only names the
    gallery, the last committed day and the version this run writes."""
    plan = DayPlan(day=manifest.last_day, gallery=gallery, files=[], infos=[], dim=manifest.dim, partitions=[],
                   checksum="", manifest=manifest, base=BaseState(), version=manifest.version + 1,
                   n_shards=manifest.n_shards)
    return DayRunner(client, cfg, plan, progress)


def _centroids(r: DayRunner, spec: IndexSpec, queries: list[Future]) -> Future | None:
    """The IVF quantizer for the centre search: the gallery's when its list count fits, else one trained on a
    sample of the eligible centres (on a worker)."""
    if spec.is_flat:
        return None
    stored = r.plan.manifest.quantizer
    if stored and stored["nlist"] == spec.nlist:
        return r.submit("consolidate-quantizer", load_npy, str(r.plan.gallery / stored["path"]))
    n_max = max(r.cfg.search.train_sample, 39 * spec.nlist)
    samples = [r.submit("consolidate-sample", _sample, q, n_max) for q in queries]
    return r.submit("consolidate-train", train_quantizer, samples, spec.nlist, n_max, r.backend)


def _find_merges(r: DayRunner, tables: list[Future]) -> Merges:
    """One round's mutual-best pairs: eligible centres indexed at their shards, every shard's centres searched
    against every shard, each cluster's best candidate chosen on the workers; only those come back."""
    ccfg, homes = r.cfg.consolidate, r.homes(tables)
    queries = [r.submit_at(h, "consolidate-eligible", eligible_centres, t, ccfg.min_count)
               for t, h in zip(tables, homes)]
    n_eligible = sum(r.gather([r.submit("count", len, q) for q in queries]))
    if n_eligible < 2:
        return mutual_best(_concat([]))
    spec = choose_index(n_eligible, r.cfg.search)
    centroids = _centroids(r, spec, queries)
    index = r.wait("consolidate-index", [r.submit_at(h, "consolidate-index", centre_index, q, spec, centroids,
                                                     r.backend) for q, h in zip(queries, homes)])
    index_homes, best = r.homes(index), []
    for q in queries:  # k + 1: a centre finds itself
        per_shard = [r.submit_at(h, "consolidate-search", search_centres, s, own, q, ccfg.k + 1, ccfg.threshold)
                     for s, own, h in zip(index, queries, index_homes)]
        top = r.tree_reduce("consolidate-merge", merge_counted, per_shard, ccfg.k + 1)
        best.append(r.submit("consolidate-best", best_candidates, q, top, ccfg.k, ccfg.threshold,
                             r.cfg.cluster.max_size))
    merges = mutual_best(_concat(r.gather(r.wait("consolidate-search", best))))
    log.info("consolidate: %d eligible clusters (%s), %d mutual-best pairs", n_eligible, spec.describe(),
             len(merges))
    return merges


def _apply(r: DayRunner, tables: list[Future], merges: Merges) -> list[Future]:
    """Each absorbed cluster's sums moved to its survivor's shard; every shard updated where it lives."""
    n_shards, homes = len(tables), r.homes(tables)
    plan = r.client.scatter(merges)
    moved = [r.submit_at(h, "consolidate-take", take_absorbed, t, plan, n_shards) for t, h in zip(tables, homes)]
    return r.wait("consolidate-absorb", [
        r.submit_at(h, "consolidate-absorb", absorb, t, [r.pick("moved", m, s) for m in moved], plan)
        for s, (t, h) in enumerate(zip(tables, homes))])


def _merge_rounds(r: DayRunner, rounds: int) -> tuple[list[Future], list[Merges], int]:
    """Up to ``rounds`` rounds of merges; returns the shard tables, each round's merges and the rounds run."""
    manifest = r.plan.manifest
    snapshot = str(r.plan.gallery / manifest.snapshot)
    tables = r.wait("consolidate-load", r.spread("consolidate-load", load_shard,
                                                 [(snapshot, s, manifest.dim) for s in range(manifest.n_shards)]))
    done: list[Merges] = []
    for i in range(rounds):
        merges = _find_merges(r, tables)
        if not len(merges):
            return tables, done, i + 1
        tables = _apply(r, tables, merges)
        done.append(merges)
    return tables, done, rounds


# --------------------------------------------------------------------------------------------- commit
def _lineage_rows(done: list[Merges], day: str, version: int) -> pa.Table:
    n = sum(len(m) for m in done)
    return pa.Table.from_arrays([
        pa.array(np.concatenate([m.absorbed for m in done]), pa.int64()),
        pa.array(np.concatenate([m.survivor for m in done]), pa.int64()),
        pa.array(np.full(n, np.datetime64(day, "D")), pa.date32()),
        pa.array(np.concatenate([m.similarity for m in done]), pa.float32()),
        pa.array(np.full(n, version, np.int64), pa.int64()),
    ], schema=LINEAGE_SCHEMA)


def _next_manifest(r: DayRunner, snapshot: str, lineage: str, n_clusters: int, note: dict) -> Manifest:
    """The last day's record now ends with the consolidated snapshot and lineage; what they replaced is noted
    in its ``consolidated`` list. Earlier records are untouched, so a forced re-run of the last day starts from
    the day before it, with the day before's lineage."""
    manifest = r.plan.manifest
    last = max(manifest.days, key=lambda d: d.day)
    note = {"version": r.plan.version, "snapshot_before": last.snapshot, "n_clusters_before": last.n_clusters_after,
            "lineage_before": lineage_in_force(manifest), **note, "committed_at": now_utc()}
    record = dataclasses.replace(last, snapshot=snapshot, lineage=lineage, n_clusters_after=n_clusters,
                                 consolidated=[*last.consolidated, note])
    return dataclasses.replace(manifest, version=r.plan.version, snapshot=snapshot, lineage=lineage,
                               n_clusters=n_clusters, days=[record if d is last else d for d in manifest.days])


def _commit(r: DayRunner, tables: list[Future], done: list[Merges], n_rounds: int) -> ConsolidateResult:
    """Write the snapshot (at the shards) and the cumulative lineage, then swap the manifest."""
    gallery, version, manifest = r.plan.gallery, r.plan.version, r.plan.manifest
    rel_snapshot, rel_lineage = version_dir("snapshots", version), lineage_path(version)
    added = _lineage_rows(done, manifest.last_day, version)
    ccfg = r.cfg.consolidate
    note = {"merges": added.num_rows, "rounds": n_rounds, "threshold": ccfg.threshold, "k": ccfg.k,
            "min_count": ccfg.min_count, "max_size": r.cfg.cluster.max_size, "config_digest": r.cfg.digest()}
    try:
        writes = [r.submit_at(h, "consolidate-write", write_shard, t, str(gallery / rel_snapshot))
                  for t, h in zip(tables, r.homes(tables))]
        n_clusters = sum(r.gather(r.wait("consolidate-write", writes)))
        write_lineage(pa.concat_tables([read_lineage(gallery, manifest), added]), gallery / rel_lineage)
        write_manifest(gallery, _next_manifest(r, rel_snapshot, rel_lineage, n_clusters, note))
    except BaseException:
        remove_uncommitted(gallery, [rel_snapshot, rel_lineage])
        raise
    message = (f"{added.num_rows} clusters merged in {n_rounds} round(s): {manifest.n_clusters} -> {n_clusters} "
               f"clusters, committed as version {version}")
    return ConsolidateResult(added.num_rows, added, version, message, n_rounds, n_clusters)


def consolidate_gallery(client: Client, gallery: str | Path, cfg: Config, progress: Progress | None = None,
                        rounds: int = 1) -> ConsolidateResult:
    """Merge the gallery's clusters that are one person split across days (the rule is in the module
    docstring) and commit them as a new version; with nothing to merge the gallery is left as it is."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    manifest = read_manifest(gallery)
    if manifest is None:
        raise GalleryError(f"{gallery} is not a gallery (no manifest.json)")
    nothing = ConsolidateResult(0, LINEAGE_SCHEMA.empty_table(), None, "", 0, manifest.n_clusters)
    if manifest.snapshot is None or manifest.n_clusters < 2:
        return dataclasses.replace(nothing, message="nothing to merge: the gallery has fewer than two clusters")
    r = _runner(client, cfg, Path(gallery), manifest, progress)
    with client.as_current():
        tables, done, n_rounds = _merge_rounds(r, rounds)
        if not done:
            return dataclasses.replace(nothing, rounds=n_rounds, message=(
                f"nothing to merge: no mutual-best pair of clusters reaches consolidate.threshold="
                f"{cfg.consolidate.threshold} (+{SIZE_MARGIN}/sqrt(smaller count)); the gallery is unchanged"))
        return _commit(r, tables, done, n_rounds)
