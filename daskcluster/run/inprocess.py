"""The day pipeline in this process, on arrays: for calibration sweeps, the quality benchmark and tests, where
many settings are tried on the same faces.

Not a second implementation: :func:`run_days` runs the very pipeline of ``run-day`` (:mod:`daskcluster.run.pipeline`)
on an :class:`~daskcluster.run.executor.InProcessExecutor`, into a gallery in a temporary directory; and
:func:`search_graph` / :func:`cluster_graph` are step 2's two halves (:mod:`daskcluster.run.day_cluster`) on one
partition, so a sweep can search once and link many times.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from daskcluster.backends import resolve_backend_name
from daskcluster.config import ClusterConfig, Config
from daskcluster.gallery.manifest import read_manifest
from daskcluster.run.day_cluster import Graph, knn_graph, link_components
from daskcluster.run.executor import Done, InProcessExecutor
from daskcluster.run.pipeline import run_day
from daskcluster.stages import components, linking
from daskcluster.stages.ingest import Part

__all__ = ["DayData", "cluster_graph", "run_days", "search_graph", "to_part"]


@dataclass
class DayData:
    """One day's faces: ids, raw features (any norm) and optional metadata columns (e.g. ``quality``)."""

    ids: np.ndarray
    features: np.ndarray
    meta: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


def to_part(day: DayData, index: int = 0) -> Part:
    """The day as one validated partition (the caller's features must be finite and non-zero)."""
    raw = np.asarray(day.features, np.float32)
    norms = np.linalg.norm(raw.astype(np.float64), axis=1)
    if not (np.isfinite(norms).all() and (norms > 1e-12).all()):
        raise ValueError("features must be finite and non-zero")
    meta = pa.table(
        {**{k: pa.array(v) for k, v in day.meta.items()}, "feature_norm": pa.array(norms.astype(np.float32))}
    )
    return Part(index, np.asarray(day.ids, np.int64), (raw / norms[:, None]).astype(np.float32), meta)


def search_graph(part: Part, cfg: Config, threshold: float | None = None) -> linking.Neighbours:
    """k-NN lists of a part's searchable faces among themselves, as the ``knn-*`` tasks compute them (the same
    index choice), at ``threshold`` (default ``cluster.threshold``)."""
    if threshold is not None:
        cfg = cfg.model_copy(update={"cluster": cfg.cluster.model_copy(update={"threshold": threshold})})
    ex = InProcessExecutor()
    graph = knn_graph(ex, cfg, resolve_backend_name(cfg.backend), part.x.shape[1], [Done(part)])
    return ex.gather(graph.nbs[0])


def cluster_graph(
    nb: linking.Neighbours, face_ids: np.ndarray, cfg: ClusterConfig, next_id: int = 0, backend: str = "cpu"
) -> components.ComponentResult:
    """Linking rules, components and the chaining guard on one table of neighbour lists (restricted to
    ``cfg.threshold``), as step 2 runs them."""
    nb = linking.restrict(nb, cfg.threshold)
    graph = Graph([len(nb)], [0], None, [], [range(1)], [], [Done(nb)])
    ex = InProcessExecutor()
    result, _ = link_components(ex, cfg, backend, graph, [Done(face_ids)], next_id, [None])
    return ex.gather(result)


def _write_day(day: DayData, path: Path) -> None:
    x = np.asarray(day.features, np.float32)
    feature = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel(), pa.float32()), x.shape[1])
    columns = {"face_id": pa.array(np.asarray(day.ids, np.int64)), "feature": feature}
    pq.write_table(pa.table({**columns, **{k: pa.array(v) for k, v in day.meta.items()}}), path)


def _day_labels(gallery: Path, ids: np.ndarray) -> np.ndarray:
    """Cluster id of each of ``ids`` in the gallery's last committed day (input order)."""
    record = max(read_manifest(gallery).days, key=lambda d: d.day)
    table = pa.concat_tables(
        [
            pq.read_table(f, columns=["face_id", "cluster_id"])
            for f in sorted((gallery / record.assignments).glob("*.parquet"))
        ]
    )
    got = dict(zip(table.column("face_id").to_numpy().tolist(), table.column("cluster_id").to_numpy().tolist()))
    return np.array([got[i] for i in np.asarray(ids).tolist()], np.int64)


def run_days(days: list[DayData], cfg: Config) -> list[np.ndarray]:
    """Cluster ids of every day's faces (input order), the days run in order through the day pipeline into one
    fresh gallery (in a temporary directory, removed afterwards)."""
    out = []
    with tempfile.TemporaryDirectory(prefix="daskcluster-") as tmp:
        gallery = Path(tmp) / "gallery"
        for i, day in enumerate(days):
            path = Path(tmp) / f"day-{i}.parquet"
            _write_day(day, path)
            run_day(InProcessExecutor(), path, gallery, cfg, day=f"2026-01-{i + 1:02d}")
            out.append(_day_labels(gallery, day.ids))
            path.unlink()
    return out
