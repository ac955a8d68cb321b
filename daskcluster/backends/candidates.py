"""What the blocked IVF (``ivf``) hands between tasks, in plain numpy (no index library): the lists a block of
queries probes, and the reverse candidates of a search both ways with their join into top-k lists."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Both", "Probes", "Reverse", "join_reverse"]


@dataclass
class Probes:
    """The lists a block of queries probes: ``primary[i]`` (the nearest) and, in CSR form, the others:
    ``others[indptr[i]:indptr[i + 1]]``, int32. Compact enough to travel between tasks."""

    primary: np.ndarray
    indptr: np.ndarray
    others: np.ndarray

    def __len__(self) -> int:
        return len(self.primary)

    def __getitem__(self, rows: slice) -> Probes:
        a, b, _ = rows.indices(len(self))
        lo, hi = self.indptr[a], self.indptr[b]
        return Probes(self.primary[a:b], self.indptr[a : b + 1] - lo, self.others[lo:hi])

    @staticmethod
    def concat(parts: list[Probes]) -> Probes:
        """The probes of the queries of ``parts``, one after the other."""
        if not parts:
            return Probes(np.empty(0, np.int32), np.zeros(1, np.int64), np.empty(0, np.int32))
        starts = np.cumsum([0] + [p.indptr[-1] for p in parts[:-1]])
        indptr = np.concatenate([[0]] + [p.indptr[1:] + a for p, a in zip(parts, starts)]).astype(np.int64)
        return Probes(np.concatenate([p.primary for p in parts]), indptr, np.concatenate([p.others for p in parts]))

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """``(query, list)`` of every non-primary probe, grouped by list (queries ascending within a list)."""
        q = np.repeat(np.arange(len(self), dtype=np.int64), np.diff(self.indptr))
        order = np.argsort(self.others, kind="stable")
        return q[order], self.others[order]

    @property
    def mean(self) -> float:
        """Lists probed per query."""
        return 1.0 + len(self.others) / max(1, len(self))


@dataclass
class Reverse:
    """Reverse candidates ``(row, nb, s)``: database row ``row`` has neighbour ``nb`` at similarity ``s``;
    sorted by row, then by descending score and ascending neighbour, at most k per row."""

    row: np.ndarray
    nb: np.ndarray
    s: np.ndarray

    def __len__(self) -> int:
        return len(self.row)

    @staticmethod
    def empty() -> Reverse:
        return Reverse(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))

    @staticmethod
    def best(row: np.ndarray, nb: np.ndarray, s: np.ndarray, k: int) -> Reverse:
        """Each row's best k of the triples (ties: the smaller neighbour)."""
        order = np.lexsort((nb, -s.astype(np.float64), row))
        row, nb, s = row[order], nb[order], s[order]
        start = np.searchsorted(row, row, side="left")
        keep = np.arange(len(row)) - start < k
        return Reverse(row[keep], nb[keep], s[keep].astype(np.float32))

    @staticmethod
    def merge(parts: list[Reverse], k: int) -> Reverse:
        """The best k per row of several pieces (pieces of different queries: no triple repeats)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return Reverse.empty()
        if len(parts) == 1:
            return parts[0]
        return Reverse.best(*(np.concatenate([getattr(p, a) for p in parts]) for a in ("row", "nb", "s")), k)

    def slice(self, lo: int, hi: int) -> Reverse:
        """The triples of rows ``lo <= row < hi``."""
        a, b = np.searchsorted(self.row, [lo, hi])
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

    floors: np.ndarray
    indptr: np.ndarray
    others: np.ndarray

    def probed(self, lo: int, hi: int, lists: np.ndarray, lookup: np.ndarray) -> np.ndarray:
        """``(hi - lo, len(lists))``: whether row ``lo + i`` probes list ``lists[j]`` (its own list aside).
        ``lookup``: a scratch array of -1, one per list of the index, left as it was found."""
        out = np.zeros((hi - lo, len(lists)), bool)
        a, b = self.indptr[lo], self.indptr[hi]
        lookup[lists] = np.arange(len(lists))
        col = lookup[self.others[a:b]]
        lookup[lists] = -1
        row = np.repeat(np.arange(hi - lo), np.diff(self.indptr[lo : hi + 1]))
        hit = col >= 0
        out[row[hit], col[hit]] = True
        return out

    def __sizeof__(self) -> int:
        return int(self.floors.nbytes + self.indptr.nbytes + self.others.nbytes)
