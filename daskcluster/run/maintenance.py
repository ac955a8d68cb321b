"""Gallery maintenance outside the day: re-training the shared IVF quantizer."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from daskcluster.config import Config
from daskcluster.gallery.manifest import GalleryError, read_manifest, write_manifest, write_npy_atomic
from daskcluster.search.index import choose_index, sample_rows, train_quantizer
from daskcluster.stages.centres import load_shard

log = logging.getLogger(__name__)


def retrain_quantizer(gallery: str | Path, cfg: Config) -> dict:
    """Train a new quantizer on the committed gallery (one shard in memory at a time) and commit it as a
    new manifest version; the next day's assign search uses it."""
    manifest = read_manifest(gallery)
    if manifest is None or manifest.snapshot is None or manifest.n_clusters == 0:
        raise GalleryError(f"{gallery} has no committed clusters to train on")
    spec = choose_index(manifest.n_clusters, cfg.search.model_copy(update={"flat_below": 0, "exact": False}))
    n_max = max(cfg.search.train_sample, 39 * spec.nlist)
    samples = []
    for s in range(manifest.n_shards):
        shard = load_shard(Path(gallery) / manifest.snapshot, s, manifest.dim)
        samples.append(sample_rows(shard.cluster_id, shard.centres(), n_max))
    centroids = train_quantizer(samples, spec.nlist, n_max, cfg.backend if cfg.backend != "auto" else "cpu")
    version = manifest.version + 1
    rel = f"quantizers/v{version:06d}.npy"
    write_npy_atomic(centroids, Path(gallery) / rel)
    quantizer = {"path": rel, "nlist": spec.nlist}
    days = list(manifest.days)
    if days:
        days[-1] = dataclasses.replace(days[-1], quantizer=quantizer)
    write_manifest(gallery, dataclasses.replace(manifest, version=version, quantizer=quantizer, days=days))
    log.info("quantizer with %d lists trained on %d clusters", spec.nlist, manifest.n_clusters)
    return {"version": version, **quantizer, "clusters": manifest.n_clusters}
