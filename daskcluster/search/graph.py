"""Step 2's k-NN graph of one array in one process: the pipeline's search, stage by stage, without Dask.

The same functions the day's tasks run (index choice, quantizer training, shard build, calibration of the
probing gap, probing, search), called in order on one shard; used by the benchmarks and for small jobs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from daskcluster.backends import get_backend
from daskcluster.backends.candidates import join_reverse
from daskcluster.config import SearchConfig
from daskcluster.search import calibrate
from daskcluster.search.index import IndexSpec, choose_index, train_size
from daskcluster.search.quantizer import train_quantizer
from daskcluster.search.sampling import sample_rows
from daskcluster.search.shard import build_shard, probe, search_shard, shard_both_ways

__all__ = ["SelfKnn", "self_knn"]


@dataclass
class SelfKnn:
    """Top-k neighbours of every row (itself included), only those >= the threshold: ``I`` row numbers,
    ``-1`` / ``-inf`` for empty slots; the seconds of each step; the index used."""

    D: np.ndarray
    I: np.ndarray
    train_s: float
    build_s: float
    calibrate_s: float
    search_s: float
    index: str
    gap: float | None
    spec: IndexSpec
    audit_recall: float | None = None


def self_knn(
    x: np.ndarray, k: int, threshold: float, cfg: SearchConfig | None = None, backend: str = "cpu", threads: int = 1
) -> SelfKnn:
    """The top-``k`` neighbours ``>= threshold`` of every row of ``x`` among all rows, as the day searches
    (``threads``: the compute threads of the process, as a worker's ``set_threads``)."""
    cfg = cfg or SearchConfig()
    get_backend(backend).set_threads(threads)
    x = np.ascontiguousarray(x, dtype=np.float32)
    ids = np.arange(len(x), dtype=np.int64)
    spec = choose_index(len(x), cfg)
    t0 = time.perf_counter()
    centroids = None
    if not spec.is_flat:
        n_max = train_size(spec, cfg)
        centroids = train_quantizer([sample_rows(ids, x, n_max)], spec.nlist, n_max, backend, niter=cfg.train_iters)
    t1 = time.perf_counter()
    shard = build_shard(ids, x, spec, centroids, backend)
    t2 = time.perf_counter()
    sample, gap = None, None
    both_ways = cfg.both_ways and get_backend(backend).searches_both_ways
    if not spec.is_flat:
        sample = calibrate.sample_faces(ids, ids, x, cfg.audit_sample)
        sample.exact = calibrate.exact_with_lists(shard, sample, k, threshold, both_ways)
        gap = cfg.gap or calibrate.gap_from_sample(sample, threshold, cfg.target_recall)
        spec = spec.with_gap(gap)
        shard.gap = gap
    t3 = time.perf_counter()
    coarse = probe(x, centroids, spec.nprobe, backend, gap) if centroids is not None else None
    both = shard_both_ways(shard, [coarse], k, threshold) if both_ways and coarse is not None else None
    if both is None:
        D, I = search_shard(shard, x, k, threshold, coarse)
    else:
        D, I, rev = search_shard(shard, x, k, threshold, coarse, both)
        D, I = join_reverse(D, I, rev, 0)  # the queries are the shard's rows: query number = id
    t4 = time.perf_counter()
    recall = None
    if sample is not None:
        audit = sample.half(odd=True)
        found, total = calibrate.audit_counts(audit, (D[audit.vertex], I[audit.vertex]), threshold)
        recall = found / total if total else 1.0
    return SelfKnn(D, I, t1 - t0, t2 - t1, t3 - t2, t4 - t3, spec.describe(), gap, spec, recall)
