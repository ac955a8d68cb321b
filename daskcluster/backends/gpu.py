"""GPU backend: CuPy, with faiss-gpu, cuGraph and dask-cuda where present (the ``[gpu]`` extra).

Imported only when ``backend: gpu`` (or ``auto`` on a machine with a GPU) is chosen; even then this module
imports no GPU library until a method runs. What runs on the device:

- **Search**: the blocked IVF (:mod:`~daskcluster.backends.ivf`), the CPU path's own code, over CuPy arrays.
  The index (centroids, vectors in list order, row numbers) is built in device memory once per shard and kept
  by the shard on its worker (``IndexShard.index``), so a gallery shard loaded for the day stays on the device
  for every stage that searches it. Queries are copied to the device once per search task; only the top-k
  ``(similarity, id)`` lists, and the reverse candidates of a search both ways, come back. The same code on
  both backends means the same candidates and the same threshold-aware probing, so a GPU day and a CPU day
  make the same clusters (up to float rounding at a threshold).
- **Probes** are computed on the device and handed back to the host: they travel between tasks.
- **Exact k-NN** (the day's audit sample, ``search.mode: exact``): faiss-gpu's ``knn_gpu`` where present,
  else blocked products with a top-k on the device (:class:`DeviceFlat`).
- **Components**: cuGraph's weakly connected components where present, else the CuPy run of the components
  kernel (:mod:`~daskcluster.backends.wcc`); labels are by smallest member either way.
- **k-means** of the quantizer: faiss on the GPU where faiss has GPUs, else faiss on the CPU (a 50k sample).

Why the blocked IVF rather than faiss-gpu's ``GpuIndexIVFFlat`` or cuVS: it is the path whose edge recall
the CPU benchmarks measure (threshold-aware probing by a per-day gap, search both ways), and the only one the
GPU machines of our checks (CuPy, no RAPIDS, no faiss-gpu) can run. faiss-gpu and cuVS are not yet measured
against it: see ``docs/gpu.md``.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np

from daskcluster.backends import ivf, wcc
from daskcluster.backends import pq as pqm
from daskcluster.backends.cpu import CpuBackend, below_to_empty
from daskcluster.backends.xp import to_host

log = logging.getLogger(__name__)

QUERY_CHUNK = 4096  # queries per product of the exact device search
BASE_CHUNK = 131_072  # database rows per product: (4096, 131072) float32 scores = 2 GiB, ~4x that with the sort


def gpu_count() -> int:
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # no driver, no device, or no cupy: no GPU
        return 0


def device_problem() -> str | None:
    """Why no CUDA device can run CuPy kernels here (one line), or None."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() == 0:
            return "no CUDA device is visible"
        x = cupy.arange(8, dtype=cupy.float32)
        float((x @ x).get())  # a kernel and a copy back: the driver, the device and CuPy's build all work
    except Exception as exc:  # no driver, no device, a CUDA mismatch: the one line names it
        return " ".join(f"CUDA is not usable ({type(exc).__name__}: {exc})".split())
    return None


@functools.cache
def faiss_gpus() -> int:
    """GPUs faiss can use here (0 with faiss-cpu)."""
    try:
        import faiss

        return int(faiss.get_num_gpus())
    except Exception:  # an old faiss without the call, or a broken GPU build: use the device code instead
        return 0


@functools.cache
def _resources() -> Any:
    import faiss

    return faiss.StandardGpuResources()


def _cupy() -> Any:
    import cupy

    return cupy


