"""The scaling benchmark's report: the measured strong-scaling rows, and the Markdown tables of the scaling, the
cost model, the projection and the memory peaks (on stderr)."""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

from benchmarks.common import format_table
from benchmarks.scaling.memory import MB, cpu_by_stage, process_order, vertices
from benchmarks.scaling.model import GB, MODEL_TEXT, RETRAIN_STAGE, STAGES, stage_of, stage_sums
from benchmarks.scaling.run import RunData, by_prefix, components_worker, r3, stage_order
from daskcluster.run.tasks import OTHER


def _s(x: float | None) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _mb(x: int | None) -> str:
    return "-" if not x else f"{x / MB:,.0f}"


def _md(title: str, headers: list[str], rows: list[list[Any]], align: str = "") -> str:
    return format_table(headers, rows, align=align, style="markdown", title=title)


# --------------------------------------------------------------------------------------------- (a) scaling
def stage_use(run: RunData, use: dict[str, dict[str, float]], stage: str) -> tuple[float, dict[str, float]]:
    """(seconds, CPU seconds by kind) of one stage of one run; ``total`` covers the stages and the gaps between
    them, ``run_day wall`` everything sampled."""
    secs = run.result.summary["stage_seconds"]
    keys = [stage]
    if stage == "total":
        keys = [k for k in use if k not in ("(setup)", "(summary+commit)")]
    elif stage == "run_day wall":
        keys = list(use)
    busy = {kind: sum(use.get(k, {}).get(kind, 0.0) for k in keys) for kind in ("workers", "ours", "machine")}
    if stage == "(between stages)":
        return secs["total"] - sum(v for k, v in secs.items() if k != "total"), busy
    return (run.wall_s if stage == "run_day wall" else secs.get(stage, 0.0)), busy


def stage_times(runs: list[RunData], stages: list[str], s: str) -> float:
    """The fastest of the repeats: seconds of stage ``s``, of the gaps between stages, or of the whole run."""

    def best(stage: str) -> float:
        return min(r.result.summary["stage_seconds"].get(stage, 0.0) for r in runs)

    if s == "(between stages)":
        return best("total") - sum(best(x) for x in stages)
    if s == "run_day wall":
        return min(r.wall_s for r in runs)
    return best(s)


def per_stage(d: dict[str, float], s: str) -> float | None:
    """A per-stage sum for row ``s`` (the gaps: OTHER's tasks; ``total``: all; the run's wall: none)."""
    key = OTHER if s == "(between stages)" else s
    if key in STAGES:
        return r3(d.get(key, 0.0))
    return r3(sum(d.values())) if s == "total" else None


def scaling_rows(runs: dict[int, list[RunData]], r1: RunData, r2: RunData) -> list[dict[str, Any]]:
    """One row per stage, the gaps, ``total`` and ``run_day wall``: T1, T2, speed-up, efficiency, task CPU
    seconds (from the fastest runs ``r1``, ``r2``) and the cores the workers and other processes kept busy."""
    p1, p2 = by_prefix(r1), by_prefix(r2)
    cpu1, cpu2, tasks1 = stage_sums(p1, "compute_s"), stage_sums(p2, "compute_s"), stage_sums(p1, "tasks")
    uses = ((r1, cpu_by_stage(r1)), (r2, cpu_by_stage(r2)))
    stages = stage_order(runs[1] + runs[2])
    rows = []
    for s in [*stages, "(between stages)", "total", "run_day wall"]:
        t1, t2 = stage_times(runs[1], stages, s), stage_times(runs[2], stages, s)
        row = {
            "stage": s,
            "t1_s": r3(t1),
            "t2_s": r3(t2),
            "speedup": r3(t1 / t2) if t2 > 0 else None,
            "efficiency": r3(t1 / (2 * t2)) if t2 > 0 else None,
            "tasks": per_stage(tasks1, s),
            "cpu1_s": per_stage(cpu1, s),
            "cpu2_s": per_stage(cpu2, s),
        }
        for i, (run, use) in enumerate(uses, start=1):
            secs, busy = stage_use(run, use, s)
            row[f"worker_cores{i}"] = r3(busy["workers"] / secs) if secs > 0 else None
            row[f"other_cores{i}"] = r3(max(0.0, busy["machine"] - busy["ours"]) / secs) if secs > 0 else None
        rows.append(row)
    return rows


