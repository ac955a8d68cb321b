"""A day on the GPU backend against the same day on the CPU (skipped, with the reason, without a usable GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from daskcluster.backends import gpu_problem
from daskcluster.gallery.queries import face_clusters
from daskcluster.run.pipeline import run_day

from ..conftest import make_config
from .test_pipeline import EXACT, _read_day, _same_partition

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.distributed,
    pytest.mark.skipif(gpu_problem() is not None, reason=f"GPU backend unavailable: {gpu_problem()}"),
]


def _clusters(gallery, ids):
    return face_clusters(gallery).to_pandas().set_index("face_id").loc[ids, "cluster_id"].to_numpy()


def test_gpu_exact_day_equals_cpu_exact_day(client, small_days, tmp_path):
    """Three days in exact mode: the GPU's clusters, ids included, are the CPU's."""
    for d in small_days:
        for backend in ("cpu", "gpu"):
            run_day(client, d, tmp_path / backend, make_config(*EXACT, f"backend={backend}"))
        ids = _read_day(d)[0]
        cpu, gpu = _clusters(tmp_path / "cpu", ids), _clusters(tmp_path / "gpu", ids)
        assert _same_partition(cpu, gpu), f"day {d.name}: the GPU's clusters differ from the CPU's"
        np.testing.assert_array_equal(cpu, gpu)


def test_gpu_default_day_equals_cpu_default_day(client, small_days, tmp_path):
    """The default search (the blocked IVF, the same code on CuPy) makes the CPU's clusters on the GPU; a face
    whose similarity rounds across a threshold differently on the two may differ (none on this data)."""
    d = small_days[0]
    for backend in ("cpu", "gpu"):
        run_day(client, d, tmp_path / backend, make_config("search.flat_below=100", f"backend={backend}"))
    ids = _read_day(d)[0]
    cpu, gpu = _clusters(tmp_path / "cpu", ids), _clusters(tmp_path / "gpu", ids)
    assert np.mean(cpu != gpu) <= 0.001
