"""Inverted-file search done as blocked matrix products (CPU), with threshold-aware probing.

faiss's IVF-Flat scans its lists one query at a time, which on a CPU is barely faster than a BLAS flat
search for the all-against-all k-NN graph. Here the work is turned around, as faiss ``big_batch_search``
does: queries are grouped by the lists they probe and every list is scored against all its queries in one
matrix product. Every candidate's score is the exact inner product; the lists only decide which vectors are
candidates. The database is kept in list order so a list is one contiguous slice.

Where the time goes (``docs/search.md``): on face data most scored pairs are faces of the few most frequent
identities, which fill the lists they live in, so a per-row top-k selection over every block would cost as much
as the products themselves. The search therefore runs in two passes:

1. every query against its nearest list only (queries sorted by that list: contiguous slices, no gather);
   this gives each query ``tau``, its k-th best score so far (at least ``min_sim``);
2. the other probed lists, keeping only scores ``>= tau`` of the row: a compare and a ``nonzero``, so the
   per-row top-k selection runs only on the rare rows with more than k such scores.

The result is the exact top-k among the probed lists' members: no candidate under ``tau`` can enter it.

**Both ways** (the k-NN graph of a set against itself, ``both``): every product of pass 2 also scores the
list's members against the query, so it is kept for them too. A member ``b`` keeps a query ``q`` when
``s(q, b) >= floor[b]``, its own k-th best within its list (:func:`own_floors`): nothing under it can enter
``b``'s top-k; and when ``b`` does not probe ``q``'s nearest list itself (then ``b``'s own search scores the
pair). A face's edge is then found when either end probes the other's list, which reaches the same
edge recall with a smaller gap (``docs/search.md``). The reverse candidates come back as
:class:`Reverse` triples, each row's best k, to be joined with the forward lists (:func:`join_reverse`).

Probing (:func:`probe`) is relative to the nearest list: a query probes the lists whose centroid scores
within ``gap`` of its best centroid score, at most ``nprobe`` of them. Far from a dense region few lists pass;
the gap is chosen per day from an exact sample for a target edge recall (``daskcluster.search.calibrate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from daskcluster.backends import xp as xpm
from daskcluster.backends.candidates import Both, Probes, Reverse, join_reverse

__all__ = [
    "BlockedIVF",
    "Both",
    "Probes",
    "Reverse",
    "both_ways",
    "build",
    "join_reverse",
    "nearest_list",
    "own_floors",
    "probe",
    "search",
    "spill_lists",
]

QUERY_BLOCK = 65_536  # queries searched per pass: bounds the probe and candidate buffers


@dataclass
class BlockedIVF:
    """Arrays of one array module (numpy, or CuPy on a GPU: the index then lives in device memory), except
    ``offsets``, which loops read: always numpy."""

    centroids: Any
    xb: Any  # database rows in list order
    rows: Any  # original row number of each row of xb
    offsets: np.ndarray  # list j is xb[offsets[j]:offsets[j + 1]]; host memory
    spilled: bool = False  # some rows sit in several lists (:func:`build` with spill lists)

    @property
    def nlist(self) -> int:
        return len(self.offsets) - 1

    @property
    def xp(self) -> Any:
        return xpm.namespace(self.xb)

    def __sizeof__(self) -> int:  # device bytes too: Dask's memory accounting (and dask-cuda's spilling) see them
        return int(self.centroids.nbytes + self.xb.nbytes + self.rows.nbytes + self.offsets.nbytes)


def build(xb: np.ndarray, centroids: np.ndarray, lists: np.ndarray | None = None) -> BlockedIVF:
    """The index of ``xb`` over ``centroids``; ``lists`` (each row's nearest centroid, when stored) skips the
    quantization of the rows. ``lists`` of shape ``(n, 1 + s)`` also *spills* rows into more lists: column 0
    is the row's nearest, the others further lists it is stored in too (-1: none). Every score is still
    exact and each row is returned once; spilling only widens which queries reach a row.

    The arrays' module (numpy or CuPy, that of ``xb``) is the index's: a CuPy ``xb`` builds an index in
    device memory."""
    xp = xpm.namespace(xb)
    centroids = xp.ascontiguousarray(xp.asarray(centroids), dtype=xp.float32)
    if lists is None:
        lists = nearest_list(centroids, xb)
    row, lists = stored_rows(xp.asarray(lists))
    order = xpm.argsort(xp, lists)
    offsets = xpm.to_host(xp.searchsorted(lists[order], xp.arange(len(centroids) + 1)))
    rows = row[order].astype(xp.int64)
    return BlockedIVF(centroids, xp.ascontiguousarray(xb[rows]), rows, offsets, spilled=len(rows) > len(xb))


def stored_rows(lists: Any) -> tuple[Any, Any]:
    """``(row, list)`` of every place a row is stored: ``lists`` ``(n,)``, or ``(n, 1 + s)`` with the further
    lists a row is spilled into (-1: none); row-major, a row's own list first."""
    xp = xpm.namespace(lists)
    if lists.ndim == 1:
        return xp.arange(len(lists)), lists
    keep = lists >= 0
    keep[:, 0] = True
    return xp.broadcast_to(xp.arange(len(lists))[:, None], lists.shape)[keep], lists[keep]


def spill_lists(centroids: np.ndarray, x: np.ndarray, extra: int, below: float) -> np.ndarray:
    """Each row's nearest list and, for a row whose best centroid scores under ``below``, its ``extra`` next
    nearest: ``(n, 1 + extra)`` int32, -1 where a row is not spilled. A row far from every centroid lives
    where the quantizer has no structure (the faces of rare identities, spread over the sphere): its nearest
    list says little about which queries score it high, and storing it in a few lists lets those queries
    reach it with a far smaller gap (``docs/search.md``)."""
    xp = xpm.namespace(centroids, x)
    c = xp.ascontiguousarray(xp.asarray(centroids), dtype=xp.float32)
    x = xp.asarray(x)
    out = xp.full((len(x), 1 + extra), -1, xp.int32)
    want = min(1 + extra, len(c))
    for start in range(0, len(x), PROBE_CHUNK):
        C = xp.ascontiguousarray(x[start : start + PROBE_CHUNK], dtype=xp.float32) @ c.T
        block = out[start : start + len(C)]
        block[:, 0] = C.argmax(axis=1)
        far = xp.flatnonzero(C[xp.arange(len(C)), block[:, 0]] < xp.float32(below))
        if not len(far) or want < 2:
            continue
        Cf = C[far]
        if want < len(c):
            top = xp.sort(xp.argpartition(-Cf, want - 1, axis=1)[:, :want], axis=1)
        else:
            top = xp.broadcast_to(xp.arange(len(c)), Cf.shape)
        order = xpm.argsort(xp, -xp.take_along_axis(Cf, top, axis=1), axis=1)  # ties: the lower list
        block[far, 1:want] = xp.take_along_axis(top, order, axis=1)[:, 1:]
    return out


def nearest_list(centroids: Any, xb: Any) -> Any:
    """Each row's list: its nearest centroid by inner product (ties: the lower list), (n,) int64. The same
    product as :func:`probe`'s, so a row's list is the one it probes first."""
    xp = xpm.namespace(centroids, xb)
    c = xp.ascontiguousarray(xp.asarray(centroids), dtype=xp.float32)
    xb = xp.asarray(xb)
    out = xp.empty(len(xb), xp.int64)
    for start in range(0, len(xb), PROBE_CHUNK):
        C = xp.ascontiguousarray(xb[start : start + PROBE_CHUNK], dtype=xp.float32) @ c.T
        out[start : start + len(C)] = C.argmax(axis=1)
    return out


PROBE_CHUNK = 8192  # queries scored against the centroids at a time: bounds the (chunk, nlist) score buffer


def probe(centroids: Any, xq: Any, nprobe: int, gap: float | None = None) -> Probes:
    """The lists each query probes: its ``nprobe`` nearest centroids or, with ``gap``, those whose centroid
    score is within ``gap`` of its best (at most ``nprobe``, at least the nearest). Ties go to the lower list.
    Arrays of the module of ``centroids`` (numpy, or CuPy: then the probes stay on the device)."""
    xp = xpm.namespace(centroids)
    c = xp.ascontiguousarray(centroids, dtype=xp.float32)
    xq = xp.ascontiguousarray(xp.asarray(xq), dtype=xp.float32)
    nlist = len(c)
    nprobe = max(1, min(nprobe, nlist))
    primary, counts, others = [], [], []
    for start in range(0, len(xq), PROBE_CHUNK):
        C = xq[start : start + PROBE_CHUNK] @ c.T
        best = C.argmax(axis=1)
        rows = xp.arange(len(C))
        if gap is None:
            sel = xp.zeros(C.shape, bool)
            if nprobe < nlist:
                sel[rows[:, None], xp.argpartition(-C, nprobe - 1, axis=1)[:, :nprobe]] = True
            else:
                sel[:] = True
        else:
            sel = C >= C[rows, best][:, None] - xp.float32(gap)
            over = xp.flatnonzero(xp.count_nonzero(sel, axis=1) > nprobe)
            if len(over):
                sel[over] = False
                top = xp.argpartition(-C[over], nprobe - 1, axis=1)[:, :nprobe]
                sel[over[:, None], top] = True
        sel[rows, best] = False  # the nearest is kept apart
        flat = xp.flatnonzero(sel)
        primary.append(best.astype(xp.int32))
        counts.append(xp.bincount(flat // nlist, minlength=len(C)))
        others.append((flat % nlist).astype(xp.int32))
    if not primary:
        return Probes(xp.empty(0, xp.int32), xp.zeros(1, xp.int64), xp.empty(0, xp.int32))
    indptr = xp.concatenate([xp.zeros(1, xp.int64), xp.cumsum(xp.concatenate(counts), dtype=xp.int64)])
    return Probes(xp.concatenate(primary), indptr, xp.concatenate(others))


def _sort_key(q: Any, s: Any) -> Any:
    """One int64 key ordering candidates by query, then by descending score (the float32 bits of ``-s``
    made monotonic as integers): one integer sort instead of a three-key lexsort."""
    xp = xpm.namespace(q, s)
    bits = (-s.astype(xp.float32)).view(xp.int32).astype(xp.int64)
    bits = xp.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    return (q.astype(xp.int64) << 32) + (bits + 2**31)


def _top_per_query(nq: int, q: Any, rows: Any, s: Any, k: int, dedupe: bool = False):
    """Each query's top-k candidates by score (ties: the candidate that came first), ``(D, I)``. ``dedupe``:
    a row may come more than once (a spilled index): each counts once, and ties go to the lower row."""
    xp = xpm.namespace(q, rows, s)
    D = xp.full((nq, k), -xp.inf, xp.float32)
    I = xp.full((nq, k), -1, xp.int64)
    key = _sort_key(q, s)
    if dedupe:
        order = xpm.lexsort(xp, (rows, key))
        q, rows, s = q[order], rows[order], s[order]
        first = xp.ones(len(q), bool)
        first[1:] = (q[1:] != q[:-1]) | (rows[1:] != rows[:-1])  # copies of a row have equal keys: adjacent
        q, rows, s = q[first], rows[first], s[first]
    else:
        order = xpm.argsort(xp, key)  # candidates come in a fixed order: ties are stable
        q, rows, s = q[order], rows[order], s[order]
    start = xp.searchsorted(q, xp.arange(nq))
    rank = xp.arange(len(q)) - start[q]
    keep = rank < k
    D[q[keep], rank[keep]] = s[keep]
    I[q[keep], rank[keep]] = rows[keep]
    return D, I


class _Candidates:
    """(query, database row, score) triples kept from the score blocks of one query block."""

    def __init__(self, xp: Any) -> None:
        self.xp = xp
        self.q: list = []
        self.r: list = []
        self.s: list = []

    def add(self, S: Any, qs: Any, lo: int, floor: Any, k: int) -> None:
        """The scores of ``S`` (queries ``qs`` x rows ``lo:``) at or above each row's ``floor``; a row with
        more than k of them keeps those at or above its k-th best (``partition`` of the values is several
        times faster than an ``argpartition``, and a flat ``nonzero`` than a 2-d one)."""
        xp = self.xp
        n = S.shape[1]
        flat = xp.flatnonzero(S >= floor[:, None])
        if not len(flat):
            return
        i = flat // n
        counts = xp.bincount(i, minlength=len(S))
        heavy = xp.flatnonzero(counts > k)
        if len(heavy):
            light = counts[i] <= k
            flat, i = flat[light], i[light]
            Sh = S[heavy]
            kth = xp.partition(Sh, n - k, axis=1)[:, n - k]
            hflat = xp.flatnonzero(Sh >= kth[:, None])
            hi = hflat // n
            self._append(qs[heavy[hi]], hflat - hi * n + lo, Sh.ravel()[hflat])
        self._append(qs[i], flat - i * n + lo, S.ravel()[flat])

    def _append(self, q: Any, r: Any, s: Any) -> None:
        self.q.append(q)
        self.r.append(r)
        self.s.append(s)

    def top(self, nq: int, k: int, rows: Any = None) -> tuple:
        """``rows`` (a spilled index's row of each position): the result in those rows, each once."""
        xp = self.xp
        if not self.q:
            return xp.full((nq, k), -xp.inf, xp.float32), xp.full((nq, k), -1, xp.int64)
        r = xp.concatenate(self.r)
        if rows is not None:
            r = rows[r]
        return _top_per_query(nq, xp.concatenate(self.q), r, xp.concatenate(self.s), k, dedupe=rows is not None)


class _ReverseCandidates:
    """Reverse triples kept from the score blocks of one query block: per column, the scores at or above the
    member's floor from queries whose nearest list the member does not probe (a column with more than k of
    them keeps those at or above its k-th best)."""

    def __init__(self, both: Both, nlist: int, xp: Any) -> None:
        self.both = both
        self.xp = xp
        self.lookup = xp.full(nlist, -1, xp.int64)
        self.row: list = []
        self.q: list = []
        self.s: list = []

    def add(self, S: Any, qs: Any, primary: Any, lo: int, k: int) -> None:
        xp = self.xp
        n = S.shape[1]
        flat = xp.flatnonzero(S >= self.both.floors[lo : lo + n][None, :])
        if not len(flat):
            return
        i = flat // n
        c = flat - i * n
        lists, col = xp.unique(primary, return_inverse=True)  # the nearest lists of this block's queries
        col = col.reshape(-1)
        keep = ~self.both.probed(lo, lo + n, lists, self.lookup)[c, col[i]]
        flat, i, c = flat[keep], i[keep], c[keep]
        if not len(flat):
            return
        counts = xp.bincount(c, minlength=n)
        heavy = xp.flatnonzero(counts > k)
        if len(heavy):  # rare: keep each heavy column's best k (ties: all of them, pruned at the end)
            light = counts[c] <= k
            hs = S.ravel()[flat[~light]]
            hc, hi = c[~light], i[~light]
            top = Reverse.best(hc.astype(xp.int64), qs[hi].astype(xp.int64), hs, k)
            self._append(lo + top.row, top.nb, top.s)
            flat, i, c = flat[light], i[light], c[light]
        self._append(lo + c, qs[i], S.ravel()[flat])

    def _append(self, row: Any, q: Any, s: Any) -> None:
        self.row.append(row)
        self.q.append(q)
        self.s.append(s)

    def top(self, k: int) -> Reverse:
        if not self.row:
            return Reverse.empty(self.xp)
        cat = [self.xp.concatenate(a) for a in (self.row, self.q, self.s)]
        return Reverse.best(cat[0].astype(self.xp.int64), cat[1].astype(self.xp.int64), cat[2], k)


FLOOR_CHUNK = 4096


def both_ways(index: BlockedIVF, k: int, min_sim: float | None, probes: Probes) -> Both:
    """:class:`Both` for ``index``, whose rows (in database order) probe ``probes``."""
    if index.spilled:
        raise ValueError("a spilled index cannot be searched both ways (a row would own several floors)")
    xp = index.xp
    counts = xp.diff(probes.indptr)[index.rows]
    indptr = xp.concatenate([xp.zeros(1, xp.int64), xp.cumsum(counts, dtype=xp.int64)])
    starts = probes.indptr[index.rows]
    pos = xp.arange(int(indptr[-1])) - xpm.repeat(xp, indptr[:-1], counts) + xpm.repeat(xp, starts, counts)
    return Both(own_floors(index, k, min_sim), indptr, probes.others[pos])


def own_floors(index: BlockedIVF, k: int, min_sim: float | None) -> Any:
    """Each database row's k-th best score among the members of its own list (itself included), at least
    ``min_sim``; in index order. A lower bound of its final k-th best, since its own list is always probed."""
    xp = index.xp
    floor0 = xp.float32(-xp.inf if min_sim is None else min_sim)
    out = xp.full(len(index.xb), floor0, xp.float32)
    for j in np.flatnonzero(np.diff(index.offsets) >= k):
        lo, hi = int(index.offsets[j]), int(index.offsets[j + 1])
        for a in range(lo, hi, FLOOR_CHUNK):  # bounds the (chunk, list) score block of a long list
            b = min(a + FLOOR_CHUNK, hi)
            S = index.xb[a:b] @ index.xb[lo:hi].T
            out[a:b] = xp.maximum(xp.partition(S, hi - lo - k, axis=1)[:, hi - lo - k], floor0)
    return out


def _search_block(
    index: BlockedIVF,
    xq: Any,
    k: int,
    probes: Probes,
    min_sim: float | None,
    both: Both | None = None,
    first: int = 0,
):
    """Top-k ``(D, I)`` (I database row numbers) of one block of queries, in the two passes of the module
    docstring; with ``both``, also the reverse candidates (rows of ``index.xb``, query numbers from
    ``first``). The loops over lists run on the host; every array they touch is the index's module."""
    xp = index.xp
    nq = len(xq)
    floor0 = xp.float32(-xp.inf if min_sim is None else min_sim)
    listed = np.diff(index.offsets) > 0
    found = _Candidates(xp)
    # pass 1: each query's nearest list; queries sorted by it, so each list's queries are one slice
    order = xpm.argsort(xp, probes.primary)
    xs = xq[order]
    bounds = xpm.to_host(xp.searchsorted(probes.primary[order], xp.arange(index.nlist + 1)))
    floor = xp.full(nq, floor0, xp.float32)
    for j in np.flatnonzero((np.diff(bounds) > 0) & listed):
        a, b = int(bounds[j]), int(bounds[j + 1])
        lo, hi = int(index.offsets[j]), int(index.offsets[j + 1])
        found.add(xs[a:b] @ index.xb[lo:hi].T, order[a:b], lo, floor[a:b], k)
    tau = xp.maximum(found.top(nq, k)[0][:, k - 1], floor0)  # nothing under the k-th best so far can enter
    # pass 2: the other probed lists, scores >= tau only
    rev = _ReverseCandidates(both, index.nlist, xp) if both is not None else None
    q, lists = probes.pairs()
    bounds = xpm.to_host(xp.searchsorted(lists, xp.arange(index.nlist + 1)))
    for j in np.flatnonzero((np.diff(bounds) > 0) & listed):
        qs = q[int(bounds[j]) : int(bounds[j + 1])]
        lo, hi = int(index.offsets[j]), int(index.offsets[j + 1])
        S = xq[qs] @ index.xb[lo:hi].T
        found.add(S, qs, lo, tau[qs], k)
        if rev is not None:
            rev.add(S, qs + first, probes.primary[qs], lo, k)
    if index.spilled:
        D, I = found.top(nq, k, index.rows)
    else:
        D, I = found.top(nq, k)
        I = xp.where(I >= 0, index.rows[xp.maximum(I, 0)], -1)
    return D, I, (rev.top(k) if rev is not None else None)


def search(
    index: BlockedIVF,
    xq: Any,
    k: int,
    nprobe: int,
    min_sim: float | None = None,
    probes: Probes | None = None,
    threads: int = 1,
    both: Both | None = None,
) -> tuple:
    """Top-k by inner product among the members of the lists each query probes: ``(D, I)`` with I the
    database row numbers (-1 and -inf where fewer than k candidates, at or above ``min_sim``, exist).

    ``probes`` (from :func:`probe` with the same centroids) skips the coarse quantization: a query partition
    searched against many shards is quantized once, not once per shard. Without it each query probes its
    ``nprobe`` nearest lists. ``threads`` > 1 searches blocks of queries in parallel, each with a one-thread
    BLAS: the products are many and small, and a multi-threaded BLAS spends more time synchronising its
    threads than computing (several times slower on a busy machine). A Dask worker runs one task per thread
    with a one-thread BLAS already. (On a device, one stream: ``threads`` is not used.)

    ``both`` (:func:`both_ways`) searches both ways: the result is ``(D, I, Reverse)``, the reverse
    triples' rows being database row numbers and their neighbours query numbers.

    Every array is of the index's module: with a CuPy index the queries are copied to the device, and the
    results stay there (the backend brings them back).
    """
    xp = index.xp
    xq = xp.ascontiguousarray(xp.asarray(xq), dtype=xp.float32)
    if probes is None:
        probes = probe(index.centroids, xq, nprobe)
    threads = max(1, threads) if xp is np else 1
    # equal blocks, a multiple of ``threads`` of them, none over QUERY_BLOCK: no thread idles on a short last one
    rounds = max(1, -(-len(xq) // (threads * QUERY_BLOCK)))
    step = max(1, -(-len(xq) // (threads * rounds)))
    starts = range(0, len(xq), step)

    def block(start: int) -> tuple:
        stop = start + step
        return _search_block(index, xq[start:stop], k, probes[start:stop], min_sim, both, start)

    if threads > 1 and len(starts) > 1:
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
            out = list(pool.map(block, starts))
    else:
        out = [block(s) for s in starts]
    if not out:
        D, I = xp.empty((0, k), xp.float32), xp.empty((0, k), xp.int64)
        return (D, I) if both is None else (D, I, Reverse.empty(xp))
    D, I = xp.concatenate([o[0] for o in out]), xp.concatenate([o[1] for o in out])
    if both is None:
        return D, I
    rev = Reverse.merge([o[2] for o in out], k)
    rows = index.rows[rev.row]  # index order -> database row numbers: re-sorted by row
    return D, I, Reverse.best(rows, rev.nb, rev.s, k)
