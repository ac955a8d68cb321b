"""benchmarks/scaling: the cost model of the delta-gallery design on a hand-made pair of run records (fast), and
--quick: both layouts run and commit, the scaling, projection and memory records."""

from __future__ import annotations

import copy
import json
import math
import time

import pytest

from benchmarks.scaling import cli, model, tables
from daskcluster.config import Config

F_M, C_M = 20_000, 20_000


def _row(tasks: int, compute_s: float, in_bytes: int = 0) -> dict:
    return {"tasks": tasks, "compute_s": compute_s, "in_bytes": in_bytes}


def _record(workers: int) -> dict:
    """A ``run`` record shaped like a --quick run of the code before the design (2 partitions, 2 shards)."""
    moved = workers > 1
    prefixes = {
        "ingest": _row(2, 1.5),
        "id-buckets": _row(2, 0.002),
        "bucket": _row(4, 0.0),
        "duplicates": _row(2, 0.004),
        "gallery-ids": _row(3, 5.0),  # the old history scan: not part of the design's day
        "dedupe": _row(2, 0.002),
        "reasons": _row(2, 0.0),
        "count": _row(11, 0.003),
        "prepare": _row(2, 0.002),
        "load-shard": _row(2, 0.16),
        "assign-sample": _row(2, 0.07),
        "assign-train": _row(1, 1.3),
        "gallery-index": _row(2, 0.19),
        "assign-probe": _row(2, 0.4),
        "assign-search": _row(4, 6.5, 28_000_000 if moved else 0),
        "assign-merge": _row(2, 0.013),
        "assign-decide": _row(2, 0.001),
        "unassigned": _row(2, 0.004),
        "knn-build": _row(1, 0.002, 1_000_000 if moved else 0),
        "knn-search": _row(2, 0.044),
        "neighbours": _row(2, 0.001),
        "edges": _row(2, 0.001),
        "cc-forest": _row(2, 0.005),
        "cc-merge": _row(1, 0.001),
        "components": _row(1, 0.001),
        "component-stats": _row(1, 0.0),
        "vertex-ids": _row(2, 0.0),
        "labels": _row(2, 0.0),
        "centre-sums": _row(2, 0.083, 4_000_000 if moved else 0),
        "new-centres": _row(2, 0.019),
        "sums": _row(8, 0.001, 4_000_000 if moved else 0),
        "centre-update": _row(2, 0.15),
        "write-shard": _row(2, 0.19),
        "write-assignments": _row(2, 0.034),
        "shard-stats": _row(2, 0.0),
        "commit": _row(1, 0.006),
    }
    return {
        "bench": "scaling",
        "kind": "run",
        "label": f"w{workers}-r0",
        "status": "committed",
        "workers": workers,
        "faces": F_M,
        "gallery_clusters": C_M,
        "shards": 2,
        "dim": 256,
        "counts": {
            "faces_valid": F_M,
            "assigned": 17_920,
            "new_clusters": 1_760,
            "knn_edges": 2_269,
            "assign_index": "IVF256,Flat nprobe=32",
            "knn_index": "Flat (exact)",
            "assign_quantizer": "trained",
        },
        "prefixes": prefixes,
        "scheduler_tasks_per_s": 600.0,
        "memory_probe": {"copy_bytes_per_s": 3e9, "random_reads_per_s": 5e7},
    }


def _setup(*argv: str):
    args = cli.parse_args(["--quick", *argv])
    args.dim = 256
    return args, cli.make_config(args)


def _project(*argv: str, rec1: dict | None = None, rec2: dict | None = None) -> dict[tuple, dict]:
    args, cfg = _setup(*argv)
    out = model.projections(args, cfg, rec1 or _record(1), rec2 or _record(2))
    return {(p["workers"], p["worker_speedup"]): p for p in out}


