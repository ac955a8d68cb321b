"""What the blocked IVF (``ivf``) hands between tasks, in plain arrays (no index library): the lists a block of
queries probes, and the reverse candidates of a search both ways with their join into top-k lists. The arrays
are numpy, or CuPy inside a GPU task (``xp``); what travels between tasks is numpy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from daskcluster.backends import xp as xpm

__all__ = ["Both", "Probes", "Reverse", "join_reverse"]


@dataclass
class Probes:
    """The lists a block of queries probes: ``primary[i]`` (the nearest) and, in CSR form, the others:
    ``others[indptr[i]:indptr[i + 1]]``, int32. Compact enough to travel between tasks."""

    primary: Any
    indptr: Any
    others: Any

    def __len__(self) -> int:
        return len(self.primary)

    def __getitem__(self, rows: slice) -> Probes:
        a, b, _ = rows.indices(len(self))
        lo, hi = int(self.indptr[a]), int(self.indptr[b])
        return Probes(self.primary[a:b], self.indptr[a : b + 1] - lo, self.others[lo:hi])

    @staticmethod
    def concat(parts: list[Probes]) -> Probes:
        """The probes of the queries of ``parts``, one after the other."""
        if not parts:
            return Probes(np.empty(0, np.int32), np.zeros(1, np.int64), np.empty(0, np.int32))
        xp = xpm.namespace(parts[0].indptr)
        starts = np.cumsum([0] + [int(p.indptr[-1]) for p in parts[:-1]])
        indptr = xp.concatenate([xp.zeros(1, xp.int64)] + [p.indptr[1:] + int(a) for p, a in zip(parts, starts)])
        return Probes(
            xp.concatenate([p.primary for p in parts]),
            indptr.astype(xp.int64),
            xp.concatenate([p.others for p in parts]),
        )

    def to(self, xp: Any) -> Probes:
        """These probes in the memory of ``xp`` (numpy: the host; CuPy: the device)."""
        move = xpm.to_host if xp is np else xp.asarray
        return Probes(move(self.primary), move(self.indptr), move(self.others))

    def pairs(self) -> tuple[Any, Any]:
        """``(query, list)`` of every non-primary probe, grouped by list (queries ascending within a list)."""
        xp = xpm.namespace(self.others)
        q = xpm.repeat(xp, xp.arange(len(self), dtype=xp.int64), xp.diff(self.indptr))
        order = xpm.argsort(xp, self.others)
        return q[order], self.others[order]

    @property
    def mean(self) -> float:
        """Lists probed per query."""
        return 1.0 + len(self.others) / max(1, len(self))


@dataclass
class Reverse:
    """Reverse candidates ``(row, nb, s)``: database row ``row`` has neighbour ``nb`` at similarity ``s``;
    sorted by row, then by descending score and ascending neighbour, at most k per row."""

    row: Any
    nb: Any
    s: Any

    def __len__(self) -> int:
        return len(self.row)

    @staticmethod
    def empty(xp: Any = np) -> Reverse:
        return Reverse(xp.empty(0, xp.int64), xp.empty(0, xp.int64), xp.empty(0, xp.float32))

    @staticmethod
    def best(row: Any, nb: Any, s: Any, k: int) -> Reverse:
        """Each row's best k of the triples (ties: the smaller neighbour)."""
        xp = xpm.namespace(row, nb, s)
        order = xpm.lexsort(xp, (nb, -s.astype(xp.float64), row))
        row, nb, s = row[order], nb[order], s[order]
        start = xp.searchsorted(row, row, side="left")
        keep = xp.arange(len(row)) - start < k
        return Reverse(row[keep], nb[keep], s[keep].astype(xp.float32))

    def to_host(self) -> Reverse:
        return Reverse(xpm.to_host(self.row), xpm.to_host(self.nb), xpm.to_host(self.s))

    @staticmethod
    def merge(parts: list[Reverse], k: int) -> Reverse:
        """The best k per row of several pieces (pieces of different queries: no triple repeats)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return Reverse.empty()
        if len(parts) == 1:
            return parts[0]
        xp = xpm.namespace(parts[0].row)
        return Reverse.best(*(xp.concatenate([getattr(p, a) for p in parts]) for a in ("row", "nb", "s")), k)

    def slice(self, lo: int, hi: int) -> Reverse:
        """The triples of rows ``lo <= row < hi``."""
        xp = xpm.namespace(self.row)
        a, b = (int(v) for v in xp.searchsorted(self.row, xp.asarray([lo, hi], dtype=self.row.dtype)))
        return Reverse(self.row[a:b], self.nb[a:b], self.s[a:b])

    def __sizeof__(self) -> int:
        return int(self.row.nbytes + self.nb.nbytes + self.s.nbytes)


def join_reverse(D: np.ndarray, I: np.ndarray, rev: Reverse, first: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k lists ``(D, I)`` of rows ``first, first + 1, ...`` joined with their reverse candidates: each
    row's best k distinct neighbours (ties: the smaller id), empty slots ``(-inf, -1)``. Only the rows with
    reverse candidates are re-ranked."""
    n, k = D.shape
    rev = rev.slice(first, first + n)
    if not len(rev):
        return D, I
    rows = np.unique(rev.row - first)
    Dr, Ir = D[rows], I[rows]
    q, j = np.nonzero(Ir >= 0)
    row = np.concatenate([q.astype(np.int64), np.searchsorted(rows, rev.row - first)])
    nb = np.concatenate([Ir[q, j], rev.nb])
    s = np.concatenate([Dr[q, j], rev.s]).astype(np.float32)
    order = np.lexsort((-s.astype(np.float64), nb, row))  # one neighbour found both ways: its best score
    row, nb, s = row[order], nb[order], s[order]
    first_of = np.ones(len(row), bool)
    first_of[1:] = (row[1:] != row[:-1]) | (nb[1:] != nb[:-1])
    top = Reverse.best(row[first_of], nb[first_of], s[first_of], k)
    rank = np.arange(len(top.row)) - np.searchsorted(top.row, top.row, side="left")
    Dr = np.full((len(rows), k), -np.inf, np.float32)
    Ir = np.full((len(rows), k), -1, np.int64)
    Dr[top.row, rank] = top.s
    Ir[top.row, rank] = top.nb
    D, I = D.copy(), I.copy()
    D[rows], I[rows] = Dr, Ir
    return D, I


