import pickle

import numpy as np

from daskcluster.config import SearchConfig
from daskcluster.search import (
    IndexSpec,
    build_shard,
    choose_index,
    edge_recall,
    merge_topk,
    sample_rows,
    search_shard,
    train_quantizer,
)


def _unit(n, d, seed):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_choose_index():
    assert choose_index(1000, SearchConfig()).is_flat
    assert choose_index(10**6, SearchConfig(exact=True)).is_flat
    spec = choose_index(200_000, SearchConfig())
    assert spec.nlist == 1024 and spec.nprobe == 64
    assert choose_index(200_000, SearchConfig(nlist=100, nprobe=7)) == IndexSpec(100, 7)


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
