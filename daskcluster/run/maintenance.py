"""Gallery maintenance outside the day: re-training the shared IVF quantizer."""

from __future__ import annotations

import dataclasses
import logging
from functools import partial
from pathlib import Path

from daskcluster.backends import resolve_backend_name
from daskcluster.config import Config
from daskcluster.gallery.layout import quantizer_path
from daskcluster.gallery.manifest import GalleryError, read_manifest, write_manifest, write_npy_atomic
from daskcluster.gallery.tables import load_shard
from daskcluster.run.executor import InProcessExecutor
from daskcluster.search import choose_index, quantizer, sample_rows

log = logging.getLogger(__name__)

__all__ = ["retrain_quantizer"]


def _shard_sample(snapshot: Path, dim: int, shard: int, n_max: int) -> tuple:
    """One shard's share of the training sample (the shard is loaded, sampled and dropped)."""
    table = load_shard(snapshot, shard, dim)
    return sample_rows(table.cluster_id, table.centres(), n_max)


def retrain_quantizer(gallery: str | Path, cfg: Config) -> dict:
    """Train a new quantizer on the committed gallery (one shard in memory at a time) and commit it as a
    new manifest version; the next day's assign search uses it."""
    manifest = read_manifest(gallery)
    if manifest is None or manifest.snapshot is None or manifest.n_clusters == 0:
        raise GalleryError(f"{gallery} has no committed clusters to train on")
    spec = choose_index(manifest.n_clusters, cfg.search.model_copy(update={"flat_below": 0, "exact": False}))
    ex = InProcessExecutor()
    sample = partial(_shard_sample, Path(gallery) / manifest.snapshot, manifest.dim)
    trained = quantizer(
        ex, "assign", spec, cfg.search, resolve_backend_name(cfg.backend), list(range(manifest.n_shards)), sample
    )
    version = manifest.version + 1
    rel = quantizer_path(version)
    write_npy_atomic(ex.gather(trained.centroids), Path(gallery) / rel)
    record = {"path": rel, "nlist": spec.nlist}
    days = list(manifest.days)
    if days:
        days[-1] = dataclasses.replace(days[-1], quantizer=record)
    write_manifest(gallery, dataclasses.replace(manifest, version=version, quantizer=record, days=days))
    log.info("quantizer with %d lists trained on %d clusters", spec.nlist, manifest.n_clusters)
    return {"version": version, **record, "clusters": manifest.n_clusters}
