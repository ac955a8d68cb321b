"""The blocked IVF kernel, gap probing and the per-day calibration of the gap."""

import numpy as np
import pytest

from daskcluster.backends import ivf
from daskcluster.config import SearchConfig
from daskcluster.search import calibrate, edge_recall, sample_rows, train_quantizer
from daskcluster.search.graph import self_knn


def _clustered(n, d, seed, n_id=40):
    """Unit vectors around ``n_id`` centres with Zipf-like sizes: dense identities fill whole lists."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_id, d)).astype(np.float32)
    weights = 1.0 / np.arange(1, n_id + 1)
    label = rng.choice(n_id, n, p=weights / weights.sum())
    x = centres[label] / np.sqrt(d) * 1.2 + rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _brute(xb, xq, candidates, k, min_sim):
    """Top-k by brute force of each query ``i`` among the rows ``candidates(i)`` (ties: lower row)."""
    D = np.full((len(xq), k), -np.inf, np.float32)
    I = np.full((len(xq), k), -1, np.int64)
    for i in range(len(xq)):
        rows = candidates(i)
        s = xb[rows] @ xq[i]
        if min_sim is not None:
            rows, s = rows[s >= min_sim], s[s >= min_sim]
        order = np.lexsort((rows, -s))[:k]
        D[i, : len(order)], I[i, : len(order)] = s[order], rows[order]
    return D, I


def _probed(probes):
    return [
        {int(probes.primary[i]), *probes.others[probes.indptr[i] : probes.indptr[i + 1]].tolist()}
        for i in range(len(probes))
    ]


def _brute_over_probes(xb, xq, centroids, probes, k, min_sim):
    """Top-k by brute force among the members of each query's probed lists."""
    lists = ivf.nearest_list(centroids, xb)
    probed = _probed(probes)
    return _brute(xb, xq, lambda i: np.flatnonzero(np.isin(lists, list(probed[i]))), k, min_sim)


@pytest.mark.parametrize("min_sim", [None, 0.3])
@pytest.mark.parametrize("gap", [None, 0.05, 0.3])
def test_search_is_exact_over_the_probed_lists(min_sim, gap):
    xb = _clustered(3000, 32, 1)
    centroids = train_quantizer([sample_rows(np.arange(3000), xb, 3000)], 32, 3000, "cpu")
    index = ivf.build(xb, centroids)
    xq = xb[:300]
    probes = ivf.probe(centroids, xq, 8, gap)
    D, I = ivf.search(index, xq, 7, 8, min_sim, probes)
    want_D, want_I = _brute_over_probes(xb, xq, centroids, probes, 7, min_sim)
    np.testing.assert_allclose(D, want_D, rtol=1e-5, atol=1e-6)
    same = (I == want_I) | np.isclose(D, want_D, atol=1e-6)  # equal scores may come in either order
    assert same.all()


@pytest.mark.parametrize("threads", [1, 3])
def test_a_spilled_index_is_exact_over_every_list_holding_a_row(threads, monkeypatch):
    monkeypatch.setattr(ivf, "QUERY_BLOCK", 64)
    rng = np.random.default_rng(5)
    xb = np.concatenate([_clustered(2000, 32, 2), _clustered(800, 32, 9, n_id=800)])  # dense and far rows
    centroids = train_quantizer([sample_rows(np.arange(len(xb)), xb, 2000)], 32, 2000, "cpu")
    lists = ivf.spill_lists(centroids, xb, 3, 0.5)
    C = xb @ centroids.T
    far = C.max(axis=1) < 0.5
    assert far.any() and (~far).any()
    assert np.array_equal(lists[:, 0], C.argmax(axis=1))
    assert ((lists[:, 1:] >= 0).all(axis=1) == far).all() and (lists[~far, 1:] == -1).all()
    assert (np.sort(C[far], axis=1)[:, -2] == C[far, lists[far, 1]]).all()  # the next best lists
    index = ivf.build(xb, centroids, lists)
    assert index.spilled and len(index.rows) == len(xb) + 3 * far.sum()
    xq = xb[rng.choice(len(xb), 300, replace=False)]
    probes = ivf.probe(centroids, xq, 6, 0.1)
    D, I = ivf.search(index, xq, 7, 6, 0.2, probes, threads=threads)
    probed = _probed(probes)
    held = [set(row[row >= 0].tolist()) for row in lists]
    want_D, want_I = _brute(xb, xq, lambda i: np.array([r for r in range(len(xb)) if held[r] & probed[i]]), 7, 0.2)
    np.testing.assert_allclose(D, want_D, rtol=1e-5, atol=1e-6)
    assert np.array_equal(I, want_I)  # each row once, ties to the lower row
    with pytest.raises(ValueError, match="spilled"):
        ivf.both_ways(index, 7, 0.2, ivf.probe(centroids, xb, 6, 0.1))


