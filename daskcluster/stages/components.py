"""Connected components of the step-2 graph, turned into new cluster ids.

The components are found without gathering the edges: each edge partition is reduced to a star forest
(``cc-forest``), forests are merged by a tree reduction (``cc-merge``), and the final forest labels the
vertices (``components``). Every component, singletons included, becomes a new cluster. Ids are handed
out from the manifest's counter in ascending order of each component's smallest ``face_id``, so they
depend neither on the input order nor on the partitioning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from daskcluster.backends import get_backend
from daskcluster.stages.centres import ClusterSums, group_sums
from daskcluster.stages.ingest import Part
from daskcluster.stages.linking import Recut

Forest = tuple[np.ndarray, np.ndarray]
"""A star forest ``(vertex, root)``: every non-root vertex of a component, with the component's smallest
vertex as its root. It has fewer rows than vertices, so reducing edges to forests bounds memory by the
number of vertices, never by the number of edges."""


@dataclass
class ComponentResult:
    cluster_id: np.ndarray  # (n_vertices,) new cluster id per vertex
    n_clusters: int
    n_singletons: int
    largest: int
    cuts: list[dict] = field(default_factory=list)  # the chaining guard's re-cuts, "root" as a face id

    def __sizeof__(self) -> int:
        return int(self.cluster_id.nbytes)


def unassigned_ids(part: Part) -> np.ndarray:
    return part.ids[part.unassigned]


def _star_forest(src: np.ndarray, dst: np.ndarray, backend: str) -> Forest:
    touched, local = np.unique(np.concatenate([src, dst]), return_inverse=True)
    if len(touched) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    labels = get_backend(backend).connected_components(len(touched), local[: len(src)], local[len(src) :])
    _, first = np.unique(labels, return_index=True)  # touched is ascending: first member = smallest
    root = touched[first][labels]
    keep = touched != root
    return touched[keep], root[keep]


def edge_forest(edges: np.ndarray, backend: str) -> Forest:
    """The ``cc-forest`` task: one edge partition reduced to the star forest of its components."""
    return _star_forest(edges["src"], edges["dst"], backend)


def merge_forests(forests: list[Forest], backend: str) -> Forest:
    """The ``cc-merge`` task: the star forest of the union of forests (a tree-reduction step)."""
    return _star_forest(np.concatenate([f[0] for f in forests]), np.concatenate([f[1] for f in forests]), backend)


def vertex_roots(n: int, forest: Forest) -> np.ndarray:
    """The ``cc-roots`` task: every vertex's component root (its smallest vertex). Holds O(vertices)."""
    root = np.arange(n, dtype=np.int64)
    root[forest[0]] = forest[1]
    return root


def oversize_roots(roots: np.ndarray, max_size: int) -> np.ndarray:
    """The ``oversize`` task: roots of the components with more than ``max_size`` vertices."""
    return np.flatnonzero(np.bincount(roots, minlength=len(roots)) > max_size).astype(np.int64)


def label_components(
    roots: np.ndarray, vertex_ids: list[np.ndarray], next_id: int, recuts: list[Recut] = ()
) -> ComponentResult:
    """The ``components`` task: new cluster ids, in order of smallest face id, after the chaining guard's
    re-cuts (their pieces replace the oversized components)."""
    root = roots.copy()
    for rc in recuts:
        root[rc.vertex] = rc.root
    roots_u, labels = np.unique(root, return_inverse=True)
    face_ids = np.concatenate(vertex_ids) if vertex_ids else np.empty(0, np.int64)
    n_comp = len(roots_u)
    smallest = np.full(n_comp, np.iinfo(np.int64).max)
    np.minimum.at(smallest, labels, face_ids)
    rank = np.empty(n_comp, np.int64)
    rank[np.argsort(smallest, kind="stable")] = np.arange(n_comp)
    sizes = np.bincount(labels, minlength=n_comp)
    cuts = sorted(
        ({**c, "root": int(face_ids[c["root"]])} for rc in recuts for c in rc.cuts),
        key=lambda c: (-c["size"], c["root"]),
    )
    return ComponentResult(
        next_id + rank[labels], n_comp, int((sizes == 1).sum()), int(sizes.max()) if n_comp else 0, cuts
    )


def part_slice(array: np.ndarray, start: int, stop: int) -> np.ndarray:
    """One partition's slice of a per-vertex array (its roots)."""
    return array[start:stop]


def part_labels(result: ComponentResult, start: int, stop: int) -> np.ndarray:
    """The ``labels`` task: one partition's slice of the new cluster ids."""
    return result.cluster_id[start:stop]


def new_cluster_sums(part: Part, labels: np.ndarray, n_shards: int) -> list[ClusterSums]:
    """The ``new-centres`` task: per shard, sums of the unit features of its new clusters' members; a
    low-quality singleton's cluster is not joinable."""
    x = part.x[part.unassigned]
    joinable = ~part.low_quality[part.unassigned]
    owner = labels % n_shards
    return [group_sums(labels[owner == s], x[owner == s], joinable[owner == s]) for s in range(n_shards)]
