"""Step 2's linking rules: which k-NN pairs may join two faces, and the chaining guard.

Plain threshold + connected components chains identities together as data grows: one bridge pair (a blurred
face, a look-alike) merges two people, and bridges multiply with the number of faces. Each rule below removes
a kind of bridge without a trained model, and each is a config option (``cluster.*``):

* ``mutual``: an edge survives only when each end is among the other's k nearest neighbours. A face on the
  edge of a dense identity is rarely among the k nearest of a face inside another.
* ``min_shared``: STAR-FC's node intimacy: the ends must share at least this fraction of their
  neighbourhoods (each neighbourhood counts the face itself; the fraction is of the smaller one, so two
  faces that are only each other's neighbours are intimate). Bridges join neighbourhoods that do not overlap.
* ``link="density"``: GCN-V's deduction step without the network: a face's density is the sum of its
  similarities to its neighbours, and each face keeps only its edge to its most similar neighbour of higher
  density. The graph becomes a forest whose trees climb to density peaks (one per identity, ideally), and
  a sparse low-quality face can no longer join two dense identities.
* ``max_size``: the chaining guard (CDP, L-GCN): a component larger than this is re-cut by raising its
  threshold ``t <- t + (1 - t) * recut_step``, freezing every piece as soon as it fits.

All functions are pure and work on one partition's neighbour lists or one bucket of oversized components,
so the pipeline runs them as tasks, on a Dask cluster or in process (:mod:`daskcluster.run.executor`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daskcluster.backends import get_backend
from daskcluster.config import ClusterConfig

EDGE_DTYPE = np.dtype([("src", np.int64), ("dst", np.int64), ("sim", np.float32)])
_PAIR_BUDGET = 1 << 24  # elements of the (rows, k+1, k+1) comparison cube computed at once


@dataclass
class Neighbours:
    """The k nearest neighbours (at or above the threshold) of consecutive vertices ``offset ...``, most
    similar first (ties by vertex number), padded with ``-1`` / ``-inf``; ``density`` is the sum of the
    similarities of each row's neighbours."""

    offset: int
    sim: np.ndarray  # (n, k) float32
    nbr: np.ndarray  # (n, k) int64
    density: np.ndarray  # (n,) float32

    def __len__(self) -> int:
        return len(self.nbr)

    @property
    def vertices(self) -> np.ndarray:
        return np.arange(self.offset, self.offset + len(self), dtype=np.int64)


def neighbours(best: tuple[np.ndarray, np.ndarray], offset: int, k: int, threshold: float) -> Neighbours:
    """The ``neighbours`` task: a partition's merged top-(k+1) search result without the faces themselves,
    cut to ``k`` columns and to ``threshold``."""
    D, I = best
    n = len(I)
    rows = np.arange(offset, offset + n, dtype=np.int64)
    valid = (I >= 0) & (I != rows[:, None]) & (D >= threshold) if n else np.zeros((0, D.shape[1]), bool)
    order = np.argsort(~valid, axis=1, kind="stable")[:, :k]  # valid entries first, search order kept
    sim = np.take_along_axis(np.where(valid, D, -np.inf), order, axis=1).astype(np.float32)
    nbr = np.take_along_axis(np.where(valid, I, -1), order, axis=1).astype(np.int64)
    if sim.shape[1] < k:
        pad = k - sim.shape[1]
        sim = np.pad(sim, ((0, 0), (0, pad)), constant_values=-np.inf)
        nbr = np.pad(nbr, ((0, 0), (0, pad)), constant_values=-1)
    return _with_density(offset, sim, nbr)


def _with_density(offset: int, sim: np.ndarray, nbr: np.ndarray) -> Neighbours:
    density = np.where(nbr >= 0, sim.astype(np.float64), 0.0).sum(axis=1).astype(np.float32)
    return Neighbours(offset, sim, nbr, density)


def restrict(nb: Neighbours, threshold: float) -> Neighbours:
    """The lists cut to a higher threshold (what a search at that threshold returns): calibration searches
    once at its lowest threshold and derives the others."""
    keep = (nb.nbr >= 0) & (nb.sim >= threshold)
    return _with_density(nb.offset, np.where(keep, nb.sim, -np.inf).astype(np.float32), np.where(keep, nb.nbr, -1))


