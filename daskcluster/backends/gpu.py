"""GPU backend: faiss-gpu, cupy and cugraph (the ``[gpu]`` extra).

Imported only when ``backend: gpu`` (or ``auto`` on a machine with a GPU) is chosen. Pieces of RAPIDS that
are missing fall back to CuPy implementations so the GPU path keeps working.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from daskcluster.backends.cpu import CpuBackend, below_to_empty


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
def _resources() -> Any:
    import faiss

    return faiss.StandardGpuResources()


class GpuBackend(CpuBackend):
    """Search and k-means on the GPU (faiss-gpu), components with cuGraph."""

    name = "gpu"
    searches_both_ways = False  # faiss-gpu's IVF search returns each query's own top-k only
    spills = False  # faiss-gpu lists each vector once, on the device
    kmeans_on_gpu = True
    partition_mb = 1024.0  # a GPU search wants partitions of gigabytes: fewer, larger batches

    def build_index(self, xb: np.ndarray, centroids: np.ndarray | None, lists: np.ndarray | None = None) -> Any:
        """A faiss GPU index: flat, or IVF-Flat over the shared ``centroids`` (faiss-gpu lists the rows on the
        device: ``lists`` is not needed)."""
        import faiss

        xb = np.ascontiguousarray(xb, dtype=np.float32)
        d = xb.shape[1]
        if centroids is None:
            cpu_index = faiss.IndexFlatIP(d)
        else:
            quantizer = faiss.IndexFlatIP(d)
            quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
            cpu_index = faiss.IndexIVFFlat(quantizer, d, len(centroids), faiss.METRIC_INNER_PRODUCT)
            cpu_index.is_trained = True
        index = faiss.index_cpu_to_gpu(_resources(), 0, cpu_index)
        index.add(xb)
        return index

    def probe(self, centroids: np.ndarray, xq: np.ndarray, nprobe: int, gap: float | None = None) -> None:
        """faiss-gpu quantizes on the device, inside its search."""
        return None

    def search(
        self,
        index: Any,
        xq: np.ndarray,
        k: int,
        nprobe: int,
        min_sim: float | None = None,
        coarse: None = None,
        both: None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        if hasattr(index, "nprobe"):
            index.nprobe = max(1, min(nprobe, index.nlist))
        D, I = index.search(np.ascontiguousarray(xq, dtype=np.float32), min(k, 2048))
        return below_to_empty(D, I, min_sim)

    def connected_components(self, n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        try:
            import cudf
            import cugraph
        except ImportError:
            return super().connected_components(n, src, dst)
        frame = cudf.DataFrame({"src": src.astype(np.int64), "dst": dst.astype(np.int64)})
        graph = cugraph.Graph(directed=False)
        graph.from_cudf_edgelist(frame, source="src", destination="dst", renumber=True)
        result = cugraph.weakly_connected_components(graph).to_pandas()
        labels = np.arange(n, dtype=np.int64) + n  # isolated vertices: their own component
        labels[result["vertex"].to_numpy()] = result["labels"].to_numpy()
        _, dense = np.unique(labels, return_inverse=True)
        return dense.astype(np.int64)

    def local_cluster(self, n_workers: int, threads_per_worker: int, memory_limit: str, dashboard_address: str) -> Any:
        """dask-cuda's ``LocalCUDACluster``: one worker per visible GPU (``n_workers`` is the most it starts)."""
        import logging

        from dask_cuda import LocalCUDACluster

        return LocalCUDACluster(
            n_workers=min(n_workers, gpu_count()) or None,
            threads_per_worker=threads_per_worker,
            memory_limit=memory_limit,
            dashboard_address=dashboard_address,
            silence_logs=logging.ERROR,
        )
