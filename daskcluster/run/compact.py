"""Gallery compaction: a state's base and deltas folded into a new base, committed as a new version.

A day writes a delta of what it changed; readers merge the base and every delta, so reads grow with the number
of deltas. The automatic rule (``gallery.compact_fraction``) is applied by the day itself, which writes a whole
base instead of a delta once the deltas would hold more rows than that fraction of the base
(:mod:`daskcluster.run.day_merge`): each cluster row is then rewritten about once per ``1 / compact_fraction``
deltas' worth of changes, so the amortised bytes written follow the days' changes, not the gallery. This
module is the same fold on demand (``daskcluster compact``). Compaction can
also re-list every cluster under a new quantizer (``retrain``). Earlier states are untouched (vacuum removes
them once no retained state points at them).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from daskcluster.config import Config
from daskcluster.gallery.layout import version_dir
from daskcluster.gallery.manifest import (
    GalleryError,
    Manifest,
    now_utc,
    read_manifest,
    remove_uncommitted,
    write_manifest,
)
from daskcluster.gallery.retention import vacuum
from daskcluster.gallery.store import gpath
from daskcluster.gallery.tables import SnapshotRef, load_shard, write_shard
from daskcluster.run.executor import Progress, as_executor
from daskcluster.search import gallery_lists

log = logging.getLogger(__name__)

__all__ = ["compact_gallery", "maintain_after_day"]


def _compacted(snapshot: SnapshotRef, shard: int, dim: int, out: str, relist: tuple | None) -> int:
    """The ``compact-write`` task: one shard merged (and re-listed) into the new base; returns its rows."""
    table = load_shard(snapshot, shard, dim)
    if relist is not None:
        centroids, backend, spill, below = relist
        lists, spill_id = gallery_lists(centroids, table.centres(), backend, spill, below)
        table = dataclasses.replace(table, list_id=lists, spill_id=spill_id)
    return write_shard(table, out)


def _next(manifest: Manifest, snapshot: str, rows: int, note: dict, relist: tuple | None) -> Manifest:
    """The manifest after a compaction: the last day's record ends with the new base (what it replaced is in
    its ``compactions`` note; a re-listing also sets the quantizer), so the next day starts from it."""
    fields = {"snapshot": snapshot, "deltas": [], "base_rows": rows, "delta_rows": 0}
    fields |= {"lists": manifest.lists} if relist is None else {"lists": relist[2]["path"], "quantizer": relist[2]}
    days = list(manifest.days)
    if days:
        last = max(range(len(days)), key=lambda i: days[i].day)
        days[last] = dataclasses.replace(days[last], **fields, compactions=[*days[last].compactions, note])
    return dataclasses.replace(manifest, version=manifest.version + 1, days=days, **fields)


def compact_gallery(
    where: Any,
    gallery: str | Path,
    cfg: Config,
    progress: Progress | None = None,
    relist: tuple | None = None,
) -> dict:
    """Fold the committed state's deltas into a new base (every shard) and commit it as a new version;
    ``relist``: ``(centroids, backend, quantizer record)`` to re-list every cluster under a new quantizer,
    committed with it. On failure what was written is removed and the gallery is unchanged."""
    manifest = read_manifest(gallery)
    if manifest is None or manifest.snapshot is None:
        raise GalleryError(f"{gallery} has no committed clusters to compact")
    version, ex = manifest.version + 1, as_executor(where, progress)
    rel = version_dir("snapshots", version)
    snapshot = SnapshotRef.of(gallery, manifest)
    args = None if relist is None else (relist[0], relist[1], cfg.search.spill, cfg.search.spill_below)
    try:
        with ex.current():
            work = [(snapshot, s, manifest.dim, str(gpath(gallery) / rel), args) for s in range(manifest.n_shards)]
            rows = sum(ex.gather(ex.wait("compact-write", ex.spread("compact-write", _compacted, work))))
        note = {
            "version": version,
            "snapshot_before": manifest.snapshot,
            "deltas_before": list(manifest.deltas),
            "rows": rows,
            "committed_at": now_utc(),
        }
        write_manifest(gallery, _next(manifest, rel, rows, note, relist))
    except BaseException:
        remove_uncommitted(gallery, [rel])
        raise
    log.info("compacted %d deltas (%d rows) into %s: %d clusters", len(manifest.deltas), manifest.delta_rows, rel, rows)
    return {"version": version, "snapshot": rel, "clusters": rows, "deltas_folded": len(manifest.deltas)}


def maintain_after_day(gallery: str | Path, cfg: Config) -> dict:
    """After a committed day: vacuum to ``gallery.keep_versions`` (a day compacts as it writes, by the rule)."""
    done: dict = {}
    manifest = read_manifest(gallery)
    if manifest is not None and cfg.gallery.keep_versions:
        result = vacuum(gallery, manifest, cfg.gallery.keep_versions)
        done["vacuum"] = {"removed": len(result.removed), "bytes_freed": result.bytes_freed}
    return done