def concat(parts: list[Neighbours]) -> Neighbours:
    """Consecutive partitions' lists as one table (the ``knn-table`` task of a graph shard)."""
    if not parts:
        raise ValueError("no neighbour lists")
    for a, b in zip(parts[:-1], parts[1:]):
        if b.offset != a.offset + len(a):
            raise ValueError("neighbour lists are not consecutive")
    return Neighbours(
        parts[0].offset,
        np.concatenate([p.sim for p in parts]),
        np.concatenate([p.nbr for p in parts]),
        np.concatenate([p.density for p in parts]),
    )


def needs_annotation(cfg: ClusterConfig) -> bool:
    return cfg.mutual or cfg.min_shared > 0 or cfg.link == "density"


@dataclass
class Annotation:
    """What each of a partition's neighbours knows, aligned with its ``(n, k)`` lists (zero where the entry
    is empty or the neighbour lives in another table: annotations of all tables add up)."""

    mutual: np.ndarray  # (n, k) bool: the row's vertex is in the neighbour's list
    shared: np.ndarray  # (n, k) int32: |N+(u) & N+(v)|, N+ counting the vertex itself
    degree: np.ndarray  # (n, k) int32: |N+(v)|
    density: np.ndarray  # (n, k) float32: the neighbour's density

    def __add__(self, other: Annotation) -> Annotation:
        return Annotation(
            self.mutual | other.mutual,
            self.shared + other.shared,
            self.degree + other.degree,
            self.density + other.density,
        )


def empty_annotation(shape: tuple[int, int]) -> Annotation:
    return Annotation(
        np.zeros(shape, bool), np.zeros(shape, np.int32), np.zeros(shape, np.int32), np.zeros(shape, np.float32)
    )


