"""The day's exact sample: one pass for the gap's choice and the audit, half of it when the gap is fixed."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from daskcluster.run.audit import exact_sample
from daskcluster.run.executor import Done
from daskcluster.search import IndexSpec, build_shard, sample_rows, train_quantizer

from ..conftest import CountingInProcess, make_config


def _day(n: int, d: int, seed: int):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((60, d)).astype(np.float32)
    x = centres[rng.integers(0, 60, n)] + 0.6 * rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = rng.permutation(10 * n)[:n].astype(np.int64)
    bounds = [0, n // 3, n // 2, n]
    parts = [
        SimpleNamespace(ids=ids[a:b], x=x[a:b], searchable=np.ones(b - a, bool)) for a, b in zip(bounds, bounds[1:])
    ]
    return x, ids, parts, bounds[:-1]


def test_a_fixed_gap_searches_only_the_audit_half_exactly():
    x, ids, parts, offsets = _day(3000, 16, seed=4)
    vertex = np.arange(len(x), dtype=np.int64)
    centroids = train_quantizer([sample_rows(ids, x, 3000)], 16, 3000, "cpu")
    spec = IndexSpec(16, 16)
    shards = [Done(build_shard(vertex[a:b], x[a:b], spec, centroids, "cpu")) for a, b in ((0, 1700), (1700, 3000))]
    cfg = make_config("search.audit_sample=400")
    ex = CountingInProcess(["w0", "w1"])
    handles = [Done(p) for p in parts]
    full = ex.gather(exact_sample(ex, cfg, shards, handles, offsets, 6, 0.3, both_ways=True))
    half = ex.gather(exact_sample(ex, cfg, shards, handles, offsets, 6, 0.3, both_ways=True, audit_only=True))
    odd = full.half(odd=True)
    assert len(full) == 400 and 0 < len(half) == len(odd) < len(full)
    assert np.array_equal(half.vertex, odd.vertex) and np.array_equal(half.x, odd.x)
    for a, b in zip(half.exact[:2], odd.exact[:2]):  # the same exact lists as the audit half of the whole pass
        assert np.array_equal(a, b)
    for a, b in zip(half.exact[2:], odd.exact[2:]):  # and gaps (centroid scores of a smaller BLAS batch: 1 ulp)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert len(half.half(odd=True)) == len(half)  # what the audit reads: all of it