def test_lsm_runs_and_bloom_filter():
    assert model.lsm_runs(0) == []
    assert model.lsm_runs(7) == [1] * 7
    assert model.lsm_runs(8) == [8]
    assert model.lsm_runs(365) == [1] * 5 + [8] * 5 + [64] * 5  # 365 = 0o555
    assert sum(model.lsm_runs(1000)) == 1000
    assert model.bloom_k(10) == 7
    assert model.bloom_fpr(10) == pytest.approx(0.0082, abs=2e-4)
    reads = model.id_index_reads(1e8, 365, 64, 10)
    assert reads["R"] == 15
    assert reads["bloom_bytes"] == pytest.approx(365 * 1e8 * 10 / 8)  # history ids x 1.25 bytes
    # 100M ids a day: ~12.8k false positives per run and bucket touch most row groups of every run
    assert 0.5 * 365e8 * 8 < reads["hit_bytes"] <= 365e8 * 8
    assert model.id_index_reads(1e8, 730, 64, 10)["bloom_bytes"] > reads["bloom_bytes"]  # grows with history


def test_design_task_counts_and_budget():
    proj = _project()
    p = proj[(100, 50.0)]
    q, tasks = p["quantities"], p["prefix_tasks"]
    assert q["P"] == math.ceil(1e8 / (1024 * 2**20 // 1024))  # 1 GiB of float32 d=256 features per partition
    assert q["Wg"] == 100 and q["Sg"] == 100
    assert tasks["assign-search"] == q["P"] * 100  # one per (partition, worker), not (partition, shard)
    assert tasks["assign-probe"] == q["P"]
    assert tasks["assign-merge"] == q["P"] * (13 + 2 + 1)  # a fan-in-8 tree over 100 inputs
    assert tasks["knn-search"] == q["P"] * q["Wk"]
    assert tasks["sums"] == q["P"] * 100
    assert tasks["sums-reduce"] == 100 * sum(model.tree_levels(q["P"]))
    groups = 32  # 100 id buckets (one per 1M faces of a 100M day) in 32 dedupe tasks (run.day_ingest.DEDUPE_TASKS)
    assert tasks["id-lookup"] == tasks["write-ids"] == groups
    assert tasks["bucket"] == q["P"] * groups + 2 * groups
    assert tasks["count"] == pytest.approx(11 / 2 * q["P"])  # the measured count per partition
    assert "gallery-ids" not in tasks and "write-shard" not in tasks and "duplicates" not in tasks
    assert p["tasks"] == pytest.approx(sum(v for k, v in tasks.items() if model.stage_of(k) != "assign-train"))
    assert p["tasks"] <= 50_000  # the budget at 100 GPU-class workers
    assert proj[(100, 1.0)]["quantities"]["P"] > 10 * q["P"]  # 64 MB partitions on CPU workers
    assert proj[(8, 50.0)]["tasks"] < p["tasks"]  # partitions x workers


def test_names_the_run_lacks_are_modelled():
    p = _project()[(100, 50.0)]
    src, wall = p["prefix_source"], p["prefix_wall_s"]
    for name in ("write-delta", "write-ids", "ids-merge", "sums-reduce", "compact-load", "compact-write"):
        assert name in wall and wall[name] > 0, name
    assert src["write-delta"] == src["compact-write"] == "rate of write-shard"
    assert src["compact-load"] == "rate of load-shard"
    assert src["sums-reduce"] == "rate of centre-sums"
    assert src["id-lookup"] == "measured"  # the measured duplicates, by the design's name
    assert src["gallery-index"] == "analytic"
    # without any write measured: still projected (store time), nothing crashes
    rec1, rec2 = _record(1), _record(2)
    for rec in (rec1, rec2):
        del rec["prefixes"]["write-shard"]
    q = _project(rec1=rec1, rec2=rec2)[(100, 50.0)]
    assert q["prefix_source"]["write-delta"] == "not measured" and q["prefix_wall_s"]["write-delta"] > 0
    assert q["bytes_written"] == pytest.approx(p["bytes_written"])


def test_gallery_index_is_a_copy_not_the_measured_quantization():
    rec1 = _record(1)
    rec1["prefixes"]["gallery-index"]["compute_s"] *= 1000
    base, bumped = _project()[(8, 50.0)], _project(rec1=rec1)[(8, 50.0)]
    assert bumped["prefix_wall_s"]["gallery-index"] == base["prefix_wall_s"]["gallery-index"]
    q = base["quantities"]
    copy_s = q["C"] * (4 * 256 + 12) / 3e9 / 50 / 8  # C rows into list order at the probe's copy rate
    assert base["prefix_wall_s"]["gallery-index"] == pytest.approx(copy_s)
    # the daily re-listing is the changed and new clusters only, inside centre-update: D x nlist dots
    assert q["D"] == pytest.approx((q["F"] - q["U"]) + q["Nn"])
    assert base["retrain_quantizer"]["wall_s"] > base["stages"]["centre-update"]["wall_s"]


def test_bytes_written_per_day_and_compaction():
    args, _ = _setup()
    p = _project()[(32, 50.0)]
    q = p["quantities"]
    f = args.compact_fraction
    assert q["nc"] == pytest.approx(f * q["C"] / q["D"])
    rows = q["D"] * (1 + 1 / f)  # the delta, plus the base rewritten every f C / D days
    ids = q["F"] * q["idb"] * (1 + q["L"])  # the day's ids + filter, and log8(days) LSM rewrites
    expected = rows * q["rowb"] + q["F"] * model.ASSIGNMENT_ROW_BYTES + ids
    assert p["bytes_written"] == pytest.approx(expected)
    assert p["bytes_written"] < q["C"] * q["rowb"]  # less than the old whole-gallery rewrite
    assert p["compaction_day_s"] == pytest.approx(p["stages"]["compact"]["wall_s"] * q["nc"])
    for other in _project().values():  # the same day whatever the workers
        assert other["bytes_written"] == pytest.approx(p["bytes_written"])
    fewer = _project("--scale-changed-fraction", "0.25")[(32, 50.0)]
    assert fewer["bytes_written"] < 0.5 * p["bytes_written"]


def test_efficiency_and_parameters():
    proj = _project()
    for sp in (1.0, 50.0):
        t = {w: proj[(w, sp)]["total_s"] for w in (8, 32, 100)}
        assert t[8] > t[32] > t[100] > 0
        for w in (8, 32, 100):
            assert proj[(w, sp)]["efficiency_vs_8"] == pytest.approx(8 * t[8] / (w * t[w]))
            assert all(v["wall_s"] >= 0 for v in proj[(w, sp)]["stages"].values())
    p8, p100 = proj[(8, 50.0)], proj[(100, 50.0)]
    assert p8["efficiency_vs_8"] == pytest.approx(1.0) and p100["efficiency_vs_8"] < 1.0
    faster = _project("--scheduler-tasks-per-s", "1e6")[(100, 50.0)]
    assert faster["scheduling_s"] < p100["scheduling_s"] and faster["total_s"] <= p100["total_s"]
    args, cfg = _setup()
    params = model.parameters(args, cfg, _record(1), _record(2))
    for key in (
        "faces_per_day",
        "dim",
        "gallery_clusters",
        "gallery_shards",
        "partition_mb",
        "centre_row_bytes",
        "compact_fraction",
        "bloom_bits_per_id",
        "history_days",
        "id_buckets",
        "dot_rate_per_s",
        "scheduler_tasks_per_s",
        "net_gbps_per_worker",
        "storage_gbps_per_worker",
        "worker_speedup",
    ):
        assert key in params, key
    assert params["copy_bytes_per_s"] == 3e9 and params["machine_rates_from"] == "memory probe of the run"
    assert params["dot_rate_per_s"] == pytest.approx(F_M * C_M * 32 / 256 / 6.5)  # assign-search: F x C x nprobe/nlist
    assert params["quantize_dots_per_s"] == pytest.approx(F_M * 256 / 0.4)  # assign-probe: F x nlist
    text = tables.parameters_table(params) + tables.projection_table(args, list(proj.values()))
    for label in (
        "GB written per day",
        "tasks per day",
        "efficiency vs 8 workers",
        "compact (amortised)",
        "... of which gallery-index",
        "Longest task names",
        "bloom_bits_per_id",
    ):
        assert label in text, label


def test_measured_centre_update_of_the_design_drops_its_listing():
    rec1 = _record(1)
    qm = model.measured_quantities(rec1, _setup()[1])
    assert model.measured_rows_listed(rec1, qm) == 0  # code before the design lists nothing
    new = copy.deepcopy(rec1)
    new["prefixes"]["sums-reduce"] = _row(2, 0.001)
    assert model.measured_rows_listed(new, qm) == C_M + 1_760  # a day that trained re-lists every cluster
    new["counts"]["assign_quantizer"] = "reused q"
    assert model.measured_rows_listed(new, qm) == pytest.approx(qm["D"])


@pytest.mark.distributed
@pytest.mark.timeout(300)
def test_bench_scaling_quick(tmp_path, capsys):
    out = tmp_path / "scaling.jsonl"
    t0 = time.perf_counter()
    records = cli.main(["--quick", "--workdir", str(tmp_path / "work"), "--out", str(out)])
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
    for w, r in main_runs.items():
        assert r["status"] == "committed", r["message"]
        assert r["counts"]["faces_valid"] == 20_000 and r["gallery_clusters"] == 20_000
        assert r["counts"]["assigned"] > 10_000  # the gallery holds the day's identities
        assert r["stage_seconds"]["total"] > 0 and r["scheduler_tasks_per_s"] > 0
        assert r["memory_probe"]["copy_bytes_per_s"] > 0 and r["memory_probe"]["random_reads_per_s"] > 0
        p = r["prefixes"]["ingest"]["tasks"]  # P x shards, or P x workers holding shards (coarse search)
        assert r["prefixes"]["assign-search"]["tasks"] in (2 * p, min(w, 2) * p)
    assert main_runs[1]["counts"]["new_clusters"] == main_runs[2]["counts"]["new_clusters"]
    assert main_runs[2]["bytes_moved"] > 0 and main_runs[1]["bytes_moved"] == 0  # one worker moves nothing

    scaling = {r["stage"]: r for r in records if r["kind"] == "scaling"}
    assert {"ingest", "assign", "components", "total"} <= set(scaling)
    total = scaling["total"]
    assert total["t1_s"] > 0 and total["t2_s"] > 0
    assert isinstance(total["efficiency"], float) and total["efficiency"] > 0
    assert total["efficiency"] == pytest.approx(total["t1_s"] / (2 * total["t2_s"]), rel=1e-2)

    # (b) the projection: 8, 32 and 100 workers for each speed-up, positive times, the day's bytes and tasks
    model_rec = next(r for r in records if r["kind"] == "model")
    assert (
        model_rec["parameters"]["faces_per_day"] == 1e8
        and model_rec["parameters"]["compact_fraction"] == Config().gallery.compact_fraction
    )
    proj = [r for r in records if r["kind"] == "projection"]
    assert {r["workers"] for r in proj} == {8, 32, 100}
    assert {r["worker_speedup"] for r in proj} == {1.0, 50.0}
    for r in proj:
        assert r["total_s"] > 0 and r["efficiency_vs_8"] > 0
        assert r["stages"]["ingest"]["wall_s"] > 0 and r["stages"]["assign"]["wall_s"] > 0
        assert all(v["wall_s"] >= 0 for v in r["stages"].values())
        assert r["quantities"]["F"] == 1e8 and r["quantities"]["C"] == 1e9
        assert r["bytes_written"] > 0 and r["prefix_wall_s"]["write-delta"] > 0
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
    for title in (
        "Measured strong scaling",
        "Cost model",
        "Projection parameters",
        "Projection",
        "Peak RSS (MB) per stage",
        "two day sizes",
    ):
        assert title in captured.err
    assert "| stage |" in captured.err

    # --project-from recomputes the same projection from the run records, without running anything
    again = cli.main(["--project-from", str(out)])
    capsys.readouterr()
    assert [r for r in again if r["kind"] == "projection"] == [
        {**r, "load_avg_1m": again[0]["load_avg_1m"]} for r in proj
    ]