def annotate(table: Neighbours, part: Neighbours) -> Annotation:
    """The ``annotate`` task: for a partition's neighbours that live in ``table`` (a graph shard's vertices),
    whether the edge is mutual, the shared neighbourhood, the neighbour's degree and density. Runs where the
    table is: only the partition's lists travel."""
    out = empty_annotation(part.nbr.shape)
    lo, hi = table.offset, table.offset + len(table)
    rows, cols = np.nonzero((part.nbr >= lo) & (part.nbr < hi))
    if not len(rows):
        return out
    v = part.nbr[rows, cols]
    u = part.offset + rows
    nv = table.nbr[v - lo]
    out.mutual[rows, cols] = (nv == u[:, None]).any(axis=1)
    out.degree[rows, cols] = 1 + (nv >= 0).sum(axis=1)
    out.density[rows, cols] = table.density[v - lo]
    a = np.concatenate([u[:, None], part.nbr[rows]], axis=1)  # N+(u)
    b = np.concatenate([v[:, None], nv], axis=1)  # N+(v)
    width = a.shape[1]
    step = max(1, _PAIR_BUDGET // (width * width))
    shared = np.empty(len(rows), np.int32)
    for s in range(0, len(rows), step):
        aa, bb = a[s : s + step], b[s : s + step]
        shared[s : s + step] = ((aa[:, :, None] == bb[:, None, :]) & (aa[:, :, None] >= 0)).sum(axis=(1, 2))
    out.shared[rows, cols] = shared
    return out


def link(nb: Neighbours, ann: Annotation | None, cfg: ClusterConfig) -> np.ndarray:
    """The ``edges`` task: the partition's surviving edges as ``(src, dst, sim)`` rows with ``src < dst``
    (an edge found from both ends appears once per end: harmless for the components)."""
    keep = (nb.nbr >= 0) & (nb.sim >= cfg.threshold)
    if needs_annotation(cfg):
        if ann is None:
            raise ValueError("these linking rules need the neighbours' annotation")
        if cfg.mutual:
            keep &= ann.mutual
        if cfg.min_shared > 0:
            own = 1 + (nb.nbr >= 0).sum(axis=1, keepdims=True)
            keep &= ann.shared >= cfg.min_shared * np.minimum(own, ann.degree) - 1e-9
        if cfg.link == "density":
            keep &= _denser(nb, ann)
            first = np.argmax(keep, axis=1)  # lists are most-similar first: the first survivor is the link
            only = np.zeros_like(keep)
            only[np.arange(len(keep)), first] = True
            keep &= only
    rows, cols = np.nonzero(keep)
    u, v = nb.offset + rows, nb.nbr[rows, cols]
    out = np.empty(len(rows), EDGE_DTYPE)
    out["src"], out["dst"], out["sim"] = np.minimum(u, v), np.maximum(u, v), nb.sim[rows, cols]
    return out


def _denser(nb: Neighbours, ann: Annotation) -> np.ndarray:
    """Neighbour ranks above the face in the strict order (density, then smaller vertex number)."""
    mine = nb.density[:, None]
    u = nb.vertices[:, None]
    return (ann.density > mine) | ((ann.density == mine) & (nb.nbr < u))


# --------------------------------------------------------------------------------------------- chaining guard
@dataclass
class Recut:
    """New roots of the vertices of oversized components, and one report row per component cut."""

    vertex: np.ndarray  # (m,) int64
    root: np.ndarray  # (m,) int64: smallest vertex of the vertex's piece
    cuts: list[dict]  # {"root", "size", "pieces", "largest_piece", "threshold"}


CutInput = tuple[np.ndarray, np.ndarray, np.ndarray]
"""``(vertex, root, edges)``: vertices of oversized components with their component root, and the edges
among them."""


def cut_inputs(
    edges: np.ndarray, roots: np.ndarray, offset: int, oversize: np.ndarray, n_buckets: int
) -> list[CutInput]:
    """The ``cut-inputs`` task: a partition's vertices and edges in oversized components, split into buckets
    by component. ``roots`` are the component roots of the partition's own vertices: every edge has one end
    there (the face whose list it came from), and both ends are in the same component."""
    in_over = np.isin(roots, oversize)
    vertex = np.flatnonzero(in_over).astype(np.int64) + offset
    vroot = roots[in_over]
    own = (edges["src"] >= offset) & (edges["src"] < offset + len(roots))
    eroot = roots[np.where(own, edges["src"], edges["dst"]) - offset]
    keep = np.isin(eroot, oversize)
    e, eroot = edges[keep], eroot[keep]
    vb, eb = vroot % n_buckets, eroot % n_buckets
    return [(vertex[vb == b], vroot[vb == b], e[eb == b]) for b in range(n_buckets)]


def recut(inputs: list[CutInput], threshold: float, max_size: int, step: float, backend: str) -> Recut:
    """The ``recut`` task: raise the threshold of oversized components until every piece has at most
    ``max_size`` faces; a piece is frozen at the first threshold where it fits. Pieces that still do not fit
    when the threshold reaches 1 (near-duplicate faces) are split into singletons. Deterministic: pieces are
    named by their smallest vertex, and nothing depends on the order of the inputs."""
    vertex = np.concatenate([i[0] for i in inputs]) if inputs else np.empty(0, np.int64)
    comp = np.concatenate([i[1] for i in inputs]) if inputs else np.empty(0, np.int64)
    order = np.argsort(vertex, kind="stable")
    vertex, comp = vertex[order], comp[order]
    e = np.concatenate([i[2] for i in inputs]) if inputs else np.empty(0, EDGE_DTYPE)
    src, dst, sim = np.searchsorted(vertex, e["src"]), np.searchsorted(vertex, e["dst"]), e["sim"]
    root = vertex.copy()
    frozen_at = np.zeros(len(vertex), np.float64)
    active = np.ones(len(vertex), bool)
    cc = get_backend(backend).connected_components
    t = threshold
    while active.any():
        t = t + (1.0 - t) * step
        live = active[src] & active[dst] & (sim >= t)
        src, dst, sim = src[live], dst[live], sim[live]
        exhausted = t >= 1.0 - 1e-6  # nothing is left to cut on (near-duplicate faces): singletons
        labels = np.arange(len(vertex)) if exhausted else cc(len(vertex), src, dst)
        sizes = np.bincount(labels[active], minlength=len(vertex))
        fits = active & (sizes[labels] <= max_size)
        idx = np.flatnonzero(fits)
        first = np.full(len(vertex), len(vertex), np.int64)
        np.minimum.at(first, labels[idx], idx)  # vertex is ascending: the first index is the smallest vertex
        root[idx] = vertex[first[labels[idx]]]
        frozen_at[idx] = t
        active &= ~fits
    return Recut(vertex, root, _cut_report(comp, root, frozen_at))


def _cut_report(comp: np.ndarray, root: np.ndarray, frozen_at: np.ndarray) -> list[dict]:
    if not len(comp):
        return []
    order = np.lexsort((root, comp))
    comp, root, frozen_at = comp[order], root[order], frozen_at[order]
    bounds = np.flatnonzero(np.r_[True, comp[1:] != comp[:-1], True])
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        _, piece_sizes = np.unique(root[a:b], return_counts=True)
        out.append(
            {
                "root": int(comp[a]),
                "size": int(b - a),
                "pieces": len(piece_sizes),
                "largest_piece": int(piece_sizes.max()),
                "threshold": round(float(frozen_at[a:b].max()), 4),
            }
        )
    return out
