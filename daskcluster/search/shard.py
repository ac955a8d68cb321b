"""One shard of a database: vectors with their global ids and an index over them, searched where it lives.

Vocabulary follows faiss: ``xq`` queries, ``xb`` database, ``D`` similarities (inner products of unit vectors,
i.e. cosine), ``I`` ids, ``k`` neighbours. IVF search keeps the vectors themselves, so every candidate is scored
by the exact inner product: the lists only decide which vectors are candidates. Every shard of one search shares
one coarse quantizer, so a query probes the same lists in every shard and the merged result does not depend on
how the database is split into shards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from daskcluster.backends import get_backend
from daskcluster.backends.candidates import Probes, Reverse
from daskcluster.backends.xp import to_host
from daskcluster.search.index import IndexSpec

__all__ = ["IndexShard", "build_shard", "gallery_lists", "nearest_lists", "probe", "search_shard", "shard_both_ways"]


@dataclass
class IndexShard:
    """Vectors ``xb`` with their global ``ids`` and an index over them, built lazily on the worker.

    Pickles without the index (indexes do not pickle); the index is rebuilt where it lands."""

    ids: np.ndarray
    xb: np.ndarray
    centroids: np.ndarray | None
    nprobe: int
    backend: str
    lists: np.ndarray | None = None  # each row's IVF list when stored with the rows (no quantization at build);
    # (n, 1 + s): also the lists it is spilled into (-1 none), for a backend that ``spills``
    gap: float | None = None  # probing by centroid score gap (see ``IndexSpec``), when no probes are given
    pq: tuple[int, int] | None = None  # ``(bytes, rerank)``: an IVF-PQ index re-ranked exactly (``IndexSpec.pq``)
    _index: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_index"] = None
        return state

    @property
    def index(self) -> Any:
        if self._index is None:
            self._index = get_backend(self.backend).build_index(self.xb, self.centroids, self.lists, self.pq)
        return self._index

    def __len__(self) -> int:
        return len(self.ids)

    def row_lists(self) -> np.ndarray | None:
        """Each row's IVF list (None for a flat shard)."""
        if self.centroids is None:
            return None
        if self.lists is not None:
            lists = np.asarray(self.lists)
            return lists[:, 0] if lists.ndim == 2 else lists
        index = self.index
        if hasattr(index, "offsets"):  # the blocked IVF keeps its rows in list order
            out = np.empty(len(index.rows), np.int64)
            out[to_host(index.rows)] = np.repeat(np.arange(index.nlist), np.diff(index.offsets))
            return out
        return nearest_lists(self.centroids, self.xb, self.backend)

    def reach_lists(self) -> np.ndarray | None:
        """The lists holding each row, ``(n, r)`` (-1 padded): its own and, where the index spills, the others
        (None for a flat shard)."""
        own = self.row_lists()
        if own is None:
            return None
        lists = None if self.lists is None else np.asarray(self.lists)
        if lists is not None and lists.ndim == 2 and get_backend(self.backend).spills:
            return lists
        return own[:, None]

    def __sizeof__(self) -> int:
        centroids = self.centroids.nbytes if self.centroids is not None else 0
        spilled = 0 if self.lists is None or np.ndim(self.lists) < 2 else int((self.lists[:, 1:] >= 0).sum())
        row_bytes = self.xb.shape[1] * 4 if self.pq is None else self.pq[0] + 8  # a float copy, or codes and ids
        copy = (len(self.xb) + spilled) * row_bytes  # the index's rows (spilled ones too)
        return int(self.xb.nbytes + copy + self.ids.nbytes + centroids)


def build_shard(
    ids: np.ndarray,
    xb: np.ndarray,
    spec: IndexSpec,
    centroids: np.ndarray | None,
    backend: str,
    lists: np.ndarray | None = None,
) -> IndexShard:
    """``lists``: each row's list among ``centroids``, when known (persisted with a gallery's clusters)."""
    ivf = not spec.is_flat
    shard = IndexShard(
        ids=ids,
        xb=xb,
        centroids=centroids if ivf else None,
        nprobe=spec.nprobe,
        backend=backend,
        lists=lists if ivf else None,
        gap=spec.gap,
        pq=spec.pq if ivf else None,
    )
    if len(shard):
        _ = shard.index
    return shard


