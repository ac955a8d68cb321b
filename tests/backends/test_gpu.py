"""The GPU backend against the CPU backend: the same array-module code on CuPy (skipped, with the reason,
where CuPy or a usable CUDA device is missing)."""

import numpy as np
import pytest

from daskcluster.backends import gpu_problem

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(gpu_problem() is not None, reason=f"GPU backend unavailable: {gpu_problem()}"),
]


def unit(n, d, seed):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(2, n // 20), d)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal((n, d)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def backends():
    from daskcluster.backends.cpu import CpuBackend
    from daskcluster.backends.gpu import GpuBackend

    return CpuBackend(), GpuBackend()


def test_exact_search_matches_cpu(backends):
    cpu, gpu = backends
    x = unit(3000, 64, 0)
    Dc, Ic = cpu.exact_knn(x, x[:200], 10)
    Dg, Ig = gpu.exact_knn(x, x[:200], 10)
    np.testing.assert_allclose(Dc, Dg, atol=1e-5)
    assert (Ic != Ig).mean() < 1e-3  # ties only
    Df, If = gpu.search(gpu.build_index(x, None), x[:200], 10, 0, 0.5)
    np.testing.assert_allclose(np.where(Dc >= 0.5, Dc, -np.inf), Df, atol=1e-5)


def test_blocked_ivf_on_the_device_matches_cpu_both_ways(backends):
    cpu, gpu = backends
    x = unit(6000, 64, 1)
    centroids = cpu.train_quantizer(x, 64, seed=0)
    results = []
    for b in (cpu, gpu):
        lists = b.probe(centroids, x, 1).primary
        index = b.build_index(x, centroids, lists)
        probes = b.probe(centroids, x, 16, 0.08)
        both = b.both_ways(index, 10, 0.5, probes)
        D, I, rev = b.search(index, x, 10, 16, 0.5, probes, both)
        assert isinstance(D, np.ndarray) and isinstance(rev.row, np.ndarray)  # only results leave the device
        results.append((lists, probes, D, I, rev))
    (lc, pc, Dc, Ic, rc), (lg, pg, Dg, Ig, rg) = results
    assert (np.asarray(lc) != np.asarray(lg)).mean() < 1e-3
    np.testing.assert_allclose(Dc, Dg, atol=1e-5)
    assert (Ic != Ig).mean() < 1e-3
    assert abs(len(rc) - len(rg)) <= max(3, len(rc) // 1000)


def test_components_equal_cpu_labels(backends):
    cpu, gpu = backends
    rng = np.random.default_rng(2)
    src, dst = rng.integers(0, 50_000, 40_000), rng.integers(0, 50_000, 40_000)
    assert np.array_equal(cpu.connected_components(50_000, src, dst), gpu.connected_components(50_000, src, dst))


def test_kernel_on_cupy_equals_numpy():
    import cupy

    from daskcluster.backends import wcc

    rng = np.random.default_rng(3)
    perm = rng.permutation(100_000)
    src, dst = (
        np.concatenate([perm[:-1], rng.integers(0, 100_000, 5000)]),
        np.concatenate([perm[1:], rng.integers(0, 100_000, 5000)]),
    )
    a = wcc.connected_components(100_000, src, dst)
    b = wcc.connected_components(100_000, cupy.asarray(src), cupy.asarray(dst)).get()
    assert np.array_equal(a, b)