SCALING_NOTE = (
    "Task CPU-s: the wall time of the tasks' compute (Dask task stream); worker cores busy: CPU seconds "
    "of the worker processes / stage seconds (psutil); other processes' cores: the machine's busy CPU "
    "seconds less ours (driver, scheduler, workers) / stage seconds. The efficiency compares wall times "
    "of the stages as the driver waits for them; gaps between them (count gathers) are "
    "'(between stages)', and 'run_day wall' adds the summary, report and commit."
)


def scaling_table(args: argparse.Namespace, rows: list[dict]) -> str:
    title = (
        f"**Measured strong scaling**: {args.n:,} faces x d={args.dim} against {args.gallery_clusters:,} "
        f"clusters ({args.shards} shards), 1 worker x 1 thread vs 2 workers x 1 thread, {os.cpu_count()} "
        f"cores (efficiency = T1 / (2 T2); task CPU-s from the Dask task stream)"
    )
    head = [
        "stage",
        "tasks",
        "1 worker s",
        "2 workers s",
        "speedup",
        "efficiency",
        "task CPU-s 1 w",
        "task CPU-s 2 w",
        "worker cores busy 1 w",
        "2 w",
        "other processes' cores 1 w",
        "2 w",
    ]
    cells = []
    for r in rows:
        bold = "**" if r["stage"] in ("total", "run_day wall") else ""
        cells.append(
            [
                f"{bold}{r['stage']}{bold}",
                "" if r.get("tasks") is None else int(r["tasks"]),
                _s(r["t1_s"]),
                _s(r["t2_s"]),
                _s(r.get("speedup")),
                f"{bold}{_s(r.get('efficiency'))}{bold}",
                *(
                    _s(r.get(k))
                    for k in ("cpu1_s", "cpu2_s", "worker_cores1", "worker_cores2", "other_cores1", "other_cores2")
                ),
            ]
        )
    return _md(title, head, cells) + "\n\n" + SCALING_NOTE


# --------------------------------------------------------------------------------------------- (b) model
def model_table(compute: dict, moved: dict) -> str:
    cpu, tasks, byt = stage_sums(compute, "compute_s"), stage_sums(compute, "tasks"), stage_sums(moved, "in_bytes")
    cells = [
        [s, MODEL_TEXT.get(s, "F (as ingest)"), int(tasks.get(s, 0)), _s(cpu.get(s, 0.0)), f"{byt.get(s, 0) / MB:,.1f}"]
        for s in STAGES
    ]
    return _md(
        "**Cost model** (compute from the 1-worker run, bytes from the 2-worker run)",
        ["stage", "compute scales with", "tasks", "task CPU-s", "MB moved"],
        cells,
        align="ll",
    )


def projected_stages(projections: list[dict]) -> list[str]:
    """The stages of the projection table: not the quantizer's retraining (a row of its own), not a stage with
    nothing projected (the maintenance jobs')."""
    return [
        s
        for s in STAGES
        if s != RETRAIN_STAGE and any(p["stages"][s]["wall_s"] or p["stages"][s]["tasks"] for p in projections)
    ]


SUB_ROWS = {  # the task names shown under their stage
    "dedupe": ("id-lookup",),
    "assign": ("assign-probe", "assign-search", "gallery-index"),
    "edges": ("knn-search",),
    "centre-update": ("centre-update",),
    "write": ("write-delta", "ids-merge"),
}


def parameters_table(params: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.0f}" if v >= 1000 else f"{v:.4g}"
        return ", ".join(f"{x:g}" for x in v) if isinstance(v, list) else str(v)

    return _md("**Projection parameters**", ["parameter", "value"], [[k, fmt(v)] for k, v in params.items()], "ll")


def _gb(x: float) -> str:
    return _s(x / GB)


def _largest(p: dict, n: int = 6) -> str:
    """The task names that take longest in one projection, and its scheduling."""
    daily = {k: v for k, v in p["prefix_wall_s"].items() if stage_of(k) != RETRAIN_STAGE}
    top = sorted(daily.items(), key=lambda kv: -kv[1])[:n]
    names = ", ".join(f"{k} {_s(v)} s" for k, v in top)
    return f"{p['workers']} w x{p['worker_speedup']:g}: {names}; scheduling {_s(p['scheduling_s'])} s"