@dataclass
class Both:
    """What searching both ways needs of the database rows, in index order: each row's floor
    (:func:`own_floors`) and the lists it probes itself (``others[indptr[r]:indptr[r + 1]]``). A reverse
    candidate ``(b, q)`` is kept only when ``b`` does not probe ``q``'s nearest list itself: otherwise ``b``'s
    own search scores ``q`` already."""

    floors: Any
    indptr: Any
    others: Any

    def probed(self, lo: int, hi: int, lists: Any, lookup: Any) -> Any:
        """``(hi - lo, len(lists))``: whether row ``lo + i`` probes list ``lists[j]`` (its own list aside).
        ``lookup``: a scratch array of -1, one per list of the index, left as it was found."""
        xp = xpm.namespace(lists, lookup)
        out = xp.zeros((hi - lo, len(lists)), bool)
        a, b = int(self.indptr[lo]), int(self.indptr[hi])
        lookup[lists] = xp.arange(len(lists))
        col = lookup[self.others[a:b]]
        lookup[lists] = -1
        row = xpm.repeat(xp, xp.arange(hi - lo), xp.diff(self.indptr[lo : hi + 1]))
        hit = col >= 0
        out[row[hit], col[hit]] = True
        return out

    def to(self, xp: Any) -> Both:
        """This in the memory of ``xp`` (numpy: the host; CuPy: the device)."""
        move = xpm.to_host if xp is np else xp.asarray
        return Both(move(self.floors), move(self.indptr), move(self.others))

    def __sizeof__(self) -> int:
        return int(self.floors.nbytes + self.indptr.nbytes + self.others.nbytes)
