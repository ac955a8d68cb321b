"""GPU backend against the CPU backend (skipped where there is no GPU stack)."""

import numpy as np
import pytest

cupy = pytest.importorskip("cupy")
pytest.importorskip("faiss")

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu():
    from daskcluster.backends.gpu import GpuBackend, gpu_count

    if gpu_count() == 0:
        pytest.skip("no GPU")
    return GpuBackend()


def test_gpu_flat_search_matches_cpu(gpu):
    from daskcluster.backends.cpu import CpuBackend

    x = np.random.default_rng(0).standard_normal((2000, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    cpu = CpuBackend()
    Dc, Ic = cpu.search(cpu.build_index(x, None), x[:100], 10, 0)
    Dg, Ig = gpu.search(gpu.build_index(x, None), x[:100], 10, 0)
    assert (Ic != Ig).mean() < 1e-3
    np.testing.assert_allclose(Dc, Dg, atol=1e-4)


def test_gpu_components_match_cpu(gpu):
    from daskcluster.backends.cpu import CpuBackend

    rng = np.random.default_rng(1)
    src, dst = rng.integers(0, 500, 400), rng.integers(0, 500, 400)
    a = CpuBackend().connected_components(500, src, dst)
    b = gpu.connected_components(500, src, dst)
    assert len(set(zip(a.tolist(), b.tolist()))) == len(set(a.tolist())) == len(set(b.tolist()))