def _brute_both_ways(x, centroids, probes, k, min_sim):
    """Top-k by brute force of every row of ``x`` against ``x`` among the members of the lists it probes and
    the rows that probe its own list."""
    lists = ivf.nearest_list(centroids, x)
    probed = _probed(probes)

    def candidates(b):
        return np.flatnonzero(np.isin(lists, list(probed[b])) | np.array([lists[b] in p for p in probed]))

    return _brute(x, x, candidates, k, min_sim)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("min_sim,gap", [(None, 0.05), (0.3, 0.05), (0.3, 0.2), (0.3, None)])
def test_both_ways_is_exact_over_either_end_probing(min_sim, gap, threads, monkeypatch):
    """A face's top-k searched both ways: exact over its probed lists' members and the faces probing its list,
    whatever the query blocks (small blocks: reverse candidates of one row come from several)."""
    monkeypatch.setattr(ivf, "QUERY_BLOCK", 256)
    x = _clustered(1500, 32, 4)
    centroids = train_quantizer([sample_rows(np.arange(1500), x, 1500)], 24, 1500, "cpu")
    index = ivf.build(x, centroids)
    probes = ivf.probe(centroids, x, 6, gap)
    D, I, rev = ivf.search(index, x, 7, 6, min_sim, probes, threads, ivf.both_ways(index, 7, min_sim, probes))
    assert len(rev) and (np.diff(rev.row) >= 0).all()
    D, I = ivf.join_reverse(D, I, rev, 0)
    want_D, want_I = _brute_both_ways(x, centroids, probes, 7, min_sim)
    np.testing.assert_allclose(D, want_D, rtol=1e-5, atol=1e-6)
    assert ((I == want_I) | np.isclose(D, want_D, atol=1e-6)).all()
    forward = ivf.search(index, x, 7, 6, min_sim, probes)
    assert (D[:, -1] >= forward[0][:, -1] - 1e-6).all()  # never worse than one way
    assert (I != forward[1]).any()  # and here strictly better somewhere


def test_join_reverse_keeps_each_neighbour_once_with_ties_to_the_smaller_id():
    D = np.array([[0.9, 0.5, -np.inf], [0.8, -np.inf, -np.inf]], np.float32)
    I = np.array([[10, 11, -1], [12, -1, -1]], np.int64)
    rev = ivf.Reverse(np.array([5, 5, 5, 6]), np.array([11, 3, 2, 12]), np.array([0.5, 0.7, 0.5, 0.8], np.float32))
    D2, I2 = ivf.join_reverse(D, I, rev, 5)
    assert I2.tolist() == [[10, 3, 2], [12, -1, -1]]
    np.testing.assert_allclose(D2[0], [0.9, 0.7, 0.5])


