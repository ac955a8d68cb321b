"""Read-only views of a committed gallery: export, evaluation against labels, status."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from daskcluster.eval.metrics import evaluate
from daskcluster.gallery.lineage import read_lineage, resolve_table
from daskcluster.gallery.manifest import (
    GalleryError,
    Manifest,
    committed_assignment_files,
    read_manifest,
    write_parquet_atomic,
)
from daskcluster.gallery.retention import bytes_by_kind
from daskcluster.gallery.store import gpath, read_table
from daskcluster.gallery.tables import SnapshotRef, shard_rows
from daskcluster.stages.inputs import InputError, discover_inputs


def _manifest(gallery: str | Path) -> Manifest:
    manifest = read_manifest(gallery)
    if manifest is None:
        raise GalleryError(f"{gallery} is not a gallery (no manifest.json)")
    return manifest


def face_clusters(gallery: str | Path) -> pa.Table:
    """face_id, cluster_id of every committed face; ids merged by a consolidation are resolved through the
    lineage in force to the cluster that absorbed them (the assignments keep the ids they were written with)."""
    manifest = _manifest(gallery)
    files = committed_assignment_files(gallery, manifest)
    tables = [read_table(f, columns=["face_id", "cluster_id"]) for f in files]
    if not tables:
        return pa.table({"face_id": pa.array([], pa.int64()), "cluster_id": pa.array([], pa.int64())})
    return resolve_table(pa.concat_tables(tables), read_lineage(gallery, manifest))


def export_assignments(gallery: str | Path, out: str | Path) -> int:
    table = face_clusters(gallery)
    write_parquet_atomic(table, gpath(out))
    return table.num_rows


def read_labels(paths: list[str | Path]) -> pd.DataFrame:
    """face_id and label from Parquet files or day directories."""
    frames = []
    for f in (f for p in paths for f in discover_inputs(p)):
        names = pq.read_schema(f).names
        missing = [c for c in ("face_id", "label") if c not in names]
        if missing:
            raise InputError(f"{f}: labels file lacks field(s) {missing}")
        frames.append(pq.read_table(f, columns=["face_id", "label"]).to_pandas())
    return pd.concat(frames, ignore_index=True)


def evaluate_gallery(gallery: str | Path, label_paths: list[str | Path]) -> dict:
    """Metrics over the labelled faces that are in the gallery, plus how many labelled faces are not."""
    labels = read_labels(label_paths).dropna(subset=["label"]).drop_duplicates("face_id")
    clusters = face_clusters(gallery).to_pandas()
    joined = labels.merge(clusters, on="face_id", how="inner")
    if joined.empty:
        raise InputError("no labelled face is in the gallery")
    result = evaluate(joined["label"].to_numpy(), joined["cluster_id"].to_numpy())
    result["labelled_not_in_gallery"] = int(len(labels) - len(joined))
    return result


def _day_history(d) -> dict:
    """One day's line of the status: its faces and the figures of its run."""
    st = d.stats or {}
    return {
        "day": d.day,
        "faces": d.n_faces,
        "quarantined": d.n_quarantined,
        "version": d.version,
        "bytes_read": st.get("bytes_read"),
        "bytes_written": st.get("bytes_written"),
        "tasks": sum(st.get("stage_tasks", {}).values()) or None,
        "seconds": st.get("stage_seconds", {}).get("total"),
        "stage_tasks": st.get("stage_tasks", {}),
        "stage_seconds": st.get("stage_seconds", {}),
        "retained": not d.vacuumed,
    }


def gallery_status(gallery: str | Path) -> dict:
    manifest = _manifest(gallery)
    snapshot = SnapshotRef.of(gallery, manifest)
    counts = (
        np.concatenate([shard_rows(snapshot, s).column("count").to_numpy() for s in range(manifest.n_shards)])
        if manifest.snapshot
        else np.empty(0, np.int64)
    )
    sizes = {
        "1": int((counts == 1).sum()),
        "2-9": int(((counts >= 2) & (counts < 10)).sum()),
        "10-99": int(((counts >= 10) & (counts < 100)).sum()),
        "100+": int((counts >= 100).sum()),
    }
    return {
        "gallery": str(gallery),
        "version": manifest.version,
        "dim": manifest.dim,
        "shards": manifest.n_shards,
        "days": [_day_history(d) for d in sorted(manifest.days, key=lambda r: r.day)],
        "deltas": len(manifest.deltas),
        "delta_rows": manifest.delta_rows,
        "base_rows": manifest.base_rows,
        "bytes_on_disk": bytes_by_kind(gallery),
        "clusters": manifest.n_clusters,
        "faces": manifest.n_faces,
        "largest_cluster": int(counts.max()) if len(counts) else 0,
        "median_cluster": float(np.median(counts)) if len(counts) else 0.0,
        "size_histogram": sizes,
        "lineage_rows": read_lineage(gallery, manifest).num_rows,
    }
