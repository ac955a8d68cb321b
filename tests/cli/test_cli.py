"""The CLI as our acceptance checks call it: real subprocesses, each starting its own LocalCluster."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from ..conftest import tree_digest

pytestmark = pytest.mark.distributed


def dc(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(
        [sys.executable, "-m", "daskcluster.cli", *map(str, args)], capture_output=True, text=True, timeout=600
    )
    if check and out.returncode != 0:
        raise AssertionError(f"daskcluster {args} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "data"
    dc("synth", "--out", out, "--days", 2, "--faces-per-day", 800, "--identities", 150, "--dim", 128, "--seed", 3)
    return out


def test_synth_layout(data):
    days = sorted(p.name for p in data.iterdir())
    assert days == ["day=2026-01-01", "day=2026-01-02"]
    t = pq.read_table(next((data / days[0]).glob("*.parquet")))
    assert {"face_id", "feature", "label"} <= set(t.column_names)


def test_run_export_eval_status(data, tmp_path):
    g = tmp_path / "g"
    for day in sorted(data.iterdir()):
        out = dc("run-day", "--input", day, "--gallery", g, "--workers", 2, "--set", "search.exact=true")
        assert "committed" in out.stderr + out.stdout and "dashboard" in out.stderr
    again = dc("run-day", "--input", data / "day=2026-01-02", "--gallery", g, "--workers", 1)
    assert "already committed" in again.stderr + again.stdout
    dc("export", "--gallery", g, "--out", tmp_path / "e.parquet")
    exported = pq.read_table(tmp_path / "e.parquet")
    assert exported.column_names == ["face_id", "cluster_id"] and exported.num_rows == 1600
    metrics = json.loads(
        dc("eval", "--gallery", g, "--labels", data / "day=2026-01-01", data / "day=2026-01-02").stdout
    )
    assert metrics["n"] == 1600 and metrics["bcubed_precision"] > 0.9
    assert set(metrics) >= {
        "bcubed_precision",
        "bcubed_recall",
        "bcubed_f",
        "pairwise_precision",
        "pairwise_recall",
        "pairwise_f",
        "nmi",
        "n",
        "n_clusters",
        "n_singletons",
        "largest_cluster",
    }
    status = dc("status", "--gallery", g).stdout
    assert "2026-01-02" in status and "1600" in status


def test_errors_are_clear_and_exit_nonzero(data, tmp_path):
    g = tmp_path / "g"
    dc("run-day", "--input", data / "day=2026-01-02", "--gallery", g, "--workers", 1)
    before = tree_digest(g)
    out = dc("run-day", "--input", data / "day=2026-01-01", "--gallery", g, "--workers", 1, check=False)
    assert out.returncode == 2 and "before the last committed day" in out.stderr
    out = dc("run-day", "--input", data, "--gallery", g, "--set", "cluster.k=-1", check=False)
    assert out.returncode == 2 and "cluster.k" in out.stderr
    assert tree_digest(g) == before


@pytest.fixture(scope="module")
def exact_runs(data, tmp_path_factory):
    """face_id -> cluster_id after both days in exact mode, per worker count (computed once each)."""
    root, cache = tmp_path_factory.mktemp("workers"), {}
    modes = {
        "exact": ("search.exact=true",),
        "index": ("search.flat_below=100", "gallery.shards=2", "search.nlist=16", "search.nprobe=4"),
    }

    def run(mode: str, n: int):
        if (mode, n) not in cache:
            g = root / f"{mode}{n}"
            sets = [a for kv in (*modes[mode], "ingest.partition_mb=0.1") for a in ("--set", kv)]
            for day in sorted(data.iterdir()):
                dc("run-day", "--input", day, "--gallery", g, "--workers", n, *sets)
            dc("export", "--gallery", g, "--out", root / f"{mode}{n}.parquet")
            table = pq.read_table(root / f"{mode}{n}.parquet").to_pandas()
            cache[mode, n] = table.sort_values("face_id").reset_index(drop=True)
        return cache[mode, n]

    return run


@pytest.mark.parametrize("mode, workers", [("exact", 1), ("exact", 3), ("index", 1), ("index", 3)])
def test_identical_for_any_worker_count(exact_runs, mode, workers):
    """The same clusters and the same ids whatever the number of workers (2 is the baseline): in exact
    mode, and in index mode at a given gallery shard count."""
    assert exact_runs(mode, 2).equals(exact_runs(mode, workers))


def test_existing_scheduler(data, tmp_path):
    import logging

    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
    ) as cluster:
        out = dc(
            "run-day",
            "--input",
            data / "day=2026-01-01",
            "--gallery",
            tmp_path / "g",
            "--scheduler",
            cluster.scheduler_address,
        )
    assert "committed" in out.stderr + out.stdout
    assert dc("status", "--gallery", tmp_path / "g").stdout.count("2026-01-01") == 1


def test_gpu_backend_refused_without_a_gpu(data, tmp_path):
    """``backend: gpu`` where the GPU backend cannot run: exit 2 at once, one line, nothing written."""
    from daskcluster.backends import gpu_problem

    if gpu_problem() is None:
        pytest.skip("this machine has a usable GPU")
    gallery, demo = tmp_path / "g", tmp_path / "demo"
    for args in (
        ("run-day", "--input", data / "day=2026-01-01", "--gallery", gallery, "--set", "backend=gpu"),
        ("demo", "--data", demo, "--gallery", gallery, "--set", "backend=gpu"),
        ("consolidate", "--gallery", gallery, "--set", "backend=gpu"),
    ):
        out = dc(*args, check=False)
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "backend gpu cannot run here" in lines[0], out.stderr
        assert "Traceback" not in out.stderr
    assert not gallery.exists() and not demo.exists()
    assert (
        dc("run-day", "--input", data / "day=2026-01-01", "--gallery", gallery, "--set", "backend=auto").returncode == 0
    )