def test_probe_by_gap_keeps_the_nearest_first_and_caps_the_count():
    rng = np.random.default_rng(0)
    centroids = rng.standard_normal((50, 16)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    xq = rng.standard_normal((200, 16)).astype(np.float32)
    C = xq @ centroids.T
    p = ivf.probe(centroids, xq, 10, 0.2)
    assert np.array_equal(p.primary, C.argmax(axis=1))
    for i in range(len(xq)):
        others = p.others[p.indptr[i] : p.indptr[i + 1]]
        assert len(others) <= 9 and p.primary[i] not in others
        within = np.flatnonzero(C[i] >= C[i].max() - 0.2)
        if len(within) <= 10:
            assert set(others) | {p.primary[i]} == set(within)
        else:
            assert C[i, others].min() >= np.sort(C[i])[-10] - 1e-6  # the 10 best of them
    fixed = ivf.probe(centroids, xq, 5)
    assert (np.diff(fixed.indptr) == 4).all()
    assert fixed[10:20].primary.tolist() == fixed.primary[10:20].tolist() and len(fixed[10:20].others) == 40


def test_calibrated_gap_finds_the_target_share_of_sample_edges():
    x = _clustered(6000, 32, 3, n_id=300)
    ids = np.arange(len(x), dtype=np.int64)
    centroids = train_quantizer([sample_rows(ids, x, 6000)], 64, 6000, "cpu")
    from daskcluster.search import IndexSpec, build_shard

    shard = build_shard(ids, x, IndexSpec(64, 64), centroids, "cpu")
    sample = calibrate.sample_faces(ids, ids, x, 1500)
    sample.exact = calibrate.exact_with_lists(shard, sample, 11, 0.5)
    gaps, faces = calibrate.needed_gaps(sample.half(odd=False), 0.5)
    assert len(gaps) >= calibrate.MIN_EDGES and (gaps >= 0).all() and len(faces) == len(gaps)
    assert calibrate.choose_gap(gaps, faces, 0.9) == calibrate.choose_gap(gaps, faces, 0.9)  # a fixed seed
    assert calibrate.choose_gap(gaps, faces, 0.9) <= calibrate.choose_gap(gaps, faces, 0.99)
    for target in (0.9, 0.99):
        gap = calibrate.gap_from_sample(sample, 0.5, target)
        half = sample.half(odd=False)
        probes = ivf.probe(centroids, half.x, 64, gap)
        D, I = ivf.search(shard.index, half.x, 11, 64, 0.5, probes)
        I = np.where(I >= 0, ids[np.maximum(I, 0)], -1)
        found, total = calibrate.audit_counts(half, (D, I), 0.5)
        assert found / total >= target - 1e-9  # the gap is fitted to this half: at least the target


def test_needed_gaps_count_edges_beyond_the_probe_cap_as_unreachable():
    x = _clustered(4000, 32, 4, n_id=200)
    ids = np.arange(len(x), dtype=np.int64)
    centroids = train_quantizer([sample_rows(ids, x, 4000)], 32, 4000, "cpu")
    from daskcluster.search import IndexSpec, build_shard

    sample = calibrate.sample_faces(ids, ids, x, 600)
    needs = {}
    for cap in (1, 4, 32):
        shard = build_shard(ids, x, IndexSpec(32, cap), centroids, "cpu")
        sample.exact = calibrate.exact_with_lists(shard, sample, 11, 0.5)
        needs[cap] = calibrate.needed_gaps(sample, 0.5)[0]
    own = needs[32] == 0  # the neighbour is in the face's nearest list
    assert np.isinf(needs[1][~own]).all() and (needs[1][own] == 0).all()  # one list probed: only its members
    assert np.isinf(needs[4]).sum() > 0 and np.isfinite(needs[32]).all()
    finite = np.isfinite(needs[4])
    assert np.array_equal(needs[4][finite], needs[32][finite])  # within the cap a need is the gap itself
    faces = np.arange(len(needs[4]))
    reachable = calibrate.choose_gap(needs[4][finite], faces[finite], 1.0)
    assert calibrate.choose_gap(needs[4], faces, 0.9999) == reachable  # every edge within the cap, no more
    assert calibrate.choose_gap(needs[1], np.arange(len(needs[1])), 0.99) == calibrate.GAP_RANGE[0]


def test_samples_do_not_depend_on_partitioning_and_halves_are_disjoint():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5000, 8)).astype(np.float32)
    ids = rng.permutation(10**6)[:5000].astype(np.int64)
    vertex = np.arange(5000)
    whole = calibrate.sample_faces(ids, vertex, x, 400)
    for n_parts in (2, 7):
        bounds = np.linspace(0, 5000, n_parts + 1).astype(int)
        parts = [calibrate.sample_faces(ids[a:b], vertex[a:b], x[a:b], 400) for a, b in zip(bounds[:-1], bounds[1:])]
        merged = calibrate.merge_samples(parts, 400)
        assert np.array_equal(merged.vertex, whole.vertex) and np.array_equal(merged.x, whole.x)
    even, odd = whole.half(odd=False), whole.half(odd=True)
    assert len(even) + len(odd) == 400 and not set(even.vertex) & set(odd.vertex)


def test_self_knn_meets_its_target_on_unseen_faces():
    x = _clustered(20_000, 48, 7, n_id=1500)
    got = self_knn(x, 11, 0.5, SearchConfig(flat_below=0, target_recall=0.98))
    assert got.spec.nlist > 0 and got.gap is not None and got.audit_recall >= 0.97
    exact = self_knn(x, 11, 0.5, SearchConfig(exact=True))
    found, total = edge_recall((got.D, got.I), (exact.D, exact.I), 0.5, self_ids=np.arange(len(x)))
    assert total > 10_000 and found / total >= 0.97
    wide = self_knn(x, 11, 0.5, SearchConfig(flat_below=0, gap=2.0, nprobe=10**6))  # every list: exact
    f2, t2 = edge_recall((wide.D, wide.I), (exact.D, exact.I), 0.5, self_ids=np.arange(len(x)))
    assert f2 >= t2 - 3  # scores computed by other kernels may round across the threshold
