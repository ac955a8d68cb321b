"""Step 2 of a day on the executor: the k-NN graph among the unassigned faces, the linking rules, connected
components and the chaining guard. Every component, singletons included, becomes a new cluster.

Vertices are numbered by position in input order among the unassigned faces (partition offset + row).
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass

from daskcluster.backends import get_backend
from daskcluster.config import ClusterConfig, Config
from daskcluster.run.audit import audit_edges, choose_gap, exact_sample
from daskcluster.search import IndexSpec, choose_index, quantizer
from daskcluster.search.fanout import by_home, probe_partition, search_all, search_both_ways
from daskcluster.stages import components, ingest, knn, linking

__all__ = ["CUT_BUCKETS", "Clustered", "Graph", "cluster_day", "knn_graph", "link_components"]

CUT_BUCKETS = 16  # most recut tasks: oversized components are few, and each is cut whole in one task


@dataclass
class Graph:
    """The step-2 k-NN graph: per partition of unassigned faces, handles of its top-k lists (``best``) and
    neighbour lists (``nbs``); the graph shards (consecutive partitions in ``groups``) and where they live."""

    sizes: list[int]
    offsets: list[int]
    spec: IndexSpec
    shards: list
    groups: list[range]
    best: list
    nbs: list
    sample: object = None  # handle of the exact sample (None for flat search)

    @property
    def n_vertices(self) -> int:
        return sum(self.sizes)


@dataclass
class Clustered:
    """Per partition, a handle of its unassigned faces and of their new cluster ids; the counts."""

    rest: list
    labels: list
    knn_index: str
    edge_recall: float | None
    new_clusters: int
    singletons: int
    largest_new_cluster: int
    cut_components: list[dict]
    knn_edges: int


def _count_unassigned(part: ingest.Part) -> int:
    return int(part.unassigned.sum())


def knn_graph(ex, cfg: Config, backend: str, dim: int, rest: list) -> Graph:
    """The unassigned faces as shards of consecutive partitions, about ``search.shard_mb`` of features each:
    fewer, longer IVF lists search faster, and the grouping does not depend on the number of workers (every
    partition is searched, in one task per worker, against all the shards that worker holds)."""
    c = cfg.cluster
    sizes = ex.gather([ex.submit("count", _count_unassigned, p) for p in rest])
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    n_total = sum(sizes)
    spec = choose_index(n_total, cfg.search)
    quant = quantizer(ex, "knn", spec, cfg.search, backend, rest, knn.graph_sample, niter=cfg.search.train_iters)
    groups = knn.group_partitions(sizes, math.ceil(n_total * dim * 4 / 2**20 / cfg.search.shard_mb))
    shards = ex.wait(
        "knn-build",
        ex.spread(
            "knn-build",
            knn.graph_shard,
            [([rest[i] for i in g], offsets[g.start], spec, quant.centroids, backend) for g in groups],
        ),
    )
    sample, coarse = None, None
    both_ways = cfg.search.both_ways and get_backend(backend).searches_both_ways and not spec.is_flat
    if not spec.is_flat:
        if spec.gap is None or cfg.search.audit:
            fixed = spec.gap is not None
            sample = exact_sample(
                ex, cfg, shards, rest, offsets, c.k + 1, c.threshold, both_ways=both_ways, audit_only=fixed
            )
        if spec.gap is None:
            gap = choose_gap(ex, cfg, sample, c.threshold, cfg.search.target_recall, "edges")
            spec = spec.with_gap(gap)
        coarse = (knn.queries, quant.centroids, spec.nprobe, backend, spec.gap)
    if both_ways:
        probes = [ex.submit("knn-probe", probe_partition, knn.queries, q, *coarse[1:]) for q in rest]
        best = search_both_ways(
            ex,
            "knn",
            shards,
            groups,
            rest,
            probes,
            offsets,
            knn.knn_search,
            c.k + 1,
            knn.graph_both,
            min_sim=c.threshold,
        )
    else:
        best = search_all(ex, "knn", shards, rest, knn.knn_search, c.k + 1, coarse, min_sim=c.threshold)
    nbs = [ex.submit("neighbours", linking.neighbours, b, off, c.k, c.threshold) for b, off in zip(best, offsets)]
    return Graph(sizes, offsets, spec, shards, groups, best, nbs, sample)


def _sum_annotations(anns: list[linking.Annotation]) -> linking.Annotation:
    return functools.reduce(operator.add, anns)


def _annotate_group(tables: list, part: linking.Neighbours) -> linking.Annotation:
    """The ``annotate`` task: a partition's lists annotated by each of one worker's graph-shard tables, added as
    they come (each neighbour lives in one table, so the sum does not depend on the grouping)."""
    return functools.reduce(operator.add, (linking.annotate(t, part) for t in tables))


def _annotations(ex, groups: list[range], homes: list, nbs: list) -> list:
    """Per partition, what its neighbours know (mutual, shared neighbourhood, density): each graph shard's
    lists are gathered next to the shard, and every partition's lists visit every worker holding shards, as in
    the search (partitions x workers ``annotate`` tasks)."""
    tables = [ex.submit_at(h, "knn-table", linking.concat, [nbs[i] for i in g]) for g, h in zip(groups, homes)]
    on = [(h, [tables[i] for i in pos]) for h, pos in by_home(homes)]
    return [
        ex.tree_reduce(
            "annotate-merge",
            _sum_annotations,
            [ex.submit_at(h, "annotate", _annotate_group, ts, nb) for h, ts in on],
        )
        for nb in nbs
    ]


def _chaining_guard(
    ex, cfg: ClusterConfig, backend: str, roots, edges: list, offsets: list[int], sizes: list[int]
) -> list:
    """Re-cut the components over ``cluster.max_size`` (see ``linking.recut``): their vertices and edges go
    to buckets by component, one ``recut`` task each; nothing else moves."""
    if not cfg.max_size:
        return []
    over = ex.submit("oversize", components.oversize_roots, roots, cfg.max_size)
    n_over = ex.gather(ex.submit("count", len, over))
    if not n_over:
        return []
    n_b = max(1, min(len(edges), n_over, CUT_BUCKETS))
    inputs = [
        ex.submit(
            "cut-inputs",
            linking.cut_inputs,
            e,
            ex.submit("part-roots", components.part_slice, roots, off, off + n),
            off,
            over,
            n_b,
        )
        for e, off, n in zip(edges, offsets, sizes)
    ]
    return ex.wait(
        "recut",
        [
            ex.submit(
                "recut",
                linking.recut,
                [ex.pick("cut-bucket", i, b) for i in inputs],
                cfg.threshold,
                cfg.max_size,
                cfg.recut_step,
                backend,
            )
            for b in range(n_b)
        ],
    )


def link_components(
    ex, cfg: ClusterConfig, backend: str, graph: Graph, vertex_ids: list, next_id: int, homes: list
) -> tuple:
    """The linking rules on every partition's neighbour lists, connected components by star forests merged in a
    tree, and the chaining guard: ``(handle of the ComponentResult, per-partition edge handles)``. ``homes``:
    where each graph shard lives (the annotation tables are built there)."""
    nbs = graph.nbs
    anns = _annotations(ex, graph.groups, homes, nbs) if linking.needs_annotation(cfg) else [None] * len(nbs)
    edges = ex.wait("edges", [ex.submit("edges", linking.link, nb, ann, cfg) for nb, ann in zip(nbs, anns)])
    forests = [ex.submit("cc-forest", components.edge_forest, e, backend) for e in edges]
    forest = ex.tree_reduce("cc-merge", components.merge_forests, forests, backend)
    roots = ex.submit("cc-roots", components.vertex_roots, graph.n_vertices, forest)
    recuts = _chaining_guard(ex, cfg, backend, roots, edges, graph.offsets, graph.sizes)
    comp = ex.submit("components", components.label_components, roots, vertex_ids, next_id, recuts)
    return ex.wait("components", [comp])[0], edges


def _component_stats(result: components.ComponentResult) -> tuple:
    return result.n_clusters, result.n_singletons, result.largest, result.cuts


def cluster_day(ex, cfg: Config, backend: str, dim: int, parts: list, next_id: int) -> Clustered:
    """Step 2 on the partitions' unassigned faces; new cluster ids start at ``next_id``."""
    rest = [ex.submit("unassigned", ingest.unassigned_view, p) for p in parts]
    graph = knn_graph(ex, cfg, backend, dim, rest)
    vids = [ex.submit("vertex-ids", components.unassigned_ids, p) for p in rest]
    result, edges = link_components(ex, cfg.cluster, backend, graph, vids, next_id, ex.homes(graph.shards))
    recall = None
    if cfg.search.audit:
        recall = 1.0 if graph.sample is None else audit_edges(ex, cfg, graph.sample, graph.best, graph.offsets)
    n_clusters, singletons, largest, cuts = ex.gather(ex.submit("component-stats", _component_stats, result))
    n_edges = sum(ex.gather([ex.submit("count", len, e) for e in edges]))
    labels = [
        ex.submit("labels", components.part_labels, result, off, off + n) for off, n in zip(graph.offsets, graph.sizes)
    ]
    return Clustered(rest, labels, graph.spec.describe(), recall, n_clusters, singletons, largest, cuts, n_edges)
