"""search.codec pq: IVF-PQ codes choose the candidates, exact scores rank them."""

import numpy as np
import pytest

from daskcluster.backends import get_backend, ivf
from daskcluster.backends import pq as pqm
from daskcluster.config import SearchConfig
from daskcluster.search import IndexSpec


def faces(n, d=64, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n // 4, d)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.standard_normal((n, d)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    x = faces(8000)
    cpu = get_backend("cpu")
    centroids = cpu.train_quantizer(x, 32, seed=0)
    return cpu, x, centroids, ivf.spill_lists(centroids, x, 2, 0.5)


def test_scores_are_exact_and_rows_counted_once(data):
    cpu, x, centroids, lists = data
    index = cpu.build_index(x, centroids, lists, (16, 8))
    assert isinstance(index, pqm.PQIndex) and index.ivf.ntotal > len(x)  # spilled rows sit in several lists
    q = x[:500]
    probes = cpu.probe(centroids, q, 32, 0.1)
    D, I = cpu.search(index, q, 5, 32, None, probes)
    ok = I >= 0
    np.testing.assert_allclose(D[ok], np.einsum("qd,qkd->qk", q, x[np.maximum(I, 0)])[ok], rtol=0, atol=1e-5)
    assert all(len(set(r[r >= 0])) == (r >= 0).sum() for r in I)  # a spilled row counts once
    assert (np.diff(D, axis=1) <= 1e-7).all()  # best first
    again = cpu.search(cpu.build_index(x, centroids, lists, (16, 8)), q, 5, 32, None, probes)
    assert np.array_equal(I, again[1])  # deterministic build and search


def test_recall_close_to_the_flat_ivf_and_rerank_helps(data):
    cpu, x, centroids, lists = data
    q = x[:1000]
    probes = cpu.probe(centroids, q, 32, 0.1)
    _, If = cpu.search(cpu.build_index(x, centroids, lists), q, 2, 32, 0.5, probes)
    agree = {}
    for rerank in (1, 8):
        _, Ip = cpu.search(cpu.build_index(x, centroids, lists, (16, rerank)), q, 2, 32, 0.5, probes)
        agree[rerank] = float(np.mean(Ip[:, 0] == If[:, 0]))
    assert agree[8] >= 0.98 and agree[8] >= agree[1]


def test_min_sim_blanks_low_scores(data):
    cpu, x, centroids, lists = data
    index = cpu.build_index(x, centroids, lists[:, 0], (16, 4))
    D, I = cpu.search(index, x[:200], 5, 8, 0.7)
    assert ((D >= 0.7) == (I >= 0)).all() and np.isneginf(D[I < 0]).all()


def test_small_shard_stays_flat_ivf_and_bad_bytes_named(data):
    cpu, x, centroids, _ = data
    assert isinstance(cpu.build_index(x[: pqm.MIN_ROWS - 1], centroids, None, (16, 4)), ivf.BlockedIVF)
    with pytest.raises(ValueError, match="pq_bytes 24 must divide the feature dimension 64"):
        cpu.build_index(x, centroids, None, (24, 4))


def test_spec_codec_and_description():
    spec = IndexSpec(nlist=64, nprobe=8, gap=0.1)
    assert spec.with_codec(SearchConfig()).pq is None
    pq = spec.with_codec(SearchConfig(codec="pq", pq_bytes=32, rerank=8))
    assert pq.pq == (32, 8) and pq.describe() == "IVF64,PQ32x8 rerank=8 gap=0.100 nprobe<=8"
    assert IndexSpec().with_codec(SearchConfig(codec="pq")).pq is None  # flat stays flat


@pytest.mark.distributed
def test_a_day_assigned_with_pq_codes(client, tmp_path):
    """Two days; the second's assignment searches PQ codes of the first day's clusters, and agrees with the
    exact search on nearly every audited face."""
    from daskcluster.eval.synth import SynthSpec, write_dataset
    from daskcluster.run.pipeline import run_day

    from ..conftest import make_config

    days = write_dataset(SynthSpec(days=2, faces_per_day=6000, identities=1500, dim=64, seed=3), tmp_path / "d")
    cfg = make_config("search.codec=pq", "search.pq_bytes=32", "search.flat_below=100", "gallery.shards=1")
    run_day(client, days[0], tmp_path / "g", cfg)
    second = run_day(client, days[1], tmp_path / "g", cfg).summary
    assert second["assign_index"].startswith("IVF") and ",PQ32x8 rerank=8 " in second["assign_index"]
    assert second["assign_agreement"] >= 0.95
    assert second["assigned"] > 0
