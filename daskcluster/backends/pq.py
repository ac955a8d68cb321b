"""IVF-PQ over the shared coarse quantizer, with an exact re-rank against the stored vectors (``search.codec: pq``).

For galleries whose centres do not fit a device as float vectors: the index holds 8-bit product-quantization
codes of ``m`` bytes a vector (256 floats: 1 KiB flat, 128 bytes at the default ``m``), in the same IVF lists as the
blocked IVF (the gallery's stored list ids, spills included) and probed by the same :class:`Probes` (the day's
gap). The codes only choose candidates: each query's best ``k * rerank`` by approximate score are re-scored by
the exact inner product against the stored vectors (host memory), and the top-k returned are exact scores,
each row once. What the codes lose is candidates: the assignment's agreement with exact search measures it
(``benchmarks.assign``, ``docs/gpu.md``).

faiss (``IndexIVFPQ``, ``faiss.contrib.ivf_tools``) does the coding and the scan. The product quantizer is
trained on an evenly spaced sample of the shard's own vectors (deterministic, and the same whatever the
number of workers), coding each vector's residual from its list's centroid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
from faiss.contrib import ivf_tools

from daskcluster.backends.candidates import Probes
from daskcluster.backends.ivf import stored_rows

__all__ = ["MIN_ROWS", "PQIndex", "build", "search"]

NBITS = 8  # 256 codewords per sub-vector: one byte each
MIN_ROWS = 4 * 2**NBITS  # fewer vectors than this cannot train the codebooks: such a shard stays flat IVF
TRAIN_ROWS = 32 * 2**NBITS  # at most this many vectors train the codebooks (its k-means cost m x rows x 256)
TRAIN_ITERS = 10
RERANK_CHUNK = 4096  # queries re-ranked at a time: bounds the (chunk, k * rerank, d) gather


@dataclass
class PQIndex:
    ivf: Any  # faiss.IndexIVFPQ: the codes, in the IVF lists
    centroids: np.ndarray  # the coarse quantizer's (probing without given probes)
    xb: np.ndarray  # the exact vectors, for the re-rank
    rerank: int
    m: int

    @property
    def nlist(self) -> int:
        return int(self.ivf.nlist)

    def __sizeof__(self) -> int:  # the codes, their ids, and the vectors kept for the re-rank
        n = int(self.ivf.ntotal)
        return int(n * (self.m + 8) + self.xb.nbytes)


def build(xb: np.ndarray, centroids: np.ndarray, lists: np.ndarray, m: int, rerank: int) -> PQIndex:
    """The IVF-PQ index of ``xb`` (n, d) over ``centroids``; ``lists``: each row's list, ``(n,)``, or
    ``(n, 1 + s)`` with the further lists it is spilled into (-1: none), as :func:`ivf.build` takes them."""
    xb = np.ascontiguousarray(xb, dtype=np.float32)
    d = xb.shape[1]
    m = min(m, d)
    if d % m:
        raise ValueError(f"search.pq_bytes {m} must divide the feature dimension {d}")
    quantizer = faiss.IndexFlatIP(d)
    quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
    index = faiss.IndexIVFPQ(quantizer, d, len(centroids), m, NBITS, faiss.METRIC_INNER_PRODUCT)
    step = max(1, len(xb) // TRAIN_ROWS)
    index.pq.cp.min_points_per_centroid = 4  # train on what a shard has (at least MIN_ROWS), quietly
    index.pq.cp.niter = TRAIN_ITERS
    index.train(
        np.ascontiguousarray(xb[::step][:TRAIN_ROWS])
    )  # the coarse quantizer is given: only the codebooks are trained
    row, lists = stored_rows(np.asarray(lists))
    ids = np.ascontiguousarray(row, dtype=np.int64)  # held here: the helper keeps only a raw pointer to it
    ivf_tools.add_preassigned(index, np.ascontiguousarray(xb[row]), np.ascontiguousarray(lists, np.int64), ids=ids)
    return PQIndex(index, np.ascontiguousarray(centroids, dtype=np.float32), xb, max(1, rerank), m)


def _fixed_width(probes: Probes) -> np.ndarray:
    """The probes as an ``(n, w)`` list array (the nearest first, -1 padded), what faiss searches."""
    counts = np.diff(probes.indptr)
    out = np.full((len(probes), 1 + (int(counts.max()) if len(counts) else 0)), -1, np.int64)
    out[:, 0] = probes.primary
    q = np.repeat(np.arange(len(probes)), counts)
    out[q, 1 + np.arange(len(q)) - np.repeat(probes.indptr[:-1], counts)] = probes.others
    return out


def search(index: PQIndex, xq: np.ndarray, k: int, probes: Probes, min_sim: float | None = None):
    """Top-k by exact inner product among each query's ``k * rerank`` best by code, in the lists it probes:
    ``(D, I)`` with I row numbers (-1 / -inf where fewer, or under ``min_sim``)."""
    xq = np.ascontiguousarray(xq, dtype=np.float32)
    D = np.full((len(xq), k), -np.inf, np.float32)
    I = np.full((len(xq), k), -1, np.int64)
    if not len(xq) or index.ivf.ntotal == 0:
        return D, I
    lists = _fixed_width(probes)
    index.ivf.nprobe = lists.shape[1]
    # the codes are of residuals: a candidate's score is its list's centroid score plus its residual's
    coarse = np.take_along_axis(xq @ index.centroids.T, np.maximum(lists, 0), axis=1).astype(np.float32)
    _, cand = ivf_tools.search_preassigned(index.ivf, xq, k * index.rerank, lists, coarse)
    for a in range(0, len(xq), RERANK_CHUNK):
        c = cand[a : a + RERANK_CHUNK]
        s = np.einsum("qd,qkd->qk", xq[a : a + len(c)], index.xb[np.maximum(c, 0)])
        s = np.where(c >= 0, s, -np.inf).astype(np.float32)
        order = np.lexsort((c, -s), axis=-1)  # descending score, then the lower row; a spilled row's copies adjacent
        c, s = np.take_along_axis(c, order, 1), np.take_along_axis(s, order, 1)
        s[:, 1:][c[:, 1:] == c[:, :-1]] = -np.inf  # a row found in two of its lists counts once
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
        c, s = np.take_along_axis(c, order, 1), np.take_along_axis(s, order, 1)
        low = np.isneginf(s) if min_sim is None else ~(s >= min_sim)  # empty slots and copies too
        D[a : a + len(c), : s.shape[1]] = np.where(low, -np.inf, s)
        I[a : a + len(c), : c.shape[1]] = np.where(low, -1, c)
    return D, I
