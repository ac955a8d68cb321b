"""``python -m benchmarks.scaling``: options, the runs, and the records and tables made of them."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchmarks.scaling
from benchmarks.common import JsonLines, finish, parser, print_table, read_lines, setup_logging
from benchmarks.scaling import memory, model, tables
from benchmarks.scaling.data import day_sizes, prepare_all, prepare_in_subprocess
from benchmarks.scaling.run import RunData, best_run, meta, run_config, run_record
from daskcluster.config import Config, load_config

log = logging.getLogger("bench_scaling")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(
        benchmarks.scaling.__doc__,
        "backend",
        "n",
        "dim",
        "identities",
        "seed",
        "repeats",
        "set",
        "out",
        "quick",
        "verbose",
        n={"help": "faces in the day (default 500000; --quick: 20000)"},
        identities={"help": "synthetic population (0 = n / 5, at most the gallery)"},
        repeats={"help": "runs per worker count (per stage, the fastest is kept)"},
        set={"help": "config override for the runs (as daskcluster run-day --set)"},
        quick={"help": "tiny: n=20000, gallery 20000 (for tests)"},
    )
    p.add_argument(
        "--gallery-clusters",
        type=int,
        default=None,
        help="clusters in the starting gallery (default 500000; --quick: 20000)",
    )
    p.add_argument("--shards", type=int, default=2, help="gallery shards (cluster_id %% shards)")
    p.add_argument("--cluster-count", type=int, default=10, help="faces counted per starting cluster")
    p.add_argument(
        "--workdir",
        default=str(Path(tempfile.gettempdir()) / "daskcluster-bench-scaling"),
        help="data, starting gallery and run galleries (reused when present)",
    )
    p.add_argument("--keep", action="store_true", help="keep each run's gallery under WORKDIR/runs")
    p.add_argument(
        "--no-memory-quarter",
        dest="memory_quarter",
        action="store_false",
        help="skip the n/4 day (memory at two sizes)",
    )
    p.add_argument("--sample-period", type=float, default=0.1, help="RSS sampling period, seconds")
    p.add_argument("--probe-tasks", type=int, default=None, help="scheduler probe tasks (default 2000; quick 200)")
    add_projection_options(p)
    p.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--prepare-only"]
    args.n = args.n or (20_000 if args.quick else 500_000)
    args.gallery_clusters = args.gallery_clusters or (20_000 if args.quick else 500_000)
    args.probe_tasks = args.probe_tasks or (200 if args.quick else 2000)
    args.identities = min(args.identities or max(10, args.n // 5), args.gallery_clusters)
    if args.n < 1000 or args.gallery_clusters < 100 or args.shards < 1:
        p.error("need --n >= 1000, --gallery-clusters >= 100, --shards >= 1, --repeats >= 1")
    return finish(p, args)


def add_projection_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale-faces", type=float, default=100e6, help="faces per day at scale")
    p.add_argument("--scale-clusters", type=float, default=1e9, help="gallery clusters at scale")
    p.add_argument("--scale-workers", type=int, nargs="+", default=[8, 32, 100])
    p.add_argument("--scale-shards", type=int, default=0, help="gallery shards at scale (0 = one per worker)")
    p.add_argument("--scale-nlist", type=int, default=262_144, help="gallery IVF lists at scale")
    p.add_argument("--scale-nprobe", type=int, default=64, help="gallery IVF lists probed at scale")
    p.add_argument("--scale-knn-nlist", type=int, default=0, help="k-NN IVF lists at scale (0 = choose_index)")
    p.add_argument("--scale-knn-nprobe", type=int, default=0, help="k-NN lists probed at scale (0 = choose_index)")
    p.add_argument(
        "--scale-partition-mb",
        type=float,
        default=0.0,
        help="feature MB per partition at scale (0 = 1024 for a worker speed-up > 1, a GPU-class worker; the "
        "config's ingest.partition_mb, 64, for x1)",
    )
    p.add_argument(
        "--scale-knn-shards",
        type=int,
        default=0,
        help="k-NN graph shards at scale (0 = the unassigned features / search.shard_mb, as the code groups them)",
    )
    p.add_argument(
        "--scale-id-buckets",
        type=int,
        default=Config().gallery.id_buckets,
        help="face-id index buckets (gallery.id_buckets, fixed per gallery; 0 = one per 1M faces of a day)",
    )
    p.add_argument(
        "--scale-history-days", type=int, default=365, help="committed days the face-id index holds at scale"
    )
    p.add_argument("--bloom-bits", type=float, default=10.0, help="Bloom filter bits per face id")
    p.add_argument(
        "--compact-fraction",
        type=float,
        default=Config().gallery.compact_fraction,
        help="compaction when the deltas' rows exceed this fraction of the base (gallery.compact_fraction)",
    )
    p.add_argument(
        "--scale-changed-fraction",
        type=float,
        default=1.0,
        help="distinct clusters changed per assigned face (1 = every assigned face's cluster: the upper bound)",
    )
    p.add_argument("--net-gbps", type=float, default=10.0, help="network bandwidth per CPU worker (x1), Gbit/s")
    p.add_argument(
        "--gpu-net-gbps",
        type=float,
        default=100.0,
        help="network bandwidth per GPU-class worker (speed-up > 1), Gbit/s: GPU nodes carry InfiniBand/RoCE of "
        "100-400 Gbit/s per GPU",
    )
    p.add_argument(
        "--storage-gbps",
        type=float,
        default=10.0,
        help="bandwidth per worker to the gallery's store (reads and writes), Gbit/s",
    )
    p.add_argument(
        "--scheduler-tasks-per-s",
        type=float,
        default=0.0,
        help="scheduler throughput at scale (0 = the measured probe's)",
    )
    p.add_argument(
        "--worker-speedup",
        type=float,
        nargs="+",
        default=[1.0, 50.0],
        help="production worker speed relative to the measured one (e.g. a GPU)",
    )
    p.add_argument(
        "--project-from",
        type=Path,
        default=None,
        metavar="FILE.jsonl",
        help="run nothing: recompute the model and projection from the run records of an earlier run",
    )


def make_config(args: argparse.Namespace) -> Config:
    return load_config(None, [f"backend={args.backend}", *args.set], environ={})


# --------------------------------------------------------------------------------------------- records
def model_and_projection(args: argparse.Namespace, cfg: Config, rec1: dict, rec2: dict, out: JsonLines) -> list[str]:
    """The ``model`` and ``projection`` records and tables, from the ``run`` records of the 1-worker run
    (compute) and the 2-worker run (bytes, scheduler throughput)."""
    out.emit(meta(args, kind="model", **model.model_fields(args, cfg, rec1, rec2)))
    projections = model.projections(args, cfg, rec1, rec2)
    for g in projections:
        out.emit(meta(args, kind="projection", **model.round_tree(g)))
    return [
        tables.model_table(rec1["prefixes"], rec2["prefixes"]),
        tables.parameters_table(model.parameters(args, cfg, rec1, rec2)),
        tables.projection_table(args, projections),
    ]


def memory_report(
    args: argparse.Namespace, mem_runs: list[RunData], small: RunData | None, big: RunData, out: JsonLines
) -> list[str]:
    """(c): the ``memory`` records and tables of every run, and the ``memory_sizes`` ones (n/4 day vs n)."""
    texts, mems = [], {}
    for run in mem_runs:
        peaks, overall, base = mems[run.label] = memory.memory_by_stage(run)
        for fields in memory.memory_fields(run, peaks):
            out.emit(meta(args, **fields))
        texts.append(tables.memory_table(run, peaks, overall, base))
    if small is not None:
        rows = memory.size_rows(small, big, mems)
        for row in rows:
            out.emit(meta(args, **memory.size_fields(row, small, big)))
        texts.append(tables.sizes_table(rows, small, big))
    return texts


def report(
    args: argparse.Namespace, cfg: Config, runs: dict[int, list[RunData]], small: RunData | None, out: JsonLines
) -> list[str]:
    """The ``scaling``, ``model``, ``projection``, ``memory`` and ``memory_sizes`` records; the tables."""
    r1, r2 = best_run(runs[1]), best_run(runs[2])
    rows = tables.scaling_rows(runs, r1, r2)
    for row in rows:
        out.emit(meta(args, kind="scaling", **row))
    texts = [tables.scaling_table(args, rows)]
    texts += model_and_projection(args, cfg, run_record(args, r1), run_record(args, r2), out)
    return texts + memory_report(args, [r2, r1] + ([small] if small else []), small, r2, out)


def project_from(args: argparse.Namespace, cfg: Config) -> list[dict[str, Any]]:
    """Recompute the model and projection from the ``run`` records of an earlier run's JSON lines; the records
    carry that run's ``meta`` (where and when it was measured)."""
    path = args.project_from
    runs = [
        r
        for r in read_lines(path)
        if r.get("bench") == "scaling" and r.get("kind") == "run" and r.get("status") == "committed"
    ]
    if not runs:
        raise SystemExit(f"{path}: no committed bench_scaling run records")
    n = max(r["faces"] for r in runs)
    args.n, args.gallery_clusters, args.dim = n, runs[0]["gallery_clusters"], runs[0]["dim"]
    args.shards = runs[0].get("shards", args.shards)

    def best(w: int) -> dict:
        mine = [r for r in runs if r["workers"] == w and r["faces"] == n]
        if not mine:
            raise SystemExit(f"{path}: no {w}-worker run of {n} faces")
        return min(mine, key=lambda r: r["stage_seconds"]["total"])

    with JsonLines(args.out, meta=runs[0].get("meta")) as out:
        texts = model_and_projection(args, cfg, best(1), best(2), out)
    print_table("\n\n".join(texts))
    return out.records


def measure_all(
    args: argparse.Namespace, cfg: Config, out: JsonLines
) -> tuple[dict[int, list[RunData]], RunData | None]:
    """``--repeats`` runs on 1 and on 2 workers, then the n/4 day on 2 workers; a ``run`` record each."""
    runs: dict[int, list[RunData]] = {1: [], 2: []}
    for rep in range(args.repeats):
        for w in (1, 2):
            runs[w].append(run_config(args, cfg, f"w{w}-r{rep}", w, args.n))
            out.emit(run_record(args, runs[w][-1]))
    small = None
    if args.memory_quarter:
        small = run_config(args, cfg, "w2-quarter", 2, day_sizes(args)[1])
        out.emit(run_record(args, small))
    return runs, small


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    setup_logging(args)
    cfg = make_config(args)
    if args.prepare_only:
        prepare_all(args, cfg)
        return []
    if args.project_from:
        return project_from(args, cfg)
    t_all = time.perf_counter()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    prepare_in_subprocess(args)
    with JsonLines(args.out) as out:
        runs, small = measure_all(args, cfg, out)
        texts = report(args, cfg, runs, small, out)
    print_table("\n\n".join(texts))
    print_table(f"\ntotal {time.perf_counter() - t_all:.1f} s")
    return out.records
