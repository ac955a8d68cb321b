"""Gallery maintenance outside the day: re-training the shared IVF quantizer, and re-listing every cluster
under it as one committed version."""

from __future__ import annotations

import dataclasses
import logging
from functools import partial
from pathlib import Path

from daskcluster.backends import resolve_backend_name
from daskcluster.config import Config
from daskcluster.gallery import ids
from daskcluster.gallery.layout import quantizer_path
from daskcluster.gallery.manifest import (
    GalleryError,
    committed_assignment_files,
    read_manifest,
    remove_uncommitted,
    write_manifest,
    write_npy_atomic,
)
from daskcluster.gallery.store import gpath
from daskcluster.gallery.tables import SnapshotRef, load_shard
from daskcluster.run.compact import compact_gallery
from daskcluster.run.executor import InProcessExecutor
from daskcluster.search import choose_index, quantizer, sample_rows

log = logging.getLogger(__name__)

__all__ = ["rebuild_id_index", "retrain_quantizer"]


def _shard_sample(snapshot: SnapshotRef, dim: int, shard: int, n_max: int) -> tuple:
    """One shard's share of the training sample (the shard is loaded, sampled and dropped)."""
    table = load_shard(snapshot, shard, dim)
    return sample_rows(table.cluster_id, table.centres(), n_max)


def retrain_quantizer(gallery: str | Path, cfg: Config) -> dict:
    """Train a new quantizer on the committed gallery (one shard in memory at a time), re-list every cluster
    under it into a new base, and commit both as one new manifest version; the next day's search uses it."""
    manifest = read_manifest(gallery)
    if manifest is None or manifest.snapshot is None or manifest.n_clusters == 0:
        raise GalleryError(f"{gallery} has no committed clusters to train on")
    spec = choose_index(manifest.n_clusters, cfg.search.model_copy(update={"flat_below": 0, "exact": False}))
    ex = InProcessExecutor()
    sample = partial(_shard_sample, SnapshotRef.of(gallery, manifest), manifest.dim)
    trained = quantizer(
        ex, "assign", spec, cfg.search, resolve_backend_name(cfg.backend), list(range(manifest.n_shards)), sample
    )
    version = manifest.version + 1
    rel = quantizer_path(version)
    centroids = ex.gather(trained.centroids)
    record = {"path": rel, "nlist": spec.nlist}
    try:
        write_npy_atomic(centroids, gpath(gallery) / rel)
        compact_gallery(ex, gallery, cfg, relist=(centroids, resolve_backend_name(cfg.backend), record))
    except BaseException:
        remove_uncommitted(gallery, [rel])
        raise
    log.info("quantizer with %d lists trained on %d clusters", spec.nlist, manifest.n_clusters)
    return {"version": version, **record, "clusters": manifest.n_clusters}


def rebuild_id_index(gallery: str | Path) -> dict:
    """The face-id index rebuilt from every committed assignment (if it was lost or damaged), committed as a
    new version: the manifest and the last day's record point at the new run."""
    manifest = read_manifest(gallery)
    if manifest is None or not manifest.days:
        raise GalleryError(f"{gallery} has no committed days")
    version = manifest.version + 1
    buckets = manifest.id_index["buckets"] if manifest.id_index else ids.bucket_count(0, manifest.n_faces)
    try:
        index = ids.rebuild(gallery, committed_assignment_files(gallery, manifest), version, buckets)
        days = list(manifest.days)
        last = max(range(len(days)), key=lambda i: days[i].day)
        days[last] = dataclasses.replace(days[last], id_index=index)
        write_manifest(gallery, dataclasses.replace(manifest, version=version, id_index=index, days=days))
    except BaseException:
        remove_uncommitted(gallery, [ids.run_dir(version, 0)])
        raise
    return {"version": version, "ids": sum(r["ids"] for r in index["runs"])}
