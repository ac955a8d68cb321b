"""k-NN search over shards: index choice, shard build, per-shard search and top-k merging.

Vocabulary follows faiss: ``xq`` queries, ``xb`` database, ``D`` similarities (inner products of unit
vectors, i.e. cosine), ``I`` ids, ``k`` neighbours. IVF search keeps the vectors themselves, so every
candidate is scored by the exact inner product: the lists only decide which vectors are candidates (see
:mod:`daskcluster.ivf` for the CPU implementation). Every shard of one search shares one coarse
quantizer, so a query probes the same lists in every shard and the merged result does not depend on how
the database is split into shards.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from daskcluster.backends import get_backend
from daskcluster.config import SearchConfig

log = logging.getLogger(__name__)

_HASH_MULT = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class IndexSpec:
    """How a database of ``n`` vectors is searched: ``nlist == 0`` means flat (exact) search."""

    nlist: int = 0
    nprobe: int = 0

    @property
    def is_flat(self) -> bool:
        return self.nlist == 0

    def describe(self) -> str:
        return "Flat (exact)" if self.is_flat else f"IVF{self.nlist},Flat nprobe={self.nprobe}"


def choose_index(n_db: int, cfg: SearchConfig) -> IndexSpec:
    """Pick the index from the database size: flat when small or exact, else IVF with ~2 sqrt(n) lists.

    nprobe defaults to nlist / 16 (at least 32). Measured with ``scripts/bench_search.py`` on a realistic
    200k x 256 synthetic day: IVF1024 nprobe 64 finds 0.997 of the edges >= 0.6 (by id) at 1/3 of the exact
    search time, where IVF2048 nprobe 64 found 0.984 in the same time (the blocked CPU search favours fewer,
    longer lists); the ``search.audit`` confirms it on every day it is asked to.
    """
    if cfg.exact or n_db < max(cfg.flat_below, 1):
        return IndexSpec()
    nlist = cfg.nlist or int(2 ** round(math.log2(2 * math.sqrt(n_db))))
    nlist = max(16, min(nlist, n_db // 39))  # faiss wants >= 39 training points per list
    nprobe = cfg.nprobe or max(32, nlist // 16)
    return IndexSpec(nlist=nlist, nprobe=min(nprobe, nlist))


def id_hash(ids: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random 64-bit hash of int64 ids (splitmix-style), for partition-independent sampling."""
    x = ids.astype(np.uint64) * _HASH_MULT
    x ^= x >> np.uint64(31)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(29)
    return x


def sample_rows(ids: np.ndarray, x: np.ndarray, n_max: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n_max`` rows with the smallest id hash: ``(hashes, x rows)``. Merging such samples from any
    partitioning and keeping the ``n_max`` smallest hashes gives the same global sample."""
    h = id_hash(ids)
    keep = np.argsort(h, kind="stable")[:n_max]
    return h[keep], x[keep]


def train_quantizer(samples: list[tuple[np.ndarray, np.ndarray]], nlist: int, n_max: int,
                    backend: str, seed: int = 1234) -> np.ndarray:
    """Merge per-partition samples (see :func:`sample_rows`) and train ``nlist`` IVF centroids."""
    h = np.concatenate([s[0] for s in samples])
    x = np.concatenate([s[1] for s in samples])
    keep = np.argsort(h, kind="stable")[:n_max]
    return get_backend(backend).train_quantizer(x[keep], nlist, seed)


@dataclass
class Shard:
    """Vectors ``xb`` with their global ``ids`` and an index over them, built lazily on the worker.

    Pickles without the index (faiss indexes do not pickle); the index is rebuilt where it lands.
    """

    ids: np.ndarray
    xb: np.ndarray
    centroids: np.ndarray | None
    nprobe: int
    backend: str
    _index: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_index"] = None
        return state

    @property
    def index(self) -> Any:
        if self._index is None:
            self._index = get_backend(self.backend).build_index(self.xb, self.centroids)
        return self._index

    def __len__(self) -> int:
        return len(self.ids)


def build_shard(ids: np.ndarray, xb: np.ndarray, spec: IndexSpec, centroids: np.ndarray | None,
                backend: str) -> Shard:
    shard = Shard(ids=ids, xb=xb, centroids=None if spec.is_flat else centroids,
                  nprobe=spec.nprobe, backend=backend)
    if len(shard):
        _ = shard.index
    return shard


def search_shard(shard: Shard, xq: np.ndarray, k: int, min_sim: float | None = None,
                 probes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of ``xq`` in one shard (only neighbours >= ``min_sim`` when given): ``(D, I)`` with global
    ids; empty slots are ``(-inf, -1)``."""
    nq = len(xq)
    if len(shard) == 0 or nq == 0:
        return np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64)
    kk = min(k, len(shard))
    if shard.centroids is None:
        probes = None
    D, I = get_backend(shard.backend).search(shard.index, xq, kk, shard.nprobe, min_sim, probes)
    ids = np.where(I >= 0, shard.ids[np.maximum(I, 0)], -1)
    D = np.where(I >= 0, D, -np.inf).astype(np.float32)
    if kk < k:
        D = np.pad(D, ((0, 0), (0, k - kk)), constant_values=-np.inf)
        ids = np.pad(ids, ((0, 0), (0, k - kk)), constant_values=-1)
    return D, ids.astype(np.int64)


def merge_topk(results: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard top-k lists of the same queries; ties are broken by the smaller id, so the result
    does not depend on the order or number of shards."""
    if len(results) == 1:
        D, I = results[0]
        return D[:, :k], I[:, :k]
    D = np.concatenate([r[0] for r in results], axis=1)
    I = np.concatenate([r[1] for r in results], axis=1)
    id_key = np.where(I >= 0, I, np.iinfo(np.int64).max)
    order = np.lexsort((id_key, -D.astype(np.float64)), axis=1)[:, :k]
    return np.take_along_axis(D, order, axis=1), np.take_along_axis(I, order, axis=1)


def edge_recall(approx: tuple[np.ndarray, np.ndarray], exact: tuple[np.ndarray, np.ndarray], threshold: float,
                self_ids: np.ndarray | None = None) -> tuple[int, int]:
    """How many of the exact top-k edges ``(query, id)`` with similarity >= ``threshold`` the approximate
    top-k also holds, by id: ``(found, total)``. ``self_ids`` (each query's own id) are not edges."""
    D, I = exact
    want = (D >= threshold) & (I >= 0)
    if self_ids is not None:
        want &= I != self_ids[:, None]
    hit = (I[:, :, None] == approx[1][:, None, :]).any(axis=2) & want
    return int(hit.sum()), int(want.sum())
