"""Connected components of the step-2 graph, turned into new cluster ids.

Every component, singletons included, becomes a new cluster. Ids are handed out from the manifest's
counter in ascending order of each component's smallest ``face_id``, so they depend neither on the input
order nor on the partitioning.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backends import get_backend
from .ingest import Part
from .shards import ClusterSums, group_sums


@dataclass
class ComponentResult:
    cluster_id: np.ndarray  # (n_vertices,) new cluster id per vertex
    n_clusters: int
    n_singletons: int
    largest: int
    n_edges: int  # distinct undirected edges


def unassigned_ids(part: Part) -> np.ndarray:
    return part.ids[part.unassigned]


def label_components(n: int, edge_lists: list[np.ndarray], vertex_ids: list[np.ndarray], next_id: int,
                     backend: str) -> ComponentResult:
    """The ``components`` task: component labels, then cluster ids ordered by smallest face id."""
    e = np.concatenate(edge_lists) if edge_lists else np.empty(0, [("src", np.int64), ("dst", np.int64)])
    labels = get_backend(backend).connected_components(n, e["src"], e["dst"])
    face_ids = np.concatenate(vertex_ids) if vertex_ids else np.empty(0, np.int64)
    n_comp = int(labels.max()) + 1 if n else 0
    smallest = np.full(n_comp, np.iinfo(np.int64).max)
    np.minimum.at(smallest, labels, face_ids)
    rank = np.empty(n_comp, np.int64)
    rank[np.argsort(smallest, kind="stable")] = np.arange(n_comp)
    sizes = np.bincount(labels, minlength=n_comp)
    n_edges = len(np.unique(e["src"] * np.int64(n) + e["dst"]))
    return ComponentResult(next_id + rank[labels], n_comp, int((sizes == 1).sum()),
                           int(sizes.max()) if n_comp else 0, n_edges)


def part_labels(result: ComponentResult, start: int, stop: int) -> np.ndarray:
    """The ``labels`` task: one partition's slice of the new cluster ids."""
    return result.cluster_id[start:stop]


def new_cluster_sums(part: Part, labels: np.ndarray, n_shards: int) -> list[ClusterSums]:
    """The ``new-centres`` task: per shard, sums of the unit features of its new clusters' members."""
    x = part.x[part.unassigned]
    owner = labels % n_shards
    return [group_sums(labels[owner == s], x[owner == s]) for s in range(n_shards)]
