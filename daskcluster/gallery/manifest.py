"""The gallery on disk: an atomically swapped ``manifest.json`` pointing at versioned snapshots, and the
per-day assignments, quarantine and reports.

Layout (``vNNNNNN`` is the manifest version that wrote it; nothing is ever overwritten in place)::

    manifest.json                               the single commit point
    snapshots/vNNNNNN/shard-SSSSS.parquet       cluster_id, count, mean (of member unit features), first/last day
    quantizers/vNNNNNN.npy                      the IVF coarse centroids shared by every gallery shard
    assignments/day=D/vNNNNNN/part-PPPPP.parquet  face_id, cluster_id, decision, similarity, carried metadata
    quarantine/day=D/vNNNNNN/part-PPPPP.parquet   rejected rows with ``reason``
    reports/day=D/vNNNNNN/                      summary.json, config.yaml, dask-report.html
    lineage/vNNNNNN.parquet                     cumulative old_id -> new_id of consolidation merges

Assignments keep the cluster ids they were written with; readers map them through the lineage in force
(:mod:`daskcluster.lineage`), so a consolidation never rewrites a day's output.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from daskcluster.gallery.layout import MANIFEST, version_dir  # noqa: F401  (version_dir: re-exported)
from daskcluster.gallery.store import (  # noqa: F401  (atomic_write_bytes, load_npy: re-exported)
    atomic_write_bytes,
    gpath,
    is_remote,
    listing,
    load_npy,
    put_if_absent,
    read_table,
    remove_tree,
    write_parquet,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: snapshots are a base plus deltas, with list ids and a face-id index
READABLE_FORMATS = (1, 2)  # a format-1 gallery is a base without deltas, lists or id index


class GalleryError(RuntimeError):
    """The gallery cannot take this day (wrong dimension, day order, corrupt manifest, ...)."""


@dataclass
class DayRecord:
    day: str
    version: int
    snapshot_before: str | None
    snapshot: str
    assignments: str
    quarantine: str | None
    report: str
    input_checksum: str
    config_digest: str
    config: dict
    next_cluster_id_before: int
    next_cluster_id_after: int
    n_clusters_after: int
    n_faces_after: int
    n_faces: int
    n_quarantined: int
    committed_at: str
    quantizer: dict | None = None  # {"path", "nlist"} of the gallery's IVF quantizer after this day
    # The cumulative lineage in force after this day (None: as the day before). A consolidation after the day
    # replaces ``snapshot`` and ``n_clusters_after`` and notes what it replaced in ``consolidated``; a forced
    # re-run of the day starts from the day before, and so with the day before's lineage.
    lineage: str | None = None
    consolidated: list[dict] = field(default_factory=list)
    preprocess: dict | None = None  # {"centre": path of the mean unit feature} fixed by the first day
    # The centre tables are ``snapshot`` (a base) with ``deltas`` applied in order; ``lists`` is the quantizer
    # path the stored IVF list ids refer to (None: unlisted); the row counts drive the compaction rule.
    deltas: list[str] = field(default_factory=list)
    lists: str | None = None
    base_rows: int = 0
    delta_rows: int = 0
    id_index: dict | None = None  # the face-id index after this day (gallery.ids): {"buckets", "runs"}
    stats: dict = field(default_factory=dict)  # bytes read and written, tasks and seconds per stage
    compactions: list[dict] = field(default_factory=list)  # compactions of this day's state (what they replaced)
    vacuumed: bool = False  # the state after this day was removed by vacuum (a re-run cannot start from it)


@dataclass
class Manifest:
    dim: int
    n_shards: int
    version: int = 0
    next_cluster_id: int = 0
    snapshot: str | None = None
    n_clusters: int = 0
    n_faces: int = 0
    days: list[DayRecord] = field(default_factory=list)
    quantizer: dict | None = None
    preprocess: dict | None = None
    lineage: str | None = None  # written by the last consolidation; readers use lineage.lineage_in_force
    deltas: list[str] = field(default_factory=list)
    lists: str | None = None
    base_rows: int = 0
    delta_rows: int = 0
    id_index: dict | None = None
    format: int = FORMAT_VERSION

    def day(self, day: str) -> DayRecord | None:
        return next((d for d in self.days if d.day == day), None)

    @property
    def last_day(self) -> str | None:
        return max((d.day for d in self.days), default=None)


MANIFESTS = "_manifests"  # on an object store: _manifests/vNNNNNN.json, one per committed version


def manifest_path(gallery: str | Path) -> Any:
    """Where the manifest in force is: ``manifest.json`` locally; on an object store the newest numbered one
    (None when there is none)."""
    root = gpath(gallery)
    if not is_remote(root):
        return root / MANIFEST
    found = listing(root / MANIFESTS, "v*.json")
    return found[-1] if found else None


def read_manifest(gallery: str | Path) -> Manifest | None:
    path = manifest_path(gallery)
    if path is None or not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        days = [DayRecord(**d) for d in raw.pop("days")]
        manifest = Manifest(**raw, days=days)
    except (ValueError, TypeError, KeyError) as exc:
        raise GalleryError(f"{path}: unreadable manifest ({exc})") from exc
    if manifest.format not in READABLE_FORMATS:
        raise GalleryError(f"{path}: format {manifest.format} is not supported (expected one of {READABLE_FORMATS})")
    return manifest


def write_manifest(gallery: str | Path, manifest: Manifest) -> None:
    """Commit (in the current format): locally an atomic replace of ``manifest.json``; on an object store a
    new ``_manifests/v<version>.json`` written only if absent, so of two writers of one version one fails."""
    data = json.dumps(asdict(manifest) | {"format": FORMAT_VERSION}, indent=1, sort_keys=True).encode()
    root = gpath(gallery)
    if not is_remote(root):
        atomic_write_bytes(root / MANIFEST, data)
        return
    target = root / MANIFESTS / f"v{manifest.version:06d}.json"
    if not put_if_absent(target, data):
        raise GalleryError(f"{target}: version {manifest.version} was committed by another writer first")


def remove_uncommitted(gallery: str | Path, rel_dirs: list[str]) -> None:
    """Delete what a failed run wrote, and the local directories it created that are now empty."""
    root = gpath(gallery)
    for rel in rel_dirs:
        target = root / rel
        remove_tree(target)
        if is_remote(root):
            continue
        for parent in target.parents:
            if parent == root or not parent.is_relative_to(root):
                break
            try:
                parent.rmdir()
            except OSError:
                break


def write_npy_atomic(array: np.ndarray, path: str | Path) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def write_parquet_atomic(table: pa.Table, path: Any) -> None:
    path = gpath(path)
    if is_remote(path):
        write_parquet(table, path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def assignment_files(gallery: str | Path, days: list[DayRecord]) -> list:
    """The assignment files of ``days``, in day order."""
    root = gpath(gallery)
    return [f for d in sorted(days, key=lambda r: r.day) for f in listing(root / d.assignments, "*.parquet")]


def committed_assignment_files(gallery: str | Path, manifest: Manifest | None) -> list:
    return [] if manifest is None else assignment_files(gallery, manifest.days)


def read_face_ids(path: str | Path) -> np.ndarray:
    return read_table(path, columns=["face_id"])[0].to_numpy()


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