class DeviceFlat:
    """An exact inner-product index in device memory: the vectors, searched by blocked products with a running
    top-k (no index library). ``search`` returns host arrays."""

    def __init__(self, xb: Any):
        cp = _cupy()
        self.xb = cp.ascontiguousarray(cp.asarray(xb), dtype=cp.float32)
        self.ntotal = len(self.xb)

    def search(self, xq: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        cp = _cupy()
        xq = cp.ascontiguousarray(cp.asarray(xq), dtype=cp.float32)
        D = np.full((len(xq), k), -np.inf, np.float32)
        I = np.full((len(xq), k), -1, np.int64)
        for qa in range(0, len(xq), QUERY_CHUNK):
            q = xq[qa : qa + QUERY_CHUNK]
            best_s = cp.full((len(q), 0), -cp.inf, cp.float32)
            best_i = cp.full((len(q), 0), -1, cp.int64)
            for ba in range(0, self.ntotal, BASE_CHUNK):
                S = q @ self.xb[ba : ba + BASE_CHUNK].T
                kk = min(k, S.shape[1])
                top = cp.argpartition(-S, kk - 1, axis=1)[:, :kk] if kk < S.shape[1] else cp.argsort(-S, axis=1)
                best_s = cp.concatenate([best_s, cp.take_along_axis(S, top, axis=1)], axis=1)
                best_i = cp.concatenate([best_i, top.astype(cp.int64) + ba], axis=1)
                if best_s.shape[1] > k:
                    keep = cp.argpartition(-best_s, k - 1, axis=1)[:, :k]
                    best_s = cp.take_along_axis(best_s, keep, axis=1)
                    best_i = cp.take_along_axis(best_i, keep, axis=1)
            order = cp.argsort(-best_s, axis=1)  # descending score
            n = best_s.shape[1]
            D[qa : qa + len(q), :n] = to_host(cp.take_along_axis(best_s, order, axis=1))
            I[qa : qa + len(q), :n] = to_host(cp.take_along_axis(best_i, order, axis=1))
        return D, I


class GpuBackend(CpuBackend):
    """The CPU backend's algorithms on CuPy arrays, with faiss-gpu and cuGraph where present."""

    name = "gpu"
    searches_both_ways = True  # the blocked IVF on the device keeps each product for both of its ends
    spills = True  # as on the CPU: the blocked IVF stores a row in several lists
    partition_mb = 1024.0  # a GPU search wants partitions of gigabytes: fewer, larger batches

    @property
    def kmeans_on_gpu(self) -> bool:  # type: ignore[override]
        return faiss_gpus() > 0

    def build_index(
        self,
        xb: np.ndarray,
        centroids: np.ndarray | None,
        lists: np.ndarray | None = None,
        pq: tuple[int, int] | None = None,
    ) -> Any:
        """IVF: the blocked IVF in device memory; with ``pq``, the CPU backend's IVF-PQ (faiss, on the host: a
        device PQ scan is still to build). Flat: faiss-gpu's ``GpuIndexFlatIP`` where present, else
        :class:`DeviceFlat`."""
        cp = _cupy()
        if centroids is not None and pq is not None:
            return super().build_index(xb, centroids, lists, pq)
        if centroids is not None:
            return ivf.build(cp.asarray(xb, dtype=cp.float32), cp.asarray(centroids), _device(lists))
        if faiss_gpus():
            import faiss

            index = faiss.GpuIndexFlatIP(_resources(), xb.shape[1])
            index.add(np.ascontiguousarray(xb, dtype=np.float32))
            return index
        return DeviceFlat(xb)

    def probe(self, centroids: np.ndarray, xq: np.ndarray, nprobe: int, gap: float | None = None) -> ivf.Probes:
        """Computed on the device, returned to the host (probes travel between tasks)."""
        cp = _cupy()
        return ivf.probe(cp.asarray(centroids, dtype=cp.float32), cp.asarray(xq), nprobe, gap).to(np)

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
        cp = _cupy()
        if isinstance(index, ivf.BlockedIVF):
            probes = coarse.to(cp) if coarse is not None else None
            out = ivf.search(index, cp.asarray(xq), k, nprobe, min_sim, probes, 1, both.to(cp) if both else None)
            D, I = to_host(out[0]), to_host(out[1])  # only the top-k lists leave the device
            return (D, I) if both is None else (D, I, out[2].to_host())
        if isinstance(index, pqm.PQIndex):
            return super().search(index, xq, k, nprobe, min_sim, coarse)
        D, I = index.search(np.ascontiguousarray(xq, dtype=np.float32), min(k, 2048))
        return below_to_empty(np.asarray(D), np.asarray(I).astype(np.int64), min_sim)

    def both_ways(self, index: Any, k: int, min_sim: float | None, probes: ivf.Probes) -> ivf.Both | None:
        if not isinstance(index, ivf.BlockedIVF):
            return None
        return ivf.both_ways(index, k, min_sim, probes.to(_cupy())).to(np)

    def exact_knn(self, xb: np.ndarray, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if faiss_gpus():
            import faiss

            xq, xb = np.ascontiguousarray(xq, np.float32), np.ascontiguousarray(xb, np.float32)
            return faiss.knn_gpu(_resources(), xq, xb, k, metric=faiss.METRIC_INNER_PRODUCT)
        return DeviceFlat(xb).search(xq, k)

    def connected_components(self, n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """cuGraph where present, else the components kernel with CuPy; labels by smallest member."""
        try:
            import cudf
            import cugraph
        except ImportError:
            cp = _cupy()
            return to_host(wcc.connected_components(n, cp.asarray(src), cp.asarray(dst), cp))
        frame = cudf.DataFrame({"src": src.astype(np.int64), "dst": dst.astype(np.int64)})
        graph = cugraph.Graph(directed=False)
        graph.from_cudf_edgelist(frame, source="src", destination="dst", renumber=True)
        result = cugraph.weakly_connected_components(graph).to_pandas()
        return smallest_member_labels(n, result["vertex"].to_numpy(), result["labels"].to_numpy())

    def set_threads(self, threads: int) -> None:
        super().set_threads(threads)
        self.threads = 1  # one device stream per worker

    def local_cluster(
        self,
        n_workers: int,
        threads_per_worker: int,
        memory_limit: str,
        dashboard_address: str,
        rmm_pool_size: str | None = None,
        protocol: str | None = None,
    ) -> Any:
        """dask-cuda's ``LocalCUDACluster``: one worker per visible GPU (``n_workers`` is the most it starts),
        each with an RMM pool of ``rmm_pool_size`` and device-to-host spilling; UCX with ``protocol: ucx``.
        Without dask-cuda: a ``LocalCluster`` of one worker on the first GPU."""
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            log.warning("dask-cuda is not installed: one GPU worker on device 0 (install the [gpu] extra)")
            return super().local_cluster(1, threads_per_worker, memory_limit, dashboard_address, None, protocol)
        kwargs: dict[str, Any] = {"rmm_pool_size": rmm_pool_size} if rmm_pool_size else {}
        if protocol:
            kwargs["protocol"] = protocol
        return LocalCUDACluster(
            n_workers=min(n_workers, gpu_count()) or None,
            threads_per_worker=threads_per_worker,
            memory_limit=memory_limit,
            dashboard_address=dashboard_address,
            silence_logs=logging.ERROR,
            **kwargs,
        )


def smallest_member_labels(n: int, vertex: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Dense labels (0..c-1, by smallest member) of ``n`` vertices from a library's arbitrary component labels
    of some of them (``vertex[i]`` has ``label[i]``); a vertex not listed is its own component."""
    raw = np.arange(n, dtype=np.int64) + (int(label.max()) + 1 if len(label) else 0)
    raw[np.asarray(vertex, np.int64)] = np.asarray(label, np.int64)
    _, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)]


def _device(lists: Any) -> Any:
    return None if lists is None else _cupy().asarray(lists)
