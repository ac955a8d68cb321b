"""The backend interface: what stage code may ask of a device."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Backend(Protocol):
    """Array-level operations that differ between CPU and GPU.

    Inputs and outputs are numpy arrays: features are float32 and L2-normalised, similarities are inner
    products (cosine). Device transfers, where any, happen inside the backend.
    """

    name: str
    searches_both_ways: bool  # whether :meth:`search` accepts ``both`` (the k-NN graph of a set against itself)
    spills: bool  # whether :meth:`build_index` stores a row in every list of 2-d ``lists`` (else the first only)
    partition_mb: float  # feature MB (float32) per partition that suits this backend's workers

    def train_quantizer(self, sample: np.ndarray, nlist: int, seed: int, niter: int = 12) -> np.ndarray:
        """Spherical k-means (``niter`` iterations) on ``sample`` (n, d); returns ``nlist`` unit centroids
        (nlist, d) float32."""
        ...

    def build_index(
        self,
        xb: np.ndarray,
        centroids: np.ndarray | None,
        lists: np.ndarray | None = None,
        pq: tuple[int, int] | None = None,
    ) -> Any:
        """An inner-product index over ``xb``: flat when ``centroids`` is None, else IVF with those lists.
        ``lists``: each row's list among ``centroids`` when already known (a gallery stores them), so the
        rows need no quantization. ``pq``: ``(bytes, rerank)``, the IVF holds PQ codes re-ranked exactly
        (:mod:`~daskcluster.backends.pq`)."""
        ...

    def probe(self, centroids: np.ndarray, xq: np.ndarray, nprobe: int, gap: float | None = None) -> Any:
        """The coarse assignment of queries ``xq`` to IVF lists, computed once per query partition and passed
        to :meth:`search` for every shard: the ``nprobe`` nearest lists or, with ``gap``, those whose centroid
        score is within ``gap`` of the best (at most ``nprobe``); host arrays, since probes travel between tasks."""
        ...

    def search(
        self,
        index: Any,
        xq: np.ndarray,
        k: int,
        nprobe: int,
        min_sim: float | None = None,
        coarse: Any = None,
        both: Any = None,
    ) -> tuple:
        """Top-``k`` by exact inner product among the candidates (only those >= ``min_sim`` when given);
        ``(D, I)`` with I local row numbers, ``-1`` / ``-inf`` for empty slots. ``coarse``: what
        :meth:`probe` returned for these queries, or None. ``both`` (from :meth:`both_ways`, only where
        ``searches_both_ways``): also the reverse candidates, ``(D, I, Reverse)`` (rows: local row numbers,
        neighbours: query numbers)."""
        ...

    def both_ways(self, index: Any, k: int, min_sim: float | None, probes: Any) -> Any:
        """What :meth:`search` needs to search ``index`` both ways, its rows probing ``probes`` (None when the
        index cannot)."""
        ...

    def exact_knn(self, xb: np.ndarray, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``k`` of ``xq`` among the rows of ``xb`` by inner product, with no index kept: ``(D, I)``
        (the day's exact sample)."""
        ...

    def connected_components(self, n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Weakly connected component label (0..c-1) of each of ``n`` vertices given undirected edges."""
        ...

    def set_threads(self, threads: int) -> None:
        """Threads the compute libraries may use in this process (a worker's share of the cores)."""
        ...

    def local_cluster(
        self,
        n_workers: int,
        threads_per_worker: int,
        memory_limit: str,
        dashboard_address: str,
        rmm_pool_size: str | None = None,
        protocol: str | None = None,
    ) -> Any:
        """The Dask cluster this backend runs on when the command starts its own: ``LocalCluster`` on CPUs,
        dask-cuda's ``LocalCUDACluster`` (one worker per GPU, an RMM pool of ``rmm_pool_size``) on GPUs;
        ``protocol``: the comm protocol (``tcp``, or ``ucx`` where UCX is installed)."""
        ...
