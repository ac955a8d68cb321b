"""Unit tests of step 2's linking rules, the chaining guard, the assignment guard and quality gating."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from daskcluster.config import AssignConfig, ClusterConfig, Config, QualityConfig
from daskcluster.run import inprocess as engine
from daskcluster.stages import components, linking, prepare
from daskcluster.stages.assign import decide
from daskcluster.stages.ingest import Part
from daskcluster.stages.inputs import InputError


def _nb(lists: dict[int, list[tuple[int, float]]], k: int, offset: int = 0, n: int | None = None):
    n = n if n is not None else max(lists) + 1
    sim = np.full((n, k), -np.inf, np.float32)
    nbr = np.full((n, k), -1, np.int64)
    for v, items in lists.items():
        for j, (u, s) in enumerate(sorted(items, key=lambda t: (-t[1], t[0]))):
            sim[v - offset, j], nbr[v - offset, j] = s, u
    return linking._with_density(offset, sim, nbr)


def _pairs(edges):
    return sorted(set(zip(edges["src"].tolist(), edges["dst"].tolist())))


def _two_cliques_and_bridge(size: int = 5, inner: float = 0.9, bridge: float = 0.62):
    """Cliques {0..size-1} and {size..2size-1}, one bridge between vertex size-1 and size."""
    lists = {v: [] for v in range(2 * size)}
    for block in (range(size), range(size, 2 * size)):
        for a in block:
            lists[a] += [(b, inner) for b in block if b != a]
    lists[size - 1].append((size, bridge))
    lists[size].append((size - 1, bridge))
    return lists


def test_neighbours_drop_self_cut_threshold_and_pad():
    D = np.array([[1.0, 0.8, 0.5], [0.9, 1.0, 0.7]], np.float32)
    I = np.array([[0, 1, 2], [0, 1, -1]])
    nb = linking.neighbours((D, I), 0, 3, 0.6)
    assert nb.nbr.tolist() == [[1, -1, -1], [0, -1, -1]]
    assert nb.density.tolist() == pytest.approx([0.8, 0.9])


def test_mutual_and_shared_rules_remove_the_bridge_only():
    # vertex 4 lists 5 (a one-sided bridge): not mutual
    lists = _two_cliques_and_bridge()
    lists[5] = [(u, s) for u, s in lists[5] if u != 4]
    nb = _nb(lists, k=6)
    ann = linking.annotate(nb, nb)
    plain = _pairs(linking.link(nb, ann, ClusterConfig(threshold=0.6, min_shared=0.0)))
    mutual = _pairs(linking.link(nb, ann, ClusterConfig(threshold=0.6, min_shared=0.0, mutual=True)))
    assert (4, 5) in plain and (4, 5) not in mutual and len(mutual) == len(plain) - 1
    # mutual bridge: shared neighbourhood {4, 5} of 5-member neighbourhoods is small
    nb2 = _nb(_two_cliques_and_bridge(), k=6)
    ann2 = linking.annotate(nb2, nb2)
    shared = _pairs(linking.link(nb2, ann2, ClusterConfig(threshold=0.6, min_shared=0.5)))
    assert (4, 5) not in shared and (0, 1) in shared
    assert ann2.shared[4, list(nb2.nbr[4]).index(5)] == 2  # 4 and 5 themselves
    # two faces that only know each other share their whole neighbourhood
    pair = _nb({0: [(1, 0.7)], 1: [(0, 0.7)]}, k=3)
    assert _pairs(linking.link(pair, linking.annotate(pair, pair), ClusterConfig(threshold=0.6, min_shared=1.0))) == [
        (0, 1)
    ]


def test_density_links_keep_a_sparse_face_from_bridging_two_identities():
    lists = {v: [] for v in range(11)}
    for block in (range(5), range(5, 10)):
        for a in block:
            lists[a] += [(b, 0.9) for b in block if b != a]
    lists[10] = [(4, 0.66), (5, 0.65)]  # a blurred face close to both
    lists[4].append((10, 0.66))
    lists[5].append((10, 0.65))
    nb = _nb(lists, k=6)
    ann = linking.annotate(nb, nb)

    def clusters(cfg):
        edges = linking.link(nb, ann, cfg)
        roots = components.vertex_roots(11, components.edge_forest(edges, "cpu"))
        return components.label_components(roots, [np.arange(11)], 0), edges

    plain, _ = clusters(ClusterConfig(threshold=0.6, min_shared=0.0))
    dens, edges = clusters(ClusterConfig(threshold=0.6, min_shared=0.0, link="density"))
    assert plain.n_clusters == 1
    labels = dens.cluster_id
    assert dens.n_clusters == 2 and labels[10] == labels[4] != labels[5]  # joins its more similar side only
    assert len(edges) <= 11  # at most one link per face: a forest


def test_annotation_of_split_tables_adds_up_to_one_table():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    part = engine.to_part(engine.DayData(np.arange(300), x))
    nb = engine.search_graph(part, Config(), threshold=0.0)
    whole = linking.annotate(nb, nb)
    tables = [linking.Neighbours(a, nb.sim[a:b], nb.nbr[a:b], nb.density[a:b]) for a, b in ((0, 120), (120, 300))]
    split = linking.annotate(tables[0], nb) + linking.annotate(tables[1], nb)
    for name in ("mutual", "shared", "degree", "density"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(split, name))
    assert linking.concat(tables).nbr.tolist() == nb.nbr.tolist()


def _recut_labels(lists, n, max_size, order=None):
    nb = _nb(lists, k=12, n=n)
    edges = linking.link(nb, None, ClusterConfig(threshold=0.6, min_shared=0.0))
    if order is not None:
        edges = edges[order(len(edges))]
    roots = components.vertex_roots(n, components.edge_forest(edges, "cpu"))
    over = components.oversize_roots(roots, max_size)
    inputs = linking.cut_inputs(edges, roots, 0, over, 3)
    rc = linking.recut(inputs[::-1], 0.6, max_size, 0.1, "cpu")
    return components.label_components(roots, [np.arange(n) + 1000], 0, [rc])


def test_chaining_guard_cuts_at_the_bridge_and_reports_it():
    res = _recut_labels(_two_cliques_and_bridge(), 10, max_size=6)
    assert len(set(res.cluster_id[:5])) == 1 and len(set(res.cluster_id[5:])) == 1
    assert res.cluster_id[0] != res.cluster_id[9] and res.largest == 5
    assert res.cuts == [{"root": 1000, "size": 10, "pieces": 2, "largest_piece": 5, "threshold": 0.64}]
    rng = np.random.default_rng(1)
    again = _recut_labels(_two_cliques_and_bridge(), 10, max_size=6, order=rng.permutation)
    assert again.cluster_id.tolist() == res.cluster_id.tolist()  # the input order does not matter


def test_chaining_guard_splits_near_duplicates_into_singletons():
    lists = {v: [(u, 1.0) for u in range(6) if u != v] for v in range(6)}
    res = _recut_labels(lists, 6, max_size=3)
    assert res.largest == 1 and res.n_clusters == 6


def test_cut_inputs_partition_by_own_end():
    edges = np.array([(0, 5, 0.9), (1, 2, 0.9), (5, 6, 0.9)], linking.EDGE_DTYPE)
    roots = np.array([5, 5])  # partition of vertices 5, 6 (offset 5): edge (0, 5) is theirs via 5
    got = linking.cut_inputs(edges[[0, 2]], roots, 5, np.array([5]), 1)[0]
    assert got[0].tolist() == [5, 6] and len(got[2]) == 2


def _part(n=3, quality=None):
    meta = {"feature_norm": pa.array(np.full(n, 10.0, np.float32))}
    if quality is not None:
        meta["quality"] = pa.array(quality)
    return Part(0, np.arange(n), np.eye(n, 4, dtype=np.float32), pa.table(meta))


def test_assignment_margin_and_low_quality_join_threshold():
    D = np.array([[0.9, 0.88], [0.9, 0.7], [0.72, -np.inf]], np.float32)
    I = np.array([[7, 8], [7, 8], [7, -1]])
    part = prepare.prepare(_part(quality=[0.9, 0.9, 0.1]), None, QualityConfig(floor=0.3))
    out = decide(part, (D, I), AssignConfig(threshold=0.6, margin=0.05), join_low=0.75)
    assert out.cluster_id.tolist() == [-1, 7, -1]  # ambiguous; clear; low quality below 0.75
    assert out.ambiguous.tolist() == [True, False, False]
    off = decide(part, (D, I), AssignConfig(threshold=0.6), join_low=0.7)
    assert off.cluster_id.tolist() == [7, 7, 7]


def test_quality_combines_column_and_norm():
    meta = pa.table(
        {"quality": pa.array([0.2, None, 1.5, 0.8]), "feature_norm": pa.array([30.0, 5.0, 10.0, 20.0], pa.float32())}
    )
    cfg = QualityConfig(use_norm=True, norm_range=(0.0, 20.0), floor=0.5)
    score = prepare.quality_score(meta, cfg)
    assert score.tolist() == pytest.approx([0.6, 0.25, 0.75, 0.9])
    assert prepare.low_quality(meta, cfg).tolist() == [False, True, False, False]
    assert not prepare.low_quality(meta, QualityConfig(column=None, floor=0.5)).any()  # no signal: never low


def test_quality_column_of_the_wrong_type_is_named():
    meta = pa.table({"quality": pa.array(["good", "bad"]), "_file": pa.array(["day/a.parquet"] * 2)})
    with pytest.raises(InputError, match=r"day/a.parquet.*quality column 'quality'"):
        prepare.quality_score(meta, QualityConfig(floor=0.5))


def test_centring_removes_a_shared_offset():
    rng = np.random.default_rng(2)
    offset = rng.standard_normal(32) * 3
    a, b = rng.standard_normal(32), rng.standard_normal(32)
    x = np.stack(
        [offset + a + 0.1 * rng.standard_normal(32) for _ in range(20)]
        + [offset + b + 0.1 * rng.standard_normal(32) for _ in range(20)]
    ).astype(np.float32)
    part = engine.to_part(engine.DayData(np.arange(40), x))
    raw_cross = float(part.x[0] @ part.x[20])
    mean = prepare.mean_feature([prepare.unit_sum(part)])
    y = prepare.prepare(part, mean, QualityConfig()).x
    assert raw_cross > 0.8 and float(y[0] @ y[20]) < 0.0 < float(y[0] @ y[1])
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, rtol=1e-5)
