"""Inverted-file search done as blocked matrix products (CPU).

faiss's IVF-Flat scans its lists one query at a time, which on a CPU is barely faster than a BLAS flat
search for the all-against-all k-NN graph. Here the work is turned around, as faiss ``big_batch_search``
does: queries are grouped by the lists they probe and every list is scored against all its queries in one
matrix product; each block keeps only its per-query top-k (at or above ``min_sim`` when given) and the
candidates are merged at the end. Every candidate's score is the exact inner product. The database is kept
in list order so a list is one contiguous slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

QUERY_BLOCK = 16_384  # queries scored per pass, bounding the candidate buffers


@dataclass
class BlockedIVF:
    quantizer: faiss.IndexFlatIP
    xb: np.ndarray  # database rows in list order
    rows: np.ndarray  # original row number of each row of xb
    offsets: np.ndarray  # list j is xb[offsets[j]:offsets[j + 1]]

    @property
    def nlist(self) -> int:
        return len(self.offsets) - 1


def build(xb: np.ndarray, centroids: np.ndarray, lists: np.ndarray | None = None) -> BlockedIVF:
    """The index of ``xb`` over ``centroids``; ``lists`` (each row's nearest centroid, when stored) skips the
    quantization of the rows."""
    quantizer = faiss.IndexFlatIP(xb.shape[1])
    quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
    if lists is None:
        lists = nearest_list(quantizer, xb)
    order = np.argsort(lists, kind="stable")
    offsets = np.searchsorted(lists[order], np.arange(len(centroids) + 1))
    return BlockedIVF(quantizer, np.ascontiguousarray(xb[order]), order.astype(np.int64), offsets)


def nearest_list(quantizer: faiss.IndexFlatIP, xb: np.ndarray) -> np.ndarray:
    """Each row's list: its nearest centroid by inner product, (n,) int64."""
    if len(xb) == 0:
        return np.empty(0, np.int64)
    return quantizer.search(np.ascontiguousarray(xb, dtype=np.float32), 1)[1][:, 0].astype(np.int64)


def _block_topk(S: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and scores of each row's top-k (unordered) of a score block."""
    if S.shape[1] <= k:
        cols = np.broadcast_to(np.arange(S.shape[1]), S.shape)
        return cols, S
    cols = np.argpartition(-S, k - 1, axis=1)[:, :k]
    return cols, np.take_along_axis(S, cols, axis=1)


def probe(centroids: np.ndarray, xq: np.ndarray, nprobe: int) -> np.ndarray:
    """The ``nprobe`` lists each query probes (the coarse quantization), (nq, nprobe) int64."""
    quantizer = faiss.IndexFlatIP(centroids.shape[1])
    quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
    return quantizer.search(np.ascontiguousarray(xq, dtype=np.float32), max(1, min(nprobe, len(centroids))))[1]


def _candidates(index: BlockedIVF, xq: np.ndarray, k: int, probes: np.ndarray, min_sim: float | None):
    """(query, row, score) of every kept candidate, for a block of queries and the lists they probe."""
    q = np.repeat(np.arange(len(xq)), probes.shape[1])
    lists = probes.ravel()
    order = np.argsort(lists, kind="stable")
    q, lists = q[order], lists[order]
    bounds = np.searchsorted(lists, np.arange(index.nlist + 1))
    out_q, out_r, out_s = [], [], []
    for j in np.flatnonzero((np.diff(bounds) > 0) & (np.diff(index.offsets) > 0)):
        qs = q[bounds[j] : bounds[j + 1]]
        lo, hi = index.offsets[j], index.offsets[j + 1]
        cols, scores = _block_topk(xq[qs] @ index.xb[lo:hi].T, k)
        keep = scores >= min_sim if min_sim is not None else np.ones(scores.shape, bool)
        out_q.append(np.broadcast_to(qs[:, None], scores.shape)[keep])
        out_r.append(cols[keep] + lo)
        out_s.append(scores[keep])
    if not out_q:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    return np.concatenate(out_q), np.concatenate(out_r), np.concatenate(out_s)


def _sort_key(q: np.ndarray, s: np.ndarray) -> np.ndarray:
    """One int64 key ordering candidates by query, then by descending score (the float32 bits of ``-s``
    made monotonic as integers): one integer sort instead of a three-key lexsort."""
    bits = (-s.astype(np.float32)).view(np.int32).astype(np.int64)
    bits = np.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    return (q.astype(np.int64) << 32) + (bits + 2**31)


def _top_per_query(nq: int, q: np.ndarray, rows: np.ndarray, s: np.ndarray, k: int):
    D = np.full((nq, k), -np.inf, np.float32)
    I = np.full((nq, k), -1, np.int64)
    order = np.argsort(_sort_key(q, s), kind="stable")  # candidates come in a fixed order: ties are stable
    q, rows, s = q[order], rows[order], s[order]
    start = np.searchsorted(q, np.arange(nq))
    rank = np.arange(len(q)) - start[q]
    keep = rank < k
    D[q[keep], rank[keep]] = s[keep]
    I[q[keep], rank[keep]] = rows[keep]
    return D, I


def search(
    index: BlockedIVF,
    xq: np.ndarray,
    k: int,
    nprobe: int,
    min_sim: float | None = None,
    probes: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by inner product among the candidates of the ``nprobe`` nearest lists: ``(D, I)`` with I the
    database row numbers (-1 and -inf where fewer than k candidates, at or above ``min_sim``, exist).

    ``probes`` (from :func:`probe` with the same centroids) skips the coarse quantization: a query
    partition searched against many shards is quantized once, not once per shard."""
    xq = np.ascontiguousarray(xq, dtype=np.float32)
    nprobe = max(1, min(nprobe, index.nlist))
    Ds, Is = [], []
    for start in range(0, len(xq), QUERY_BLOCK):
        block = xq[start : start + QUERY_BLOCK]
        block_probes = (
            probes[start : start + QUERY_BLOCK] if probes is not None else index.quantizer.search(block, nprobe)[1]
        )
        q, r, s = _candidates(index, block, k, block_probes, min_sim)
        D, I = _top_per_query(len(block), q, r, s, k)
        Ds.append(D)
        Is.append(np.where(I >= 0, index.rows[np.maximum(I, 0)], -1))
    if not Ds:
        return np.empty((0, k), np.float32), np.empty((0, k), np.int64)
    return np.concatenate(Ds), np.concatenate(Is)
