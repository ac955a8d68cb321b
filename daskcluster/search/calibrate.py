"""The probing gap of a day, chosen from an exact sample for a target edge recall, and the audit of the result.

A sample of the searched faces (the smallest id hashes, so any partitioning yields the same sample) is searched
exactly against every shard. Each exact edge at or above the threshold (a face's top-k, itself excluded) needs
a gap: how far its neighbour's list scores below the face's nearest list. Probing with gap ``g`` finds exactly
the edges that need at most ``g`` (the search scores every member of a probed list exactly), so the gap that
finds a fraction ``target`` of the sample's edges is a quantile of those needs.

The sample is split by id hash: the even half chooses the gap, the odd half audits the finished search, so the
reported recall is measured on faces the gap was not fitted to. One exact pass serves both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daskcluster.backends import get_backend
from daskcluster.search.sampling import id_hash
from daskcluster.search.topk import edge_recall

__all__ = [
    "DEFAULT_GAP",
    "GAP_RANGE",
    "MIN_EDGES",
    "Sample",
    "audit_counts",
    "choose_gap",
    "exact_with_lists",
    "gap_from_sample",
    "merge_samples",
    "needed_gaps",
    "sample_faces",
]

DEFAULT_GAP = 0.15  # when the sample holds too few edges to choose (measured: >= 0.995 at 200k and 1M)
GAP_RANGE = (0.02, 0.4)  # chosen gaps are kept in this range
MIN_EDGES = 50  # sample edges needed to choose a gap


@dataclass
class Sample:
    """Sampled faces: id hashes, vertex numbers (or ids), features; and, once searched, their exact top-k
    ``(D, I, need, back)`` (see :func:`exact_with_lists`)."""

    h: np.ndarray
    vertex: np.ndarray
    x: np.ndarray
    exact: tuple | None = None

    def __len__(self) -> int:
        return len(self.h)

    def half(self, odd: bool) -> Sample:
        keep = (self.h & np.uint64(1)) == np.uint64(odd)
        exact = tuple(a[keep] for a in self.exact) if self.exact is not None else None
        return Sample(self.h[keep], self.vertex[keep], self.x[keep], exact)


def sample_faces(ids: np.ndarray, vertex: np.ndarray, x: np.ndarray, m: int) -> Sample:
    """The ``m`` faces of smallest id hash among ``ids``."""
    h = id_hash(ids)
    keep = np.sort(np.argsort(h, kind="stable")[:m])
    return Sample(h[keep], vertex[keep], x[keep])


def merge_samples(samples: list[Sample], m: int) -> Sample:
    """The global sample of ``m`` faces from per-partition ones (each holding its ``m`` smallest hashes)."""
    h = np.concatenate([s.h for s in samples])
    keep = np.argsort(h, kind="stable")[:m]
    keep = keep[np.argsort(np.concatenate([s.vertex for s in samples])[keep], kind="stable")]  # vertex order
    return Sample(
        h[keep], np.concatenate([s.vertex for s in samples])[keep], np.concatenate([s.x for s in samples])[keep]
    )


def exact_with_lists(shard, sample: Sample, k: int, min_sim: float | None, both_ways: bool = False) -> tuple:
    """The ``calibrate-search`` task: exact top-k of the sample in one shard, ``(D, ids, need, back)``.

    ``need``: the gap at which the face probes a list holding the neighbour (the best of the neighbour's lists
    when the index spills), +inf when that list is beyond the ``nprobe`` cap, NaN for flat shards or empty
    slots. ``back``, when the search runs both ways (the sample is part of the database): the gap at which
    the neighbour would probe the face's list itself (again +inf beyond the cap); else +inf."""
    nq = len(sample)
    D = np.full((nq, k), -np.inf, np.float32)
    I = np.full((nq, k), -1, np.int64)
    F = np.full((nq, k), np.nan, np.float32)
    B = np.full((nq, k), np.inf, np.float32)
    if len(shard) == 0 or nq == 0:
        return D, I, F, B
    kk = min(k, len(shard))
    s, cols = get_backend(shard.backend).exact_knn(shard.xb, sample.x, kk)
    if min_sim is not None:
        cols = np.where(s >= min_sim, cols, -1)
        s = np.where(s >= min_sim, s, -np.inf)
    D[:, :kk] = s
    I[:, :kk] = np.where(cols >= 0, shard.ids[np.maximum(cols, 0)], -1)
    lists = shard.reach_lists()
    if lists is None:
        return D, I, F, B
    c = np.asarray(shard.centroids, np.float32)
    cap = max(1, min(shard.nprobe, len(c)))
    step = max(1, NEED_BLOCK // (kk * len(c)))  # faces at a time: bounds the (faces, k, nlist) buffers
    for a in range(0, nq, step):
        b = min(a + step, nq)
        F[a:b, :kk], B[a:b, :kk] = _needs(sample.x[a:b], shard.xb, c, lists, cols[a:b], cap, both_ways)
    return D, I, F, B


NEED_BLOCK = 1 << 24


def _needs(x, xb, c, lists, cols, cap: int, both_ways: bool) -> tuple[np.ndarray, np.ndarray]:
    """The ``need`` and ``back`` gaps of :func:`exact_with_lists` for faces ``x`` and their neighbours
    (rows ``cols`` of ``xb``, -1 none), the lists holding each row being ``lists``."""
    Cq = x @ c.T  # (nq, nlist): the faces' centroid scores
    rows = np.arange(len(x))[:, None]
    held = lists[np.maximum(cols, 0)]  # (nq, kk, r): the lists holding each neighbour
    score = np.where(held >= 0, Cq[rows[:, :, None], np.maximum(held, 0)], -np.inf).max(axis=2)
    rank = (Cq[:, None, :] > score[:, :, None]).sum(axis=2)  # lists the face prefers to the best holding one
    need = np.where(cols >= 0, np.where(rank < cap, Cq.max(axis=1)[:, None] - score, np.inf), np.nan)
    back = np.full(cols.shape, np.inf, np.float32)
    if both_ways:
        own = Cq.argmax(axis=1)  # each face's nearest list
        nb = xb[np.maximum(cols, 0).ravel()]  # one product, not one per face: (nq * kk, d) x (d, nlist)
        Cn = (nb @ c.T).reshape(*cols.shape, len(c))  # the neighbours' centroid scores
        at = Cn[rows, np.arange(cols.shape[1])[None, :], own[:, None]]
        back = np.where((Cn > at[:, :, None]).sum(axis=2) < cap, Cn.max(axis=2) - at, np.inf)
        back = np.where(cols >= 0, back, np.inf)
    return need.astype(np.float32), back.astype(np.float32)


def needed_gaps(
    sample: Sample, threshold: float, self_edges: bool = True, best_only: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per exact edge >= ``threshold`` of the sample, the gap that finds it (+inf: none within the cap), and
    the sample row of the edge's face. The face finds it when it probes a list holding the neighbour; a search
    both ways also finds it when the neighbour probes the face's list (the smaller of the two gaps).
    ``self_edges``: the sample is part of the database (the step-2 graph), so a face's edge to itself is not
    counted. ``best_only``: only each face's best edge counts (the assignment's decision)."""
    D, I, need = sample.exact[:3]
    back = sample.exact[3] if len(sample.exact) > 3 else np.full(D.shape, np.inf, np.float32)
    want = (D >= threshold) & (I >= 0) & ~np.isnan(need)
    if self_edges:
        want &= I != sample.vertex[:, None]
    if best_only:
        want[:, 1:] = False
    q, j = np.nonzero(want)
    return np.minimum(need[q, j], back[q, j]).astype(np.float32), q


BOOTSTRAP = 200  # resamples of the sample's faces
CONFIDENCE = 0.9  # share of the resamples in which the chosen gap reaches the target


def choose_gap(gaps: np.ndarray, faces: np.ndarray, target: float) -> float:
    """A gap that finds ``target`` of the edges with confidence: the ``CONFIDENCE`` quantile, over bootstrap
    resamples of the sample's faces, of the gap each resample needs. A face's edges rise and fall together (the
    faces of one dense identity need alike gaps), so the faces are resampled, not the edges; a high quantile
    of a small sample is noisy, and this is what makes the choice safe on a new day. ``DEFAULT_GAP`` when there
    are too few edges. Where the target needs edges beyond the probe cap (+inf), the gap finds every edge
    within it: a larger one would probe no more lists of those faces. Deterministic: the resamples come from a
    fixed seed."""
    if len(gaps) < MIN_EDGES:
        return DEFAULT_GAP
    order = np.argsort(gaps, kind="stable")
    gaps, faces = gaps[order], faces[order]
    uniq, inverse = np.unique(faces, return_inverse=True)
    weights = np.random.default_rng(0).multinomial(len(uniq), np.full(len(uniq), 1.0 / len(uniq)), size=BOOTSTRAP)
    w = weights[:, inverse].astype(np.float64)  # (BOOTSTRAP, edges): each edge counted as often as its face
    cum = np.cumsum(w, axis=1)
    need = np.argmax(cum >= target * cum[:, -1:], axis=1)  # the first edge (by need) reaching the target
    finite = gaps[np.isfinite(gaps)]
    if not len(finite):
        return DEFAULT_GAP
    # a target beyond what the probe cap can reach: the gap that finds every edge within it
    g = float(np.quantile(np.minimum(gaps[need], finite[-1]), CONFIDENCE, method="higher")) + 1e-6
    return float(min(max(g, GAP_RANGE[0]), GAP_RANGE[1]))


def gap_from_sample(sample: Sample, threshold: float, target: float, self_edges: bool = True) -> float:
    """The ``calibrate-gap`` task: the gap chosen on the even half of the searched sample (for the step-2
    graph every edge counts, ``self_edges``; for the assignment only each face's best cluster)."""
    gaps, faces = needed_gaps(sample.half(odd=False), threshold, self_edges, best_only=not self_edges)
    return choose_gap(gaps, faces, target)


def audit_counts(sample: Sample, approx: tuple, threshold: float) -> tuple[int, int]:
    """How many of the sample's exact edges >= ``threshold`` the search's top-k ``approx = (D, I)`` (rows of
    the sample, in its order) holds, by id: ``(found, total)``."""
    D, I = sample.exact[:2]
    return edge_recall(approx, (D, I), threshold, self_ids=sample.vertex)
