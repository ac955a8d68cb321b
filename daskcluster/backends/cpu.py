"""CPU backend: numpy and faiss-cpu; the blocked IVF and the components kernel are array-module code (``xp``)."""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from daskcluster.backends import ivf, wcc
from daskcluster.backends import pq as pqm


def below_to_empty(D: np.ndarray, I: np.ndarray, min_sim: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Blank out results under ``min_sim`` (``-inf``, ``-1``), as the IVF path never returns them."""
    if min_sim is None:
        return D, I
    low = D < min_sim
    return np.where(low, -np.inf, D).astype(np.float32), np.where(low, -1, I)


class CpuBackend:
    name = "cpu"
    searches_both_ways = True  # the blocked IVF keeps each product for both of its ends (``ivf.Both``)
    spills = True  # the blocked IVF stores a row in several lists (``ivf.build``)
    kmeans_on_gpu = False
    partition_mb = 64.0  # feature MB per partition under ``ingest.partition_mb: 0``

    def train_quantizer(self, sample: np.ndarray, nlist: int, seed: int, niter: int = 12) -> np.ndarray:
        sample = np.ascontiguousarray(sample, dtype=np.float32)
        kmeans = faiss.Kmeans(
            sample.shape[1],
            nlist,
            niter=niter,
            spherical=True,
            seed=seed,
            max_points_per_centroid=256,
            gpu=self.kmeans_on_gpu,
            verbose=False,
        )
        kmeans.train(sample)
        return np.ascontiguousarray(kmeans.centroids, dtype=np.float32)

    def build_index(
        self,
        xb: np.ndarray,
        centroids: np.ndarray | None,
        lists: np.ndarray | None = None,
        pq: tuple[int, int] | None = None,
    ) -> Any:
        """Flat: a faiss ``IndexFlatIP`` (BLAS). IVF: a :class:`~daskcluster.ivf.BlockedIVF`, or with ``pq`` a
        :class:`~daskcluster.backends.pq.PQIndex` (a shard too small to train codebooks stays flat IVF)."""
        xb = np.ascontiguousarray(xb, dtype=np.float32)
        if centroids is not None and pq is not None and len(xb) >= pqm.MIN_ROWS:
            lists = ivf.nearest_list(centroids, xb) if lists is None else lists
            return pqm.build(xb, centroids, lists, *pq)
        if centroids is not None:
            return ivf.build(xb, centroids, lists)
        index = faiss.IndexFlatIP(xb.shape[1])
        index.add(xb)
        return index

    def probe(self, centroids: np.ndarray, xq: np.ndarray, nprobe: int, gap: float | None = None) -> ivf.Probes:
        """The lists of each query (the blocked IVF groups queries by them): see :func:`ivf.probe`."""
        return ivf.probe(centroids, xq, nprobe, gap)

    def search(
        self,
        index: Any,
        xq: np.ndarray,
        k: int,
        nprobe: int,
        min_sim: float | None = None,
        coarse: ivf.Probes | None = None,
        both: ivf.Both | None = None,
    ) -> tuple:
        if isinstance(index, ivf.BlockedIVF):
            return ivf.search(index, xq, k, nprobe, min_sim, coarse, self.threads, both)
        if isinstance(index, pqm.PQIndex):
            return pqm.search(
                index, xq, k, coarse if coarse is not None else ivf.probe(index.centroids, xq, nprobe), min_sim
            )
        D, I = index.search(np.ascontiguousarray(xq, dtype=np.float32), k)
        return below_to_empty(D, I, min_sim)

    def both_ways(self, index: Any, k: int, min_sim: float | None, probes: ivf.Probes) -> ivf.Both | None:
        """What searching ``index``'s own rows both ways needs (``probes``: the lists those rows probe), or
        None for a flat index."""
        if not isinstance(index, ivf.BlockedIVF):
            return None
        return ivf.both_ways(index, k, min_sim, probes)

    def exact_knn(self, xb: np.ndarray, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k by inner product without an index (BLAS with a fused top-k): ``(D, I)``, I rows of xb."""
        xq, xb = np.ascontiguousarray(xq, np.float32), np.ascontiguousarray(xb, np.float32)
        return faiss.knn(xq, xb, k, metric=faiss.METRIC_INNER_PRODUCT)

    def connected_components(self, n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """The array-module kernel (:mod:`~daskcluster.backends.wcc`), with numpy: the code a GPU without
        cuGraph runs with CuPy. Labels order components by smallest member, as scipy's do."""
        return wcc.connected_components(n, np.asarray(src), np.asarray(dst), np)

    threads = 1  # blocks of queries the blocked IVF searches in parallel (see ``ivf.search``)

    def set_threads(self, threads: int) -> None:
        faiss.omp_set_num_threads(threads)
        self.threads = max(1, threads)

    def local_cluster(
        self,
        n_workers: int,
        threads_per_worker: int,
        memory_limit: str,
        dashboard_address: str,
        rmm_pool_size: str | None = None,
        protocol: str | None = None,
    ) -> Any:
        """A ``LocalCluster`` of worker processes (``rmm_pool_size`` is for GPU workers: not used here)."""
        import logging

        from distributed import LocalCluster

        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=dashboard_address,
            silence_logs=logging.ERROR,
            **({"protocol": protocol} if protocol and protocol != "tcp" else {}),
        )