def projection_table(args: argparse.Namespace, projections: list[dict]) -> str:
    qs = projections[0]["quantities"]
    title = (
        f"**Projection**: {args.scale_faces:,.0f} faces/day x d={args.dim} against {args.scale_clusters:,.0f} "
        f"clusters (base + deltas, compaction at {args.compact_fraction:g}), gallery IVF{qs['nla']},Flat "
        f"nprobe={args.scale_nprobe}, k-NN IVF{int(qs['nlk'])} probing {qs['pk']:.4f}, unassigned "
        f"{qs['U'] / qs['F']:.3f}, {args.net_gbps:g} Gbit/s network "
        f"(GPU-class: {getattr(args, 'gpu_net_gbps', args.net_gbps):g}) and {args.storage_gbps:g} Gbit/s store per "
        f"worker; seconds per day (W workers x worker speed-up)"
    )
    head = ["stage", *(f"{p['workers']} w x{p['worker_speedup']:g}" for p in projections)]

    def row(label: str, value: Any, fmt: Any = _s) -> list[str]:
        return [label, *(fmt(value(p)) for p in projections)]

    cells = []
    for s in projected_stages(projections):
        cells.append(row(s + (" (amortised)" if s == "compact" else ""), lambda p, s=s: p["stages"][s]["wall_s"]))
        cells += [
            row(f"... of which {sub}", lambda p, sub=sub: p["prefix_wall_s"].get(sub)) for sub in SUB_ROWS.get(s, ())
        ]
    cells += [
        row("**total**", lambda p: p["total_s"], lambda v: f"**{_s(v)}**"),
        row("**efficiency vs 8 workers**", lambda p: p.get("efficiency_vs_8"), lambda v: f"**{_s(v)}**"),
        row("tasks per day", lambda p: p["tasks"], lambda v: f"{v:,.0f}"),
        row("of which scheduling s", lambda p: p["scheduling_s"]),
        row("store read + write s (all stages)", lambda p: p["io_s"]),
        row("network s (all stages)", lambda p: p["network_s"]),
        row("GB written per day", lambda p: p["bytes_written"], _gb),
        row("GB read from the store per day", lambda p: p["bytes_read"], _gb),
        row("GB over the network per day", lambda p: p["bytes_network"], _gb),
        row("partitions P", lambda p: p["quantities"]["P"], lambda v: f"{v:,.0f}"),
        row("compaction day s (not amortised)", lambda p: p["compaction_day_s"]),
        row("compaction every (days)", lambda p: p["compaction_every_days"]),
        row("quantizer retrain + re-list s (not daily)", lambda p: p["retrain_quantizer"]["wall_s"]),
        row("retrain every (days, gallery x4)", lambda p: p["retrain_every_days"]),
        row("gallery GB per worker (centre rows)", lambda p: p["gallery_gb_per_worker"]),
    ]
    largest = "\n".join(f"- {_largest(p)}" for p in projections if p["workers"] == max(args.scale_workers))
    return _md(title, head, cells) + "\n\nLongest task names (s per day) at the most workers:\n" + largest


# --------------------------------------------------------------------------------------------- (c) memory
def memory_table(run: RunData, peaks: dict, overall: dict, base: dict) -> str:
    procs = sorted(overall, key=process_order)
    order = ["(setup)", *[i[0] for i in run.clock.intervals], "(between stages)", "(summary+commit)"]
    stages = list(dict.fromkeys(s for s in order if s in peaks))
    cells = [["idle before the day", *(_mb(base.get(p)) for p in procs)]]
    cells += [[s, *(_mb(peaks[s].get(p)) for p in procs)] for s in stages]
    cells.append(["**peak**", *(f"**{_mb(overall.get(p))}**" for p in procs)])
    title = f"**Peak RSS (MB) per stage**, run {run.label} ({run.workers} worker(s), {run.n:,} faces)"
    return _md(title, ["stage", *procs], cells)


def sizes_table(rows: list[dict], small: RunData, big: RunData) -> str:
    def edges(r: RunData) -> int:
        return r.result.summary["knn_edges"]

    v_s, v_b = vertices(small), vertices(big)
    title = (
        f"**Peak RSS (MB) per process at two day sizes** (2 workers): {small.n:,} faces ({v_s:,} vertices, "
        f"{edges(small):,} edges) and {big.n:,} faces ({v_b:,} vertices, {edges(big):,} edges): "
        f"vertices x{v_b / max(1, v_s):.2f}, edges x{edges(big) / max(1, edges(small)):.2f}"
    )
    head = ["process", "peak small", "peak large", "above idle, small", "above idle, large", "growth above idle"]
    cells = [
        [
            r["process"],
            *(_mb(r[k]) for k in ("peak_small", "peak_large", "above_idle_small", "above_idle_large")),
            f"x{_s(r['growth_above_idle'])}",
        ]
        for r in rows
    ]
    return (
        _md(title, head, cells) + f"\n\nThe single `components` task ran on {components_worker(small)} (small "
        f"day) and {components_worker(big)} (large day); idle = the first sample before the day."
    )
