"""A day's cost against the history behind it: consecutive days of equal size on one gallery.

Runs ``--days`` synthetic days of ``--n`` faces (identities recurring across days) into one gallery on a real
local Dask cluster of ``--workers`` workers, then one more day that repeats ``--repeat-ids`` face ids of the
first day (they must all be refused), and prints per day: wall seconds, bytes read and written, tasks, and
whether the day wrote a delta or a whole base (the compaction rule). The ratios the storage design promises
are measured side by side in the one run: day N / day 2 bytes written and wall time, the amortised bytes
written over days 2..N, and the bytes on disk after vacuum (``gallery.keep_versions``) against the centres,
assignments and face-id index a gallery must hold.

``python -m benchmarks.history [--days 12] [--n 20000] [--dim 128] [--workers 2] [--keep 3]``
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks import common

log = logging.getLogger("benchmarks.history")


def _args(argv: list[str] | None):
    shared = ("n", "dim", "identities", "seed", "set", "out", "quick", "verbose")
    p = common.parser(__doc__, *shared, n={"default": 20_000})
    p.set_defaults(dim=128)
    p.add_argument("--days", type=int, default=12, help="consecutive days of equal size")
    p.add_argument("--workers", type=int, default=2, help="local Dask workers (1 thread each)")
    p.add_argument("--keep", type=int, default=3, help="gallery.keep_versions of the run")
    p.add_argument("--repeat-ids", type=int, default=100, help="day-1 face ids repeated on the extra last day")
    p.add_argument("--work", type=Path, default=None, help="working directory (default: a temporary one)")
    args = common.finish(p, p.parse_args(argv))
    if args.quick:
        args.days, args.n, args.dim, args.repeat_ids = 3, 600, 32, 20
    common.setup_logging(args)
    return args


def _data(args, root: Path) -> list[Path]:
    from daskcluster.eval.synth import SynthSpec, write_dataset

    identities = args.identities or max(100, args.n // 2)
    spec = SynthSpec(days=args.days + 1, faces_per_day=args.n, identities=identities, dim=args.dim, seed=args.seed)
    days = write_dataset(spec, root / "input")
    # the extra day repeats day-1 ids: a face id seen on day 1 is still refused at the end
    extra = pq.read_table(days[-1])
    old = pq.read_table(days[0]).slice(0, args.repeat_ids).cast(extra.schema)
    shutil.rmtree(days[-1])
    days[-1].mkdir()
    pq.write_table(pa.concat_tables([extra, old]), days[-1] / "part-00000.parquet")
    return days


def _day_record(i: int, result, wall: float) -> dict:
    s = result.summary
    return common.record(
        "history",
        day_index=i + 1,
        day=result.day,
        wall_s=round(wall, 3),
        bytes_read=s["bytes_read"],
        bytes_written=s["bytes_written"],
        tasks=sum(s["stage_tasks"].values()),
        stage_tasks=s["stage_tasks"],
        stage_seconds=s["stage_seconds"],
        gallery_clusters=s["gallery_clusters"],
        refused_as_seen=s.get("quarantine_reasons", {}).get("face_id already in the gallery", 0),
    )


def _run_days(args, days: list[Path], gallery: Path, out: common.JsonLines) -> list[dict]:
    from distributed import Client, LocalCluster

    from daskcluster.config import load_config
    from daskcluster.gallery.manifest import read_manifest
    from daskcluster.run.pipeline import run_day

    cfg = load_config(None, [f"gallery.keep_versions={args.keep}", "gallery.quality_max_faces=0", *args.set], {})
    recs = []
    with (
        LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        for i, day in enumerate(days):
            t0 = time.perf_counter()
            result = run_day(client, day, gallery, cfg)
            rec = _day_record(i, result, time.perf_counter() - t0)
            m = read_manifest(gallery)
            rec["wrote"] = "delta" if m.deltas else "base"
            recs.append(out.emit(rec))
    return recs


def _disk(gallery: Path, keep: int) -> dict:
    """Bytes on disk, and what the gallery must hold: one copy of its centre tables (the current state's base
    and deltas), every committed day's assignments, and the current face-id index."""
    from daskcluster.gallery import ids
    from daskcluster.gallery.manifest import read_manifest
    from daskcluster.gallery.retention import bytes_by_kind, paths_bytes

    m = read_manifest(gallery)
    kinds = bytes_by_kind(gallery)
    centres = paths_bytes(gallery, [m.snapshot, *m.deltas])
    needed = {"centres": centres, "assignments": kinds["assignments"], "ids": ids.index_bytes(gallery, m.id_index)}
    return {"bytes_by_kind": kinds, "total": sum(kinds.values()), "needed": sum(needed.values()), **needed}


def _summary(args, recs: list[dict], disk: dict) -> dict:
    days = recs[: args.days]
    second, last = days[1], days[-1]
    amortised = sum(r["bytes_written"] for r in days[1:]) / max(len(days) - 1, 1)
    return common.record(
        "history-summary",
        days=args.days,
        n=args.n,
        dim=args.dim,
        workers=args.workers,
        bytes_written_last_over_day2=round(last["bytes_written"] / second["bytes_written"], 3),
        wall_last_over_day2=round(last["wall_s"] / second["wall_s"], 3),
        amortised_bytes_written_over_day2=round(amortised / second["bytes_written"], 3),
        base_days=[r["day_index"] for r in days if r["wrote"] == "base"],
        on_disk_over_needed=round(disk["total"] / max(disk["needed"], 1), 3),
        disk=disk,
        repeated_ids_refused=recs[-1]["refused_as_seen"],
        repeated_ids=args.repeat_ids,
    )


def _tables(recs: list[dict], summary: dict) -> None:
    cols = ("day_index", "wall_s", "bytes_read", "bytes_written", "tasks", "wrote", "gallery_clusters")
    rows = [[r[c] for c in cols] for r in recs]
    headers = ["day", "wall s", "bytes read", "bytes written", "tasks", "wrote", "clusters"]
    common.print_table(common.format_table(headers, rows, title="days on one gallery"))
    keys = [k for k in summary if k not in ("bench", "meta", "disk", "load_avg_1m")]
    common.print_table(common.format_table(["figure", "value"], [[k, summary[k]] for k in keys], title="ratios"))
    disk = summary["disk"]["bytes_by_kind"]
    common.print_table(common.format_table(["kind", "bytes"], list(disk.items()), title="on disk after the run"))


def main(argv: list[str] | None = None) -> dict:
    args = _args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="dc-history-"))
    try:
        with common.JsonLines(args.out) as out:
            days = _data(args, work)
            recs = _run_days(args, days, work / "gallery", out)
            summary = out.emit(_summary(args, recs, _disk(work / "gallery", args.keep)))
        _tables(recs, summary)
        return summary
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
