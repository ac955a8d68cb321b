"""The array-module components kernel against scipy's, on the graphs that stress it."""

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.csgraph

from daskcluster.backends import get_backend, wcc


def scipy_labels(n, src, dst):
    graph = scipy.sparse.coo_matrix((np.ones(len(src), np.int8), (src, dst)), shape=(n, n)).tocsr()
    return scipy.sparse.csgraph.connected_components(graph, directed=False)[1]


def graphs():
    rng = np.random.default_rng(7)
    yield "empty", 0, np.empty(0, np.int64), np.empty(0, np.int64)
    yield "isolated", 5, np.empty(0, np.int64), np.empty(0, np.int64)
    yield "self loops and repeats", 4, np.array([0, 2, 2, 3]), np.array([0, 3, 3, 2])
    perm = rng.permutation(20_000)
    yield "shuffled path", 20_000, perm[:-1], perm[1:]
    yield "star into the largest", 1000, np.full(999, 999), np.arange(999)
    for n, m in [(1000, 300), (50_000, 40_000), (50_000, 200_000)]:
        yield f"random {n}x{m}", n, rng.integers(0, n, m), rng.integers(0, n, m)


@pytest.mark.parametrize("name,n,src,dst", list(graphs()), ids=[g[0] for g in graphs()])
def test_labels_equal_scipys(name, n, src, dst):
    got = wcc.connected_components(n, src, dst)
    assert got.dtype == np.int64 and got.shape == (n,)
    assert np.array_equal(got, scipy_labels(n, src, dst))  # same partition and same order: by smallest member


def test_cpu_backend_runs_the_kernel():
    rng = np.random.default_rng(3)
    src, dst = rng.integers(0, 3000, 2000), rng.integers(0, 3000, 2000)
    assert np.array_equal(get_backend("cpu").connected_components(3000, src, dst), scipy_labels(3000, src, dst))


def test_library_labels_renumbered_by_smallest_member():
    """cuGraph's labels are arbitrary and cover only the vertices of its edges: renumbered as the kernel's."""
    from daskcluster.backends.gpu import smallest_member_labels  # the module imports no GPU library

    rng = np.random.default_rng(5)
    src, dst = rng.integers(0, 400, 300), rng.integers(0, 400, 300)
    want = scipy_labels(400, src, dst)
    vertex = np.unique(np.concatenate([src, dst]))
    scrambled = rng.permutation(1000)[want[vertex]] * 7 + 3  # any distinct value per component
    assert np.array_equal(smallest_member_labels(400, vertex, scrambled), want)
