"""Day reports: quality metrics against labels (when the data has them) and the summary files."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from daskcluster.eval.metrics import evaluate
from daskcluster.gallery.manifest import atomic_write_bytes
from daskcluster.gallery.store import gpath, parquet_file, read_table

log = logging.getLogger(__name__)


def labelled_assignments(files: list[Path]) -> tuple[np.ndarray, np.ndarray] | None:
    """(labels, cluster ids) of every face in ``files`` that has a ``label`` column, else None."""
    labels, clusters = [], []
    for f in files:
        if "label" not in parquet_file(f).schema_arrow.names:
            return None
        t = read_table(f, columns=["cluster_id", "label"])
        labels.append(t.column("label").to_numpy(zero_copy_only=False))
        clusters.append(t.column("cluster_id").to_numpy())
    if not labels:
        return None
    return np.concatenate(labels), np.concatenate(clusters)


def quality(files: list[Path], lineage: tuple[np.ndarray, np.ndarray] | None = None) -> dict | None:
    """Clustering metrics of the faces in ``files`` against their labels (None when unlabelled), with the
    cluster ids resolved through a consolidation ``lineage`` ``(old_id, new_id)`` when given."""
    found = labelled_assignments(files)
    if found is None or len(found[0]) == 0:
        return None
    labels, clusters = found
    if lineage is not None and len(lineage[0]):
        from daskcluster.gallery.lineage import resolve

        clusters = resolve(clusters, *lineage)
    keep = ~pd.isna(labels)
    return evaluate(labels[keep], clusters[keep])


def write_report(report_dir: Path, summary: dict, config: dict) -> None:
    report_dir = gpath(report_dir)
    atomic_write_bytes(report_dir / "summary.json", json.dumps(summary, indent=1, default=str).encode())
    atomic_write_bytes(report_dir / "config.yaml", yaml.safe_dump(config, sort_keys=True).encode())
