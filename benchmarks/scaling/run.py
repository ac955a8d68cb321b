"""One measured run of the scaling benchmark: a day on a fresh LocalCluster and a fresh copy of the starting
gallery, with the task stream, the transfer logs, the scheduler's throughput and the memory samples; and the
``run`` record made of it (per task name: tasks, compute seconds, bytes received)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import math
import operator
import os
import shutil
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import numpy as np
from dask.utils import key_split
from distributed import Client, LocalCluster, get_task_stream

from benchmarks.common import record
from benchmarks.scaling.data import DAY, day_dir, gallery_dir
from benchmarks.scaling.memory import RssPlugin, Sampler, scheduler_samples, start_scheduler_sampler, worker_samples
from benchmarks.scaling.model import UNMATCHED
from daskcluster.config import Config
from daskcluster.deploy.connect import BackendThreads
from daskcluster.run.pipeline import DayResult, NullProgress, run_day

log = logging.getLogger("bench_scaling")


def meta(args: argparse.Namespace, **kw: Any) -> dict[str, Any]:
    """A ``scaling`` record: the day's settings and ``kw``."""
    return record(
        "scaling",
        backend=args.backend,
        n=args.n,
        gallery_clusters=args.gallery_clusters,
        dim=args.dim,
        seed=args.seed,
        cores=os.cpu_count(),
        **kw,
    )


def r3(x: float) -> float:
    return round(float(x), 3)


class StageClock(NullProgress):
    """Records the wall-clock interval (``time.time()``) and task count of every stage the driver waits for."""

    def __init__(self) -> None:
        self.intervals: list[tuple[str, float, float, int]] = []
        self._open: dict[str, tuple[float, int]] = {}

    def start(self, stage: str, total: int) -> None:
        super().start(stage, total)
        self._open[stage] = (time.time(), total)

    def finish(self, stage: str, seconds: float) -> None:
        super().finish(stage, seconds)
        t0, total = self._open.pop(stage, (time.time() - seconds, 0))
        self.intervals.append((stage, t0, time.time(), total))

    def stage_at(self, t: float) -> str:
        if not self.intervals or t < self.intervals[0][1]:
            return "(setup)"
        for stage, a, b, _ in self.intervals:
            if a <= t <= b:
                return stage
        return "(summary+commit)" if t > self.intervals[-1][2] else "(between stages)"


@dataclasses.dataclass
class RunData:
    label: str
    workers: int
    n: int
    result: DayResult
    wall_s: float
    t_start: float
    t_end: float
    clock: StageClock
    tasks: list[dict]
    transfers: dict[str, Any]  # worker name -> {"in": [...], "out": [...]}; "names": address -> name
    samples: dict[str, list[tuple]]  # process -> (time, rss, cpu s, machine busy s | None)
    sched_tasks_per_s: float
    warm_s: float
    memory_probe: dict[str, float] = dataclasses.field(default_factory=dict)


# --------------------------------------------------------------------------------------------- on the cluster
def warm_up() -> int:
    """Import the stage modules and touch BLAS/faiss in the worker (not timed)."""
    import faiss  # noqa: F401
    import scipy.sparse.csgraph  # noqa: F401

    import daskcluster.run.pipeline  # noqa: F401

    a = np.random.default_rng(0).standard_normal((512, 64), dtype=np.float32)
    _ = a @ a.T
    return os.getpid()


def memory_probe(rows: int = 65_536, dim: int = 256, rounds: int = 3) -> dict[str, float]:
    """The worker's memory rates, for the tasks the cost model costs by them (the best of ``rounds``):
    ``copy_bytes_per_s``, rows of a 64 MB float32 table copied into a random order (``gallery-index`` copies
    the centres into IVF list order); ``random_reads_per_s``, 8-byte reads at random positions of a 128 MB array
    (a blocked Bloom filter probe reads one such word)."""
    rng = np.random.default_rng(0)
    table, order = rng.standard_normal((rows, dim), dtype=np.float32), rng.permutation(rows)
    words, at = np.zeros(2**24, np.uint64), rng.integers(0, 2**24, 2**22)

    def best(fn: Any) -> float:
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return max(min(times), 1e-9)

    return {
        "copy_bytes_per_s": table.nbytes / best(lambda: np.take(table, order, axis=0)),
        "random_reads_per_s": len(at) / best(lambda: words[at]),
    }


def transfer_logs(dask_worker: Any) -> dict[str, list[dict]]:
    """The worker's incoming and outgoing transfer logs. Incoming ``total`` is Dask's ``sizeof`` estimate of the
    keys; outgoing ``compressed`` is what ``comm.write`` put on the wire."""
    fields = ("start", "stop", "total", "keys", "who", "compressed")
    return {
        "in": [{k: v for k, v in e.items() if k in fields} for e in dask_worker.transfer_incoming_log],
        "out": [{k: v for k, v in e.items() if k in fields} for e in dask_worker.transfer_outgoing_log],
    }


