"""A first day end to end, the default search against exact search: one synthetic day of ``--n`` faces run into an
empty gallery on a real local Dask cluster of ``--workers`` one-thread workers, once per mode, side by side.

Prints per mode: wall seconds, the stage seconds of the summary (``knn-train``, ``knn-build``, ``edges``, ...),
the index, the audited edge recall, the exact/default ratio of the wall times (the issue's target: the
default day in at most 1/8 of the exact-mode day at 1M), and, from the Dask task stream, the worker compute
seconds per task name (``task_seconds``) with the share of them the exact sample took (``audit_share``: the
sample both chooses the gap and audits the search; the issue's target for the audit: under 2 % of the day).
``--modes default`` skips the exact day (it is ~20x longer at 1M).

``python -m benchmarks.first_day [--n 200000] [--dim 256] [--workers 2] [--modes default exact]``
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks import common

log = logging.getLogger("benchmarks.first_day")

MODES = {"default": (), "exact": ("search.exact=true",)}
# the exact sample that chooses the gap (even half) and audits the search (odd half), and the audit itself
AUDIT_TASKS = ("calibrate-sample", "calibrate-search", "calibrate-merge", "audit-queries", "audit-recall")


def _args(argv: list[str] | None):
    p = common.parser(__doc__, "n", "dim", "identities", "seed", "set", "out", "verbose", n={"default": 200_000})
    p.add_argument("--workers", type=int, default=2, help="local Dask workers (1 thread each)")
    p.add_argument("--modes", nargs="+", default=["default", "exact"], choices=sorted(MODES))
    p.add_argument("--work", type=Path, default=None, help="working directory (default: a temporary one)")
    return common.finish(p, p.parse_args(argv))


def task_seconds(stream: list[dict]) -> dict[str, float]:
    """Worker compute seconds per task name (``<name>-<run token>-<suffix>`` keys, see
    ``daskcluster.run.executor``) from a Dask task stream, largest first."""
    out: dict[str, float] = {}
    for t in stream:
        key = t.get("key")
        name = key.rsplit("-", 2)[0] if isinstance(key, str) and key.count("-") >= 2 else str(key)
        busy = sum(s["stop"] - s["start"] for s in t.get("startstops", ()) if s.get("action") == "compute")
        out[name] = out.get(name, 0.0) + busy
    return {k: round(v, 2) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def _run(args, day: Path, gallery: Path, mode: str) -> dict:
    from distributed import Client, LocalCluster, get_task_stream

    from daskcluster.config import load_config
    from daskcluster.run.pipeline import run_day

    cfg = load_config(overrides=[*MODES[mode], *(args.set or [])], environ={})
    with (
        LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        t0 = time.perf_counter()
        with get_task_stream(client) as stream:
            result = run_day(client, day, gallery, cfg)
        wall = time.perf_counter() - t0
    s = result.summary
    tasks = task_seconds(stream.data)
    audit = sum(tasks.get(k, 0.0) for k in AUDIT_TASKS)
    return common.record(
        "first_day",
        mode=mode,
        n=args.n,
        dim=args.dim,
        workers=args.workers,
        wall_s=round(wall, 1),
        stage_seconds=s.get("stage_seconds", {}),
        knn_index=s.get("knn_index"),
        edge_recall=s.get("edge_recall"),
        new_clusters=s.get("new_clusters"),
        task_seconds=tasks,
        worker_seconds=round(sum(tasks.values()), 1),
        audit_share=round(audit / sum(tasks.values()), 4) if tasks else None,
    )


def main(argv: list[str] | None = None) -> list[dict]:
    args = _args(argv)
    from daskcluster.eval.synth import SynthSpec, write_dataset

    work = Path(args.work or tempfile.mkdtemp(prefix="daskcluster-first-day-"))
    identities = args.identities or max(10, args.n // 5)
    spec = SynthSpec(days=1, faces_per_day=args.n, identities=identities, dim=args.dim, seed=args.seed)
    day = write_dataset(spec, work / "data")[0]
    recs = []
    try:
        with common.JsonLines(args.out) as out:
            for mode in args.modes:
                log.info("first day, %s mode, %d faces", mode, args.n)
                recs.append(out.emit(_run(args, day, work / f"gallery-{mode}", mode)))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    stages = sorted({k for r in recs for k in r["stage_seconds"]})
    heads = ["mode", "wall s", "index", "edge recall", "exact sample, share of worker s", *stages]
    rows = [
        [
            r["mode"],
            f"{r['wall_s']:.1f}",
            str(r["knn_index"]),
            "-" if r["edge_recall"] is None else f"{r['edge_recall']:.4f}",
            "-" if not r["audit_share"] else f"{100 * r['audit_share']:.1f} %",
            *(f"{r['stage_seconds'].get(k, 0.0):.1f}" for k in stages),
        ]
        for r in recs
    ]
    common.print_table(common.format_table(heads, rows, align="lll"))
    by = {r["mode"]: r["wall_s"] for r in recs}
    if {"default", "exact"} <= by.keys():
        common.print_table(f"exact-mode day / default day: {by['exact'] / by['default']:.2f}x (target >= 8 at 1M)")
    return recs


if __name__ == "__main__":
    main()
