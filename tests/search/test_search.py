import pickle

import numpy as np
import pytest

from daskcluster.config import SearchConfig
from daskcluster.run.executor import InProcessExecutor
from daskcluster.search import (
    IndexSpec,
    build_shard,
    choose_index,
    edge_recall,
    merge_topk,
    probe,
    sample_rows,
    search_shard,
    train_quantizer,
)
from daskcluster.search.fanout import search_all

from ..conftest import CountingDask, CountingInProcess


def _unit(n, d, seed):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_choose_index():
    assert choose_index(1000, SearchConfig()).is_flat
    assert choose_index(10**6, SearchConfig(exact=True)).is_flat
    spec = choose_index(200_000, SearchConfig())
    assert spec.nlist == 1024 and spec.nprobe == 128 and spec.gap is None  # the gap is chosen per day
    assert choose_index(200_000, SearchConfig(nlist=100, nprobe=7)) == IndexSpec(100, 7)
    assert choose_index(200_000, SearchConfig(gap=0.1)).gap == 0.1


def test_merge_topk_breaks_ties_by_id_and_ignores_shard_order():
    a = (np.array([[0.9, 0.5]], np.float32), np.array([[7, 3]]))
    b = (np.array([[0.9, 0.1]], np.float32), np.array([[2, 9]]))
    c = (np.array([[-np.inf, -np.inf]], np.float32), np.array([[-1, -1]]))
    D1, I1 = merge_topk([a, b, c], 3)
    D2, I2 = merge_topk([c, b, a], 3)
    assert I1.tolist() == [[2, 7, 3]] and np.array_equal(I1, I2) and np.array_equal(D1, D2)


def test_sharded_flat_search_equals_single_shard():
    xb, xq = _unit(3000, 32, 0), _unit(50, 32, 1)
    ids = np.arange(3000, dtype=np.int64) + 100
    whole = search_shard(build_shard(ids, xb, IndexSpec(), None, "cpu"), xq, 5)
    parts = [
        search_shard(build_shard(ids[s], xb[s], IndexSpec(), None, "cpu"), xq, 5)
        for s in (slice(0, 1000), slice(1000, 2200), slice(2200, 3000))
    ]
    merged = merge_topk(parts, 5)
    assert np.array_equal(whole[1], merged[1])
    np.testing.assert_allclose(whole[0], merged[0], rtol=1e-6)


def test_ivf_shards_share_quantizer_and_survive_pickling():
    xb = _unit(5000, 32, 2)
    ids = np.arange(5000, dtype=np.int64)
    h, x = sample_rows(ids, xb, 4000)
    centroids = train_quantizer([(h, x)], 64, 4000, "cpu")
    spec = IndexSpec(64, 64)  # probing every list: exact
    shard = build_shard(ids, xb, spec, centroids, "cpu")
    clone = pickle.loads(pickle.dumps(shard))
    exact = search_shard(build_shard(ids, xb, IndexSpec(), None, "cpu"), xb[:100], 10)
    got = search_shard(clone, xb[:100], 10)
    assert np.array_equal(exact[1], got[1])


def test_sample_rows_independent_of_partitioning():
    ids = np.arange(10_000, dtype=np.int64)
    x = np.arange(10_000, dtype=np.float32)[:, None]
    whole = sample_rows(ids, x, 500)
    parts = [sample_rows(ids[i::3], x[i::3], 500) for i in range(3)]
    h = np.concatenate([p[0] for p in parts])
    keep = np.argsort(h, kind="stable")[:500]
    assert np.array_equal(np.concatenate([p[1] for p in parts])[keep], whole[1])


def test_edge_recall_is_by_id_and_skips_self():
    exact = (np.array([[1.0, 0.9, 0.8, 0.3]]), np.array([[5, 1, 2, 3]]))
    approx = (np.array([[1.0, 0.9, 0.7, 0.3]]), np.array([[5, 1, 4, 3]]))
    assert edge_recall(approx, exact, 0.5) == (2, 3)
    assert edge_recall(approx, exact, 0.5, self_ids=np.array([5])) == (1, 2)
    assert edge_recall(exact, exact, 0.5, self_ids=np.array([5])) == (2, 2)


def _fanout_inputs():
    """Five IVF shards (sizes 0 to 900) whose vectors repeat across shards (ties broken by id), three query
    partitions, and the shared quantizer."""
    xb = _unit(400, 16, 3)
    xb = np.concatenate([xb, xb[:300], xb[:200]])  # duplicates in other shards: equal similarities
    ids = np.random.default_rng(4).permutation(len(xb)).astype(np.int64)
    centroids = train_quantizer([sample_rows(ids, xb, 900)], 8, 900, "cpu")
    bounds = [0, 0, 150, 400, 700, 900]
    shard_args = [(ids[a:b], xb[a:b], IndexSpec(8, 3), centroids, "cpu") for a, b in zip(bounds, bounds[1:])]
    queries = [_unit(n, 16, 5 + n) for n in (30, 1, 45)]
    return shard_args, queries, centroids


def _fanout(ex, shard_args, queries, centroids):
    shards = ex.wait("load-shard", ex.spread("load-shard", build_shard, shard_args))
    coarse = (np.asarray, centroids, 3, "cpu", None)
    return ex.gather(search_all(ex, "assign", shards, queries, search_shard, 4, coarse, min_sim=0.1))


def test_search_all_groups_by_worker_and_equals_one_merge_of_every_shard():
    shard_args, queries, centroids = _fanout_inputs()
    shards = [build_shard(*a) for a in shard_args]
    want = []
    for q in queries:
        coarse = probe(q, centroids, 3, "cpu")
        want.append(merge_topk([search_shard(s, q, 4, 0.1, coarse) for s in shards], 4))
    for homes, n_homes in ((None, 1), (["w0", "w1", "w0", "w2", "w1"], 3), (["a", "b", "c", "d", "e"], 5)):
        ex = CountingInProcess(homes)
        got = _fanout(ex, shard_args, queries, centroids)
        assert ex.counts["assign-search"] == len(queries) * n_homes
        assert ex.counts["assign-probe"] == len(queries)
        for g, w in zip(got, want):
            assert all(np.array_equal(a, b) for a, b in zip(g, w))


@pytest.mark.distributed
def test_search_all_on_two_workers_equals_in_process(client):
    shard_args, queries, centroids = _fanout_inputs()
    want = _fanout(InProcessExecutor(), shard_args, queries, centroids)
    ex = CountingDask(client)
    got = _fanout(ex, shard_args, queries, centroids)
    assert ex.counts["assign-search"] == len(queries) * 2  # spread: shards on both workers
    for g, w in zip(got, want):
        assert all(np.array_equal(a, b) for a, b in zip(g, w))