def nearest_lists(centroids: np.ndarray, x: np.ndarray, backend: str) -> np.ndarray:
    """Each row's IVF list (its nearest centroid), int32: what a gallery stores with its clusters."""
    if len(x) == 0:
        return np.empty(0, np.int32)
    return np.asarray(get_backend(backend).probe(centroids, x, 1).primary).reshape(len(x)).astype(np.int32)


def gallery_lists(
    centroids: np.ndarray, x: np.ndarray, backend: str, spill: int = 0, below: float = 0.0
) -> tuple[np.ndarray, np.ndarray | None]:
    """What a gallery stores with its centres ``x``: each one's IVF list (int32) and, with ``spill``, the
    ``(n, spill)`` further lists a centre whose best centroid scores under ``below`` is stored in too (-1:
    none; see :func:`daskcluster.backends.ivf.spill_lists`); None without."""
    if not spill:
        return nearest_lists(centroids, x, backend), None
    from daskcluster.backends.ivf import spill_lists

    own = nearest_lists(centroids, x, backend)
    more = spill_lists(centroids, x, spill, below)[:, 1:]
    return own, np.where(more == own[:, None], -1, more).astype(np.int32)  # a list holds a centre once


def probe(xq: np.ndarray, centroids: np.ndarray, nprobe: int, backend: str, gap: float | None = None) -> Any:
    """The coarse assignment of queries ``xq`` (what the backend's IVF search needs, or None), computed once
    per query partition for every shard."""
    return get_backend(backend).probe(centroids, xq, nprobe, gap)


def shard_both_ways(shard: IndexShard, probes: list, k: int, min_sim: float | None) -> Any:
    """What searching a shard's own rows both ways needs (see ``ivf.Both``): ``probes``, the :func:`probe`
    results of the query partitions the shard's rows came from, in order. None where the backend or the index
    cannot."""
    backend = get_backend(shard.backend)
    if len(shard) == 0 or shard.centroids is None or not backend.searches_both_ways:
        return None
    rows = Probes.concat(list(probes))
    if len(rows) != len(shard):
        raise ValueError(f"both-ways search: {len(rows)} probed rows for a shard of {len(shard)}")
    return backend.both_ways(shard.index, k, min_sim, rows)


def search_shard(
    shard: IndexShard, xq: np.ndarray, k: int, min_sim: float | None = None, coarse: Any = None, both: Any = None
) -> tuple:
    """Top-``k`` of ``xq`` in one shard (only neighbours >= ``min_sim`` when given): ``(D, I)`` with global
    ids; empty slots are ``(-inf, -1)``. ``coarse`` is the result of :func:`probe` for these queries.

    ``both`` (:func:`shard_both_ways`, when the queries are the shard's own rows' day): also the reverse
    candidates, ``(D, I, Reverse)`` with the shard's ids as rows and query numbers as neighbours."""
    nq = len(xq)
    if len(shard) == 0 or nq == 0:
        empty = np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64)
        return empty if both is None else (*empty, Reverse.empty())
    kk = min(k, len(shard)) if both is None else k  # the blocked IVF pads lists of fewer than k itself
    backend = get_backend(shard.backend)
    if shard.centroids is None:
        coarse = None
    elif coarse is None:
        coarse = backend.probe(shard.centroids, xq, shard.nprobe, shard.gap)
    out = backend.search(shard.index, xq, kk, shard.nprobe, min_sim, coarse, both)
    D, I = out[0], out[1]
    ids = np.where(I >= 0, shard.ids[np.maximum(I, 0)], -1)
    D = np.where(I >= 0, D, -np.inf).astype(np.float32)
    if kk < k:
        D = np.pad(D, ((0, 0), (0, k - kk)), constant_values=-np.inf)
        ids = np.pad(ids, ((0, 0), (0, k - kk)), constant_values=-1)
    if both is None:
        return D, ids.astype(np.int64)
    rev = out[2]
    rows = shard.ids[rev.row].astype(np.int64)  # shard ids: re-sorted only where they do not ascend
    rev = Reverse.best(rows, rev.nb, rev.s, k) if (np.diff(rows) < 0).any() else Reverse(rows, rev.nb, rev.s)
    return D, ids.astype(np.int64), rev
