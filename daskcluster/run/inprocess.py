"""The day pipeline in one process, on arrays, with an in-memory gallery: for calibration sweeps and the
quality benchmark, where hundreds of settings are tried on the same faces.

It is not a second implementation: every step calls the functions the Dask tasks call (``prepare``,
``assign.decide``, ``linking``, ``components``, ``shards``), with one partition and one shard, so a setting
chosen here behaves the same in ``run-day`` (a test checks the two give the same clusters).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from daskcluster.config import ClusterConfig, Config
from daskcluster.search.index import choose_index, merge_topk, sample_rows, search_shard, train_quantizer
from daskcluster.stages import assign, centres, components, knn, linking, prepare
from daskcluster.stages.ingest import Part, unassigned_view


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
    meta = pa.table({**{k: pa.array(v) for k, v in day.meta.items()},
                     "feature_norm": pa.array(norms.astype(np.float32))})
    return Part(index, np.asarray(day.ids, np.int64), (raw / norms[:, None]).astype(np.float32), meta)


def search_graph(part: Part, cfg: Config, threshold: float | None = None) -> linking.Neighbours:
    """k-NN lists of a part's searchable faces among themselves, as the ``knn-*`` tasks compute them (the
    same index choice; one shard)."""
    c = cfg.cluster
    t = c.threshold if threshold is None else threshold
    n = int(part.searchable.sum())
    spec = choose_index(n, cfg.search)
    centroids = None
    if not spec.is_flat:
        n_max = max(cfg.search.train_sample, 39 * spec.nlist)
        centroids = train_quantizer([knn.graph_sample(part, n_max)], spec.nlist, n_max, cfg.backend)
    shard = knn.graph_shard([part], 0, spec, centroids, cfg.backend)
    probes = None if spec.is_flat else knn.probe_part(part, centroids, spec.nprobe)
    best = knn.knn_search(shard, part, c.k + 1, t, probes)
    return linking.neighbours(best, 0, c.k, t)


def cluster_graph(nb: linking.Neighbours, face_ids: np.ndarray, cfg: ClusterConfig, next_id: int = 0,
                  backend: str = "cpu") -> components.ComponentResult:
    """Linking rules, components and the chaining guard on one table of neighbour lists."""
    nb = linking.restrict(nb, cfg.threshold)
    ann = linking.annotate(nb, nb) if linking.needs_annotation(cfg) else None
    edges = linking.link(nb, ann, cfg)
    roots = components.vertex_roots(len(nb), components.edge_forest(edges, backend))
    recuts = []
    if cfg.max_size:
        over = components.oversize_roots(roots, cfg.max_size)
        if len(over):
            inputs = linking.cut_inputs(edges, roots, 0, over, 1)
            recuts = [linking.recut(inputs, cfg.threshold, cfg.max_size, cfg.recut_step, backend)]
    return components.label_components(roots, [face_ids], next_id, recuts)


class Engine:
    """A gallery in memory (one shard) that days run into, as ``run-day`` runs them into a directory."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.table: centres.ClusterShard | None = None
        self.next_id = 0
        self.mean: np.ndarray | None = None
        self.days = 0

    def run_day(self, day: DayData, name: str = "2026-01-01") -> tuple[np.ndarray, dict]:
        """Cluster ids of the day's faces (input order) and the day's counts."""
        cfg = self.cfg
        part = to_part(day)
        if self.days == 0 and cfg.preprocess.centre:
            self.mean = prepare.mean_feature([prepare.unit_sum(part)])
        part = prepare.prepare(part, self.mean, cfg.quality)
        if self.table is None:
            self.table = centres.empty_shard(0, part.x.shape[1])
        if len(self.table):
            part = assign.decide(part, self._assign_search(part), cfg.assign, cfg.quality.join_threshold)
        else:
            part = assign.unassigned_part(part)
        rest = unassigned_view(part)
        result = cluster_graph(search_graph(rest, cfg), rest.ids, cfg.cluster, self.next_id, cfg.backend)
        self.table = centres.update_shard(self.table, centres.reduce_sums(assign.assigned_sums(part, 1), part.x.shape[1]),
                                         centres.reduce_sums(components.new_cluster_sums(rest, result.cluster_id, 1),
                                                            part.x.shape[1]), name)
        self.next_id += result.n_clusters
        self.days += 1
        labels = part.cluster_id.copy()
        labels[labels < 0] = result.cluster_id
        counts = {"assigned": int((part.cluster_id >= 0).sum()), "ambiguous": int(part.ambiguous.sum()),
                  "low_quality": int(part.low_quality.sum()), "new_clusters": result.n_clusters,
                  "largest_new_cluster": result.largest, "cut_components": len(result.cuts)}
        return labels, counts

    def _assign_search(self, part: Part) -> tuple[np.ndarray, np.ndarray]:
        table, cfg = self.table, self.cfg
        spec = choose_index(len(table), cfg.search)
        centroids = None
        if not spec.is_flat:
            n_max = max(cfg.search.train_sample, 39 * spec.nlist)
            centroids = train_quantizer([sample_rows(table.cluster_id, table.centres(), n_max)], spec.nlist, n_max,
                                        cfg.backend)
        index = assign.gallery_search_shard(table, spec, centroids, cfg.backend, cfg.cluster.max_size)
        probes = None if spec.is_flat else assign.probe_part(part, centroids, spec.nprobe)
        return merge_topk([search_shard(index, part.x, assign.ASSIGN_K, cfg.assign.threshold, probes)],
                          assign.ASSIGN_K)


def run_days(days: list[DayData], cfg: Config) -> list[np.ndarray]:
    """Cluster ids of every day's faces, days run in order into one fresh in-memory gallery."""
    engine = Engine(cfg)
    return [engine.run_day(d, f"2026-01-{i + 1:02d}")[0] for i, d in enumerate(days)]
