"""benchmarks/scaling --quick: both layouts run and commit, the scaling, projection and memory records."""

from __future__ import annotations

import json
import time

import pytest

from benchmarks.scaling import cli


@pytest.fixture(scope="module")
def bench():
    return cli


@pytest.mark.distributed
@pytest.mark.timeout(300)
def test_bench_scaling_quick(bench, tmp_path, capsys):
    out = tmp_path / "scaling.jsonl"
    t0 = time.perf_counter()
    records = bench.main(["--quick", "--workdir", str(tmp_path / "work"), "--out", str(out)])
    elapsed = time.perf_counter() - t0
    captured = capsys.readouterr()
    parsed = [json.loads(line) for line in captured.out.splitlines() if line.strip()]  # stdout: JSON lines only
    assert parsed == records
    assert [json.loads(line) for line in out.read_text().splitlines()] == records
    assert all(r["bench"] == "scaling" for r in records)
    print(f"bench_scaling --quick took {elapsed:.1f} s")

    kinds = {r["kind"] for r in records}
    assert {"run", "scaling", "model", "projection", "memory", "memory_sizes"} <= kinds

    # (a) both layouts ran the same day and committed it
    runs = [r for r in records if r["kind"] == "run"]
    main_runs = {r["workers"]: r for r in runs if r["faces"] == 20_000}
    assert set(main_runs) == {1, 2}
    for r in main_runs.values():
        assert r["status"] == "committed", r["message"]
        assert r["counts"]["faces_valid"] == 20_000 and r["gallery_clusters"] == 20_000
        assert r["counts"]["assigned"] > 10_000  # the gallery holds the day's identities
        assert r["stage_seconds"]["total"] > 0 and r["scheduler_tasks_per_s"] > 0
        # one search per partition and worker holding shards: P x min(W, 2 shards)
        assert r["prefixes"]["assign-search"]["tasks"] == min(r["workers"], 2) * r["prefixes"]["ingest"]["tasks"]
    assert main_runs[1]["counts"]["new_clusters"] == main_runs[2]["counts"]["new_clusters"]
    assert main_runs[2]["bytes_moved"] > 0 and main_runs[1]["bytes_moved"] == 0  # one worker moves nothing

    scaling = {r["stage"]: r for r in records if r["kind"] == "scaling"}
    assert {"ingest", "assign", "components", "total"} <= set(scaling)
    total = scaling["total"]
    assert total["t1_s"] > 0 and total["t2_s"] > 0
    assert isinstance(total["efficiency"], float) and total["efficiency"] > 0
    assert total["efficiency"] == pytest.approx(total["t1_s"] / (2 * total["t2_s"]), rel=1e-2)

    # (b) the projection: 8, 32 and 100 workers for each speed-up, positive times
    proj = [r for r in records if r["kind"] == "projection"]
    assert {r["workers"] for r in proj} == {8, 32, 100}
    assert {r["worker_speedup"] for r in proj} == {1.0, 50.0}
    for r in proj:
        assert r["total_s"] > 0 and r["efficiency_vs_8"] > 0
        assert r["stages"]["ingest"]["wall_s"] > 0 and r["stages"]["assign"]["wall_s"] > 0
        assert all(v["wall_s"] >= 0 for v in r["stages"].values())
        assert r["quantities"]["F"] == 1e8 and r["quantities"]["C"] == 1e9
    one = {r["workers"]: r for r in proj if r["worker_speedup"] == 1.0}
    assert one[8]["efficiency_vs_8"] == pytest.approx(1.0)
    assert one[100]["tasks"] > one[8]["tasks"]  # partitions x workers grows with the workers

    # (c) memory peaks per stage and process, and at two day sizes
    mem = [r for r in records if r["kind"] == "memory"]
    for workers in (1, 2):
        stages = {r["stage"]: r["peak_rss_mb"] for r in mem if r["workers"] == workers and r["faces"] == 20_000}
        assert "assign" in stages and all(v > 0 for v in stages["assign"].values())
        procs = set().union(*stages.values())
        assert sum(p.startswith("worker") for p in procs) == workers and any("driver" in p for p in procs)
    sizes = [r for r in records if r["kind"] == "memory_sizes"]
    assert {r["faces_small"] for r in sizes} == {5000} and len(sizes) == 3  # driver(+scheduler), 2 workers
    assert all(r["peak_rss_mb_large"] > 0 and r["peak_rss_mb_small"] > 0 for r in sizes)

    # the Markdown tables on stderr
    for title in ("Measured strong scaling", "Cost model", "Projection", "Peak RSS (MB) per stage", "two day sizes"):
        assert title in captured.err
    assert "| stage |" in captured.err

    # --project-from recomputes the same projection from the run records, without running anything
    again = bench.main(["--project-from", str(out)])
    capsys.readouterr()
    assert [r for r in again if r["kind"] == "projection"] == [
        {**r, "load_avg_1m": again[0]["load_avg_1m"]} for r in proj
    ]
