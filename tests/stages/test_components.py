import numpy as np

from daskcluster.config import ClusterConfig
from daskcluster.stages.centres import ClusterSums, empty_shard, group_sums, reduce_sums, update_shard
from daskcluster.stages.components import edge_forest, label_components, merge_forests, vertex_roots
from daskcluster.stages.linking import link, neighbours


def _edges(pairs):
    e = np.empty(len(pairs), dtype=[("src", np.int64), ("dst", np.int64), ("sim", np.float32)])
    for i, (a, b) in enumerate(pairs):
        e[i] = (a, b, 0.9)
    return e


def test_cluster_ids_follow_smallest_face_id():
    # vertices 0..5 with face ids; components {0,1}, {2}, {3,4,5}
    face_ids = [np.array([50, 10, 40]), np.array([30, 20, 60])]
    forest = merge_forests([edge_forest(_edges([(0, 1)]), "cpu"), edge_forest(_edges([(3, 4), (4, 5)]), "cpu")], "cpu")
    res = label_components(vertex_roots(6, forest), face_ids, 100)
    # smallest face ids: {0,1} -> 10, {3,4,5} -> 20, {2} -> 40
    assert res.cluster_id.tolist() == [100, 100, 102, 101, 101, 101]
    assert (res.n_clusters, res.n_singletons, res.largest) == (3, 1, 3)


def test_forest_tree_reduction_equals_components_of_all_edges():
    import scipy.sparse
    import scipy.sparse.csgraph

    rng = np.random.default_rng(3)
    n = 2000
    parts = [_edges(list(zip(*rng.integers(0, n, (2, 300)).tolist()))) for _ in range(13)]
    forests = [edge_forest(p, "cpu") for p in parts]
    assert all(len(f[0]) < n for f in forests)  # a forest never has more rows than vertices
    while len(forests) > 1:  # fan-in 3 rounds, as the pipeline's tree reduction
        forests = [merge_forests(forests[i : i + 3], "cpu") for i in range(0, len(forests), 3)]
    got = label_components(vertex_roots(n, forests[0]), [np.arange(n)], 0).cluster_id
    e = np.concatenate(parts)
    g = scipy.sparse.coo_matrix((np.ones(len(e)), (e["src"], e["dst"])), shape=(n, n))
    _, want = scipy.sparse.csgraph.connected_components(g, directed=False)
    pairs = set(zip(got.tolist(), want.tolist()))
    assert len(pairs) == len(set(got.tolist())) == len(set(want.tolist()))


def test_edges_threshold_and_self_loops():
    D = np.array([[1.0, 0.7, 0.4], [1.0, 0.65, 0.2]], np.float32)
    I = np.array([[10, 11, -1], [11, 10, 12]])
    e = link(neighbours((D, I), 10, 2, 0.6), None, ClusterConfig(threshold=0.6, min_shared=0.0))
    assert sorted(zip(e["src"].tolist(), e["dst"].tolist())) == [(10, 11), (10, 11)]


def test_shard_update_is_exact_mean():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 4))
    shard = update_shard(
        empty_shard(0, 4),
        ClusterSums(np.empty(0, np.int64), np.empty((0, 4)), np.empty(0, np.int64)),
        group_sums(np.array([0] * 6 + [2] * 4), x),
        "2026-01-01",
    )
    more = rng.standard_normal((3, 4))
    shard = update_shard(
        shard,
        reduce_sums([group_sums(np.array([2, 2]), more[:2]), group_sums(np.array([2]), more[2:])], 4),
        ClusterSums(np.empty(0, np.int64), np.empty((0, 4)), np.empty(0, np.int64)),
        "2026-01-02",
    )
    np.testing.assert_allclose(shard.mean[1], np.concatenate([x[6:], more]).mean(axis=0), rtol=1e-6)
    assert shard.count.tolist() == [6, 7] and str(shard.last_day[1]) == "2026-01-02"


def test_group_partitions_balanced_and_consecutive():
    from daskcluster.stages.knn import group_partitions

    assert group_partitions([10, 10, 10, 10], 2) == [range(0, 2), range(2, 4)]
    assert group_partitions([50, 50, 50, 50, 1], 3) == [range(0, 1), range(1, 3), range(3, 5)]
    assert group_partitions([7], 4) == [range(0, 1)]
    groups = group_partitions([3, 0, 9, 1, 4, 4, 8], 3)
    assert [i for g in groups for i in g] == list(range(7)) and len(groups) == 3