def probe_scheduler(client: Client, n: int) -> float:
    """Tasks per second through scheduler and workers, submitted one ``client.submit`` at a time as the pipeline
    does (half trivial ``divmod`` tasks, half ``getitem`` picks of them); the better of two rounds."""
    best = 0.0
    for _ in range(2):
        token = uuid.uuid4().hex
        t0 = time.perf_counter()
        first = [client.submit(divmod, i, 7, key=f"probe-{token}-{uuid.uuid4().hex[:8]}") for i in range(n // 2)]
        picks = [client.submit(operator.getitem, f, 0, key=f"probe-pick-{token}-{uuid.uuid4().hex[:8]}") for f in first]
        client.gather(picks)
        best = max(best, (len(first) + len(picks)) / (time.perf_counter() - t0))
        del first, picks
    return best


@contextlib.contextmanager
def local_cluster(workers: int, cfg: Config) -> Iterator[Client]:
    """Worker processes of one thread each. They are spawned with the driver's ``sys.path``, so ``benchmarks``
    (imported here from the repository root) is importable there: its plugin and functions go by reference."""
    with (
        dask.config.set({"distributed.admin.low-level-log-length": 1_000_000}),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            memory_limit=cfg.dask.memory_limit,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def prepare_cluster(client: Client, args: argparse.Namespace) -> tuple[float, float, int, dict[str, float]]:
    """Plugins, warm-up, the scheduler and memory probes; the samplers started. (tasks/s, warm-up seconds,
    scheduler pid, the slowest worker's memory rates)"""
    t0 = time.perf_counter()
    client.register_plugin(BackendThreads(args.backend, 1))
    client.register_plugin(RssPlugin(args.sample_period))
    client.run(warm_up)
    rate = probe_scheduler(client, args.probe_tasks)
    rates = list(client.run(memory_probe).values())
    mem = {k: min(r[k] for r in rates) for k in rates[0]}
    warm_s = time.perf_counter() - t0
    scheduler_pid = client.run_on_scheduler(start_scheduler_sampler, args.sample_period)
    client.run(worker_samples)  # drop the warm-up samples
    return rate, warm_s, scheduler_pid, mem


def collect(client: Client, driver: Sampler, scheduler_pid: int) -> tuple[dict, dict, dict[str, str]]:
    """(samples per process, transfer logs per worker, worker names by address) after the day."""
    names = {addr: f"worker-{i}" for i, addr in enumerate(sorted(client.scheduler_info()["workers"]))}
    samples = {"driver": driver.take()}
    sched = client.run_on_scheduler(scheduler_samples)
    if scheduler_pid == os.getpid():  # LocalCluster: the scheduler runs in the driver's process
        samples = {"driver+scheduler": samples["driver"]}
    else:
        samples["scheduler"] = sched
    samples.update({names[a]: s for a, s in client.run(worker_samples).items()})
    transfers = {"names": names, **{names.get(a, a): t for a, t in client.run(transfer_logs).items()}}
    return samples, transfers, names


def measure(
    client: Client, args: argparse.Namespace, cfg: Config, label: str, workers: int, n: int, gallery: Path
) -> RunData:
    rate, warm_s, scheduler_pid, mem = prepare_cluster(client, args)
    driver = Sampler(args.sample_period, machine=True).start()
    clock = StageClock()
    t_start, p0 = time.time(), time.perf_counter()
    with get_task_stream(client=client) as ts:
        result = run_day(client, day_dir(args, n), gallery, cfg, day=DAY, progress=clock)
    wall, t_end = time.perf_counter() - p0, time.time()
    driver.stop()
    samples, transfers, names = collect(client, driver, scheduler_pid)
    tasks = [{**t, "worker": names.get(t.get("worker"), t.get("worker"))} for t in ts.data]
    return RunData(label, workers, n, result, wall, t_start, t_end, clock, tasks, transfers, samples, rate, warm_s, mem)


def run_config(args: argparse.Namespace, cfg: Config, label: str, workers: int, n: int) -> RunData:
    """One day on a fresh LocalCluster and a fresh copy of the starting gallery."""
    gallery = Path(args.workdir) / "runs" / label / "gallery"
    shutil.rmtree(gallery.parent, ignore_errors=True)
    shutil.copytree(gallery_dir(args), gallery)
    log.warning("run %s: %d faces, %d worker(s) x 1 thread", label, n, workers)
    try:
        with local_cluster(workers, cfg) as client:
            run = measure(client, args, cfg, label, workers, n, gallery)
    finally:
        if not args.keep:
            shutil.rmtree(gallery.parent, ignore_errors=True)
    log.warning(
        "run %s: %s in %.1f s (pipeline %.1f s)",
        label,
        run.result.status,
        run.wall_s,
        run.result.summary.get("stage_seconds", {}).get("total", float("nan")),
    )
    return run


# --------------------------------------------------------------------------------------------- analysis
def wire_bytes(run: RunData) -> dict[tuple, list[int]]:
    """(sender, receiver, keys) -> bytes written on the wire, from the senders' outgoing logs."""
    names = run.transfers["names"]
    sent: dict[tuple, list[int]] = defaultdict(list)
    for sender, logs in run.transfers.items():
        if sender == "names":
            continue
        for e in logs["out"]:
            sent[(sender, names.get(e["who"], e["who"]), tuple(sorted(e["keys"])))].append(e.get("compressed", 0))
    return sent


def task_rows(run: RunData) -> tuple[dict[str, dict[str, Any]], dict[tuple, str]]:
    """Per task name: tasks, compute seconds, longest task, Dask's size estimate of the outputs, workers; and the
    task name of every ``(worker, transfer start, stop)`` of the task stream."""
    out: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "tasks": 0,
            "compute_s": 0.0,
            "max_task_s": 0.0,
            "nbytes_dask": 0,
            "in_bytes": 0,
            "in_bytes_dask": 0,
            "transfers": 0,
            "workers": set(),
        }
    )
    cause: dict[tuple, str] = {}
    for t in run.tasks:
        p = key_split(t["key"])
        row = out[p]
        compute = sum(s["stop"] - s["start"] for s in t["startstops"] if s["action"] == "compute")
        row["tasks"] += 1
        row["compute_s"] += compute
        row["max_task_s"] = max(row["max_task_s"], compute)
        row["nbytes_dask"] += t.get("nbytes", 0) or 0
        row["workers"].add(t.get("worker"))
        for s in t["startstops"]:
            if s["action"] == "transfer":
                cause[(t.get("worker"), round(s["start"], 6), round(s["stop"], 6))] = p
    return out, cause


def by_prefix(run: RunData) -> dict[str, dict[str, float]]:
    """Per task-name prefix: :func:`task_rows` and the bytes received for its tasks: ``in_bytes`` on the wire
    (the sender's outgoing log), ``in_bytes_dask`` as Dask estimated them (``sizeof``: 56 bytes for a dataclass
    it does not know)."""
    out, cause = task_rows(run)
    names, sent = run.transfers["names"], wire_bytes(run)
    for worker, logs in run.transfers.items():
        if worker == "names":
            continue
        for e in logs["in"]:
            if e["start"] < run.t_start or e["start"] > run.t_end:  # not the probe's
                continue
            p = cause.get((worker, round(e["start"], 6), round(e["stop"], 6)))
            if p is None:  # logged on a dependent that had already reported: the stage it happened in
                p = UNMATCHED + run.clock.stage_at(e["start"])
            wire = sent.get((names.get(e["who"], e["who"]), worker, tuple(sorted(e["keys"]))))
            out[p]["in_bytes"] += wire.pop(0) if wire else e["total"]
            out[p]["in_bytes_dask"] += e["total"]
            out[p]["transfers"] += 1
    return {p: {**v, "workers": len(v["workers"])} for p, v in out.items()}


def components_worker(run: RunData) -> str | None:
    """The worker that ran the (single) ``components`` task."""
    return next((t["worker"] for t in run.tasks if key_split(t["key"]) == "components"), None)


COUNTS = (
    "faces_in",
    "faces_valid",
    "quarantined",
    "assigned",
    "new_clusters",
    "singletons",
    "largest_new_cluster",
    "knn_edges",
    "gallery_clusters",
    "gallery_faces",
    "assign_index",
    "knn_index",
    "assign_quantizer",
    "edge_recall",
)


def run_record(args: argparse.Namespace, run: RunData) -> dict[str, Any]:
    s = run.result.summary
    prefixes = by_prefix(run)
    return meta(
        args,
        kind="run",
        label=run.label,
        workers=run.workers,
        threads_per_worker=1,
        faces=run.n,
        shards=args.shards,
        components_worker=components_worker(run),
        status=run.result.status,
        message=run.result.message,
        wall_s=r3(run.wall_s),
        stage_seconds={k: r3(v) for k, v in s.get("stage_seconds", {}).items()},
        scheduler_tasks_per_s=round(run.sched_tasks_per_s, 1),
        warm_up_s=r3(run.warm_s),
        memory_probe={k: round(v, 1) for k, v in run.memory_probe.items()},
        counts={k: s.get(k) for k in COUNTS},
        unassigned=(s.get("faces_valid", 0) or 0) - (s.get("assigned", 0) or 0),
        prefixes={
            p: {k: (r3(x) if isinstance(x, float) else x) for k, x in v.items()} for p, v in sorted(prefixes.items())
        },
        tasks_total=sum(v["tasks"] for v in prefixes.values()),
        bytes_moved=sum(v["in_bytes"] for v in prefixes.values()),
    )


def stage_order(runs: list[RunData]) -> list[str]:
    """The stages the runs waited for (``stage_seconds`` keys but ``total``), in the order first seen."""
    return list(dict.fromkeys(s for run in runs for s in run.result.summary.get("stage_seconds", {}) if s != "total"))


def best_run(runs: list[RunData]) -> RunData:
    return min(runs, key=lambda r: r.result.summary.get("stage_seconds", {}).get("total", math.inf))
