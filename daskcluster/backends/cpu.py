"""CPU backend: numpy, faiss-cpu and scipy."""
from __future__ import annotations

from typing import Any

import faiss
import numpy as np
import scipy.sparse
import scipy.sparse.csgraph


class CpuBackend:
    name = "cpu"

    def train_quantizer(self, sample: np.ndarray, nlist: int, seed: int) -> np.ndarray:
        sample = np.ascontiguousarray(sample, dtype=np.float32)
        kmeans = faiss.Kmeans(sample.shape[1], nlist, niter=12, spherical=True, seed=seed,
                              max_points_per_centroid=256, verbose=False)
        kmeans.train(sample)
        return np.ascontiguousarray(kmeans.centroids, dtype=np.float32)

    def build_index(self, xb: np.ndarray, centroids: np.ndarray | None) -> Any:
        xb = np.ascontiguousarray(xb, dtype=np.float32)
        d = xb.shape[1]
        if centroids is None:
            index = faiss.IndexFlatIP(d)
        else:
            quantizer = faiss.IndexFlatIP(d)
            quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
            index = faiss.IndexIVFFlat(quantizer, d, centroids.shape[0], faiss.METRIC_INNER_PRODUCT)
            index.is_trained = True
            index.own_fields = True
            quantizer.this.disown()
        index.add(xb)
        return index

    def search(self, index: Any, xq: np.ndarray, k: int, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        xq = np.ascontiguousarray(xq, dtype=np.float32)
        if isinstance(index, faiss.IndexIVF):
            params = faiss.SearchParametersIVF(nprobe=max(1, min(nprobe, index.nlist)))
            return index.search(xq, k, params=params)
        return index.search(xq, k)

    def connected_components(self, n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        graph = scipy.sparse.coo_matrix(
            (np.ones(len(src), dtype=np.int8), (src.astype(np.int64), dst.astype(np.int64))), shape=(n, n))
        _, labels = scipy.sparse.csgraph.connected_components(graph.tocsr(), directed=False)
        return labels.astype(np.int64)

    def serialize_index(self, index: Any) -> bytes:
        return faiss.serialize_index(index).tobytes()

    def deserialize_index(self, blob: bytes) -> Any:
        return faiss.deserialize_index(np.frombuffer(blob, dtype=np.uint8))
