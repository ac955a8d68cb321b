"""Strong scaling of one day on this machine, a cost model projected to production scale, and peak memory
per process and stage.

(a) **Measured strong scaling.** The same synthetic day of ``--n`` faces (``daskcluster.synth``, d=``--dim``)
is run by ``daskcluster.pipeline.run_day`` against a fresh copy of the same starting gallery of
``--gallery-clusters`` clusters, once on ``LocalCluster(n_workers=1, threads_per_worker=1)`` and once on
``LocalCluster(n_workers=2, threads_per_worker=1)`` (worker processes; faiss is given one OpenMP thread per
worker, so each worker computes on one core). The starting gallery is written directly in the gallery format
(``shards.write_shard`` tables, a ``Manifest`` with one synthetic ``DayRecord`` whose assignments directory is
empty): the identity centres of the day's ``SynthSpec`` population (so most faces are assigned, as in
production) plus random unit centres up to the cluster count; cluster ``i`` lives in shard ``i % --shards``,
with count ``--cluster-count`` and mean = its centre. It has no stored IVF quantizer, so the day trains one
(``assign-train``, as on the first day after the gallery has grown ~4x). Per stage (the pipeline's
``stage_seconds``, which time the driver's wait for each stage) the wall times ``T1``, ``T2`` and the
efficiency ``T1 / (2 T2)`` are reported, with the compute seconds the tasks of the stage spent (Dask task
stream). On a 2-core machine the second worker shares the cores with the scheduler and the driver, so 1.0 is
out of reach where they are busy.

(b) **Cost model.** From the 1-worker run: the compute seconds of every task, grouped by task-name prefix
(``dask.utils.key_split``; prefixes map to the stages below); from the 2-worker run: the bytes every worker
received (``Worker.transfer_incoming_log``, attributed to the task that needed them by matching the task
stream's ``transfer`` start/stop, and counted on the wire by the sender's ``transfer_outgoing_log``: Dask's
own ``sizeof`` estimate counts a pipeline ``Part`` as 56 bytes); the scheduler's throughput (tasks/s) from a
probe of ``--probe-tasks`` trivial tasks submitted like the pipeline submits (one ``client.submit`` per
task, half of them picking from the other half). Each prefix's compute and bytes are scaled from the
measured day to a ``--scale-faces`` day against a ``--scale-clusters`` gallery by what they are proportional
to:

================  ==========================================================  =================  ==============
stage             compute scales with                                         runs in parallel   bytes moved
================  ==========================================================  =================  ==============
ingest, dedupe    faces F (``duplicates``: F, at most 16 tasks)               P partitions       F
load-shard        clusters C (the whole snapshot is read)                     S_g shards         -
assign-train      k-means: 12 x min(n_train, 256 nlist) x nlist dots          1 task (serial)    n_train
assign            F x (C x nprobe/nlist + nlist x S_g) dot products:          P x S_g            F x fan-out
                  the lists probed plus the coarse quantizer, which every
                  shard runs again; index build C x nlist dots
knn-train         as assign-train, on the unassigned faces U = u F            1 task (serial)    n_train
knn-build         U x nlist_k dots (rows to their lists)                      S_k graph shards   F (whole parts)
edges             knn-search U x (U x nprobe_k/nlist_k + nlist_k x S_k)       P x S_k            F x fan-out
                  dots; merge U x S_k; edges U
components        cc-forest: edges E = e U; cc-merge: a tree of fan-in 8      P; tree; 1         V
                  over the P forests, each level ~V vertices, depth
                  ceil(log8 P); components: vertices V = U, ONE task
centre-update     sums F (2 P S_g pick tasks); update: the WHOLE shard        P; S_g             F
                  (``update_shard`` copies every centre to float64), so C
write             snapshot C (rewritten whole each day); assignments F        S_g; P             -
scheduling        tasks / measured tasks/s (tasks grow as P x S_g, P x S_k)   the scheduler      -
================  ==========================================================  =================  ==============

u (unassigned fraction) and e (edges per vertex) are the measured ones. At scale the gallery index is
IVF ``--scale-nlist`` lists with ``--scale-nprobe`` probed, the k-NN index what ``choose_index`` picks for U
(unless ``--scale-knn-nlist``/``--scale-knn-nprobe``), S_g = W (``gallery.shards`` 0: one per worker;
``--scale-shards``), P and S_k follow ``ingest.partition_mb`` and ``search.shard_mb``. Compute seconds are
divided by ``--worker-speedup`` (a production worker's speed relative to the measured one) and spread over
min(W, tasks) workers (serial tasks: 1; the cc-merge tree level by level). Dot products (d-dim inner
products) absent at the measured size (an index that was flat there, e.g. k-NN training) are costed at the
rate the measured ``assign-search`` achieved; all others scale from their own measured seconds. Bytes of a
task scale with its input's unit and with how many workers need each input: min(W, S) x (W-1)/W for inputs
every shard of S needs (the query partitions of ``assign-search`` and ``knn-search``, sized by the measured
bytes per face of a partition on the wire; the component labels), (W-1)/W for the rest; time = bytes /
(min(W, tasks) x ``--net-gbps``), or bytes / ``--net-gbps`` where one task receives them. A stage takes
max(compute + network, its tasks / scheduler throughput): the scheduler hands out tasks while workers
compute. The dot rate is assumed constant, although at scale IVF lists split over many shards get short (at
1B clusters, 262144 lists and 100 shards: ~38 rows per list per shard), which makes blocked products less
efficient, so the projection is optimistic there. Not modelled: ``gallery-ids``
(reading every committed day's face ids for the duplicate check grows with the gallery's history; the
synthetic gallery has none), the driver's summary (label metrics read every face of the day and of the
history, only for labelled input) and stragglers. The projection is printed for ``--scale-workers``
(8, 32, 100) and each ``--worker-speedup``, with the efficiency ``8 T8 / (W T_W)``.

(c) **Memory.** A ``WorkerPlugin`` samples every worker's RSS and CPU time (psutil) every
``--sample-period`` s; the same sampler runs in the scheduler (``run_on_scheduler``) and in the driver, which
also samples the machine's busy CPU time (to show what other processes took). On a ``LocalCluster`` the
scheduler runs in the driver's process: it is reported once, as ``driver+scheduler``. Samples are
attributed to the stage the driver was waiting for (a ``NullProgress`` subclass passed as ``progress=``
records each stage's interval); ``(between stages)`` are the driver's gathers between stages,
``(summary+commit)`` is after the last stage. Each process's peak is reported per stage, and for a second day
of ``--n / 4`` faces (2 workers, same gallery) next to the ``--n`` day, with their vertex (unassigned faces)
and edge counts: no process's peak should grow faster than the vertices.

Output: one JSON line per record on stdout (and appended to ``--out FILE.jsonl``), every one with
``"bench": "scaling"`` and a ``kind``: ``run`` (one per pipeline run: stage seconds, counts, per-prefix task
counts, compute seconds and bytes, the scheduler probe), ``scaling`` (one per stage and ``total``: T1, T2,
efficiency), ``model`` (the measured and scaled quantities), ``projection`` (one per workers x speedup:
seconds per stage, total, efficiency vs 8 workers), ``memory`` (one per run x stage: peak RSS per process)
and ``memory_sizes`` (one per process: peaks at n/4 and n). Markdown tables on stderr.
Data and the starting gallery are written under ``--workdir`` and reused when present. ``--project-from
FILE.jsonl`` runs nothing: it recomputes the model and projection (e.g. with other ``--scale-*``,
``--net-gbps`` or ``--worker-speedup``) from the ``run`` records of an earlier run.
Example: ``python scripts/bench_scaling.py --n 500000 --gallery-clusters 500000 --out /tmp/scaling.jsonl``
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import operator
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask
import numpy as np
from dask.utils import key_split
from distributed import Client, LocalCluster, WorkerPlugin, get_task_stream

from daskcluster.backends import resolve_backend_name
from daskcluster.config import Config, load_config
from daskcluster.deploy.connect import FaissThreads
from daskcluster.run.pipeline import DayResult, NullProgress, run_day
from daskcluster.search.index import choose_index

log = logging.getLogger("bench_scaling")

SCRIPT = Path(__file__).resolve()
DAY = "2026-01-01"  # SynthSpec's default start_date: the day run
BASE_DAY = "2025-12-31"  # the synthetic committed day of the starting gallery
SAMPLER = "bench-scaling-rss"
MB = 2**20

# stage (the pipeline's stage_seconds key) -> task-name prefixes whose tasks belong to it
STAGE_PREFIXES = {
    "ingest": ("ingest", "dim-scan"),
    "dedupe": ("id-buckets", "gallery-ids", "bucket", "duplicates", "dedupe", "reasons"),
    "load-shard": ("load-shard",),
    "assign-train": ("assign-sample", "assign-train", "assign-quantizer"),
    "assign": ("gallery-index", "assign-probe", "assign-search", "assign-merge", "assign-decide", "assign-skip"),
    "knn-train": ("knn-sample", "knn-train"),
    "knn-build": ("knn-build",),
    "edges": ("knn-probe", "knn-search", "knn-merge", "edges", "audit-queries", "audit-search", "audit-merge",
              "audit-recall"),
    "components": ("cc-forest", "cc-merge", "vertex-ids", "components"),
    "centre-update": ("centre-sums", "new-centres", "sums", "labels", "centre-update"),
    "write": ("write-shard", "write-assignments"),
}
OTHER = "other"  # count, component-stats, shard-stats, commit and anything unknown: gathers between stages
PREFIX_STAGE = {p: s for s, ps in STAGE_PREFIXES.items() for p in ps}
STAGES = [*STAGE_PREFIXES, OTHER]
MODEL_TEXT = {
    "ingest": "F",
    "dedupe": "F (duplicates: <= 16 tasks)",
    "load-shard": "C",
    "assign-train": "12 x n_train x nlist dots, 1 task",
    "assign": "F x (C x nprobe/nlist + nlist x S_g) dots; build C x nlist",
    "knn-train": "12 x n_train x nlist_k dots, 1 task",
    "knn-build": "U x nlist_k dots",
    "edges": "U x (U x nprobe_k/nlist_k + nlist_k x S_k) dots",
    "components": "E (forests); V tree depth log8 P; V in 1 task",
    "centre-update": "F (sums); C (whole shard)",
    "write": "C (snapshot) + F",
    OTHER: "F (counts, stats)",
}


# --------------------------------------------------------------------------------------------- helpers
def emit(rec: dict[str, Any], records: list[dict], out: Any) -> None:
    line = json.dumps(rec, sort_keys=False, default=_json_default)
    print(line, flush=True)
    if out is not None:
        out.write(line + "\n")
        out.flush()
    records.append(json.loads(line))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def meta(args: argparse.Namespace, **kw: Any) -> dict[str, Any]:
    return {"bench": "scaling", "backend": args.backend, "n": args.n, "gallery_clusters": args.gallery_clusters,
            "dim": args.dim, "seed": args.seed, "cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
            **kw}


def r3(x: float) -> float:
    return round(float(x), 3)


def parse_index(text: str | None) -> tuple[int, int]:
    """(nlist, nprobe) of ``IndexSpec.describe()``; (0, 0) for flat search."""
    m = re.search(r"IVF(\d+),Flat nprobe=(\d+)", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def tree_levels(n: int, fan_in: int = 8) -> list[int]:
    """Tasks per round of ``DayRunner.tree_reduce`` over ``n`` inputs."""
    levels = []
    while n > 1:
        n = math.ceil(n / fan_in)
        levels.append(n)
    return levels


# --------------------------------------------------------------------------------------------- RSS sampling
class Sampler:
    """A daemon thread appending ``(time.time(), rss bytes, process CPU seconds, machine busy CPU seconds)`` every
    ``period`` seconds (the last only with ``machine=True``: every core's non-idle time, all processes)."""

    def __init__(self, period: float, machine: bool = False):
        self.period, self.machine, self.samples = period, machine, []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Sampler:
        import psutil

        proc = psutil.Process()

        def busy() -> float:
            c = psutil.cpu_times()
            return c.user + c.nice + c.system + getattr(c, "irq", 0.0) + getattr(c, "softirq", 0.0) + \
                getattr(c, "steal", 0.0)

        def loop() -> None:
            while True:
                cpu = proc.cpu_times()
                self.samples.append((time.time(), proc.memory_info().rss, cpu.user + cpu.system,
                                     busy() if self.machine else None))
                if self._stop.wait(self.period):
                    return

        self._thread = threading.Thread(target=loop, name="bench-rss-sampler", daemon=True)
        self._thread.start()
        return self

    def take(self) -> list[tuple]:
        """The samples so far (and forget them)."""
        out, self.samples = self.samples, []
        return out

    def stop(self) -> None:
        self._stop.set()


class RssPlugin(WorkerPlugin):
    """Samples the worker process's RSS (see :class:`Sampler`)."""

    name = SAMPLER

    def __init__(self, period: float):
        self.period = period
        self.sampler: Sampler | None = None

    def setup(self, worker: Any) -> None:
        self.sampler = Sampler(self.period).start()

    def teardown(self, worker: Any) -> None:
        if self.sampler is not None:
            self.sampler.stop()


def _worker_samples(dask_worker: Any) -> list:
    return dask_worker.plugins[SAMPLER].sampler.take()


def _start_scheduler_sampler(period: float, dask_scheduler: Any = None) -> int:
    dask_scheduler._bench_rss = Sampler(period).start()
    return os.getpid()


def _scheduler_samples(dask_scheduler: Any = None) -> list:
    sampler = dask_scheduler._bench_rss
    sampler.stop()
    return sampler.take()


def _transfer_logs(dask_worker: Any) -> dict[str, list[dict]]:
    """The worker's incoming and outgoing transfer logs. Incoming ``total`` is Dask's ``sizeof`` estimate of the
    keys; outgoing ``compressed`` is what ``comm.write`` put on the wire."""
    fields = ("start", "stop", "total", "keys", "who", "compressed")
    return {"in": [{k: v for k, v in e.items() if k in fields} for e in dask_worker.transfer_incoming_log],
            "out": [{k: v for k, v in e.items() if k in fields} for e in dask_worker.transfer_outgoing_log]}


def _warm_up() -> int:
    """Import the stage modules and touch BLAS/faiss in the worker (not timed)."""
    import faiss  # noqa: F401
    import scipy.sparse.csgraph  # noqa: F401

    import daskcluster.run.pipeline  # noqa: F401

    a = np.random.default_rng(0).standard_normal((512, 64), dtype=np.float32)
    _ = a @ a.T
    return os.getpid()


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


# --------------------------------------------------------------------------------------------- data
def synth_spec(args: argparse.Namespace, n: int):
    from daskcluster.eval.synth import SynthSpec

    return SynthSpec(days=1, faces_per_day=n, identities=args.identities, dim=args.dim, seed=args.seed)


def day_dir(args: argparse.Namespace, n: int) -> Path:
    return Path(args.workdir) / f"day-n{n}-d{args.dim}-i{args.identities}-s{args.seed}" / f"day={DAY}"


def gallery_dir(args: argparse.Namespace) -> Path:
    return Path(args.workdir) / (f"gallery-c{args.gallery_clusters}-d{args.dim}-i{args.identities}"
                                 f"-sh{args.shards}-cnt{args.cluster_count}-s{args.seed}")


def _done(path: Path) -> Path:
    return path.with_name(path.name + ".done")


def prepare_day(args: argparse.Namespace, n: int) -> Path:
    """The synthetic day of ``n`` faces as Parquet (reused when present)."""
    from daskcluster.eval.synth import write_dataset

    target = day_dir(args, n)
    marker = _done(target.parent)
    if marker.exists():
        return target
    shutil.rmtree(target.parent, ignore_errors=True)
    t0 = time.perf_counter()
    spec = synth_spec(args, n)
    write_dataset(spec, target.parent)
    marker.write_text(json.dumps(dataclasses.asdict(spec), default=str))
    log.warning("wrote the %d-face day under %s in %.1f s", n, target, time.perf_counter() - t0)
    return target


def prepare_gallery(args: argparse.Namespace, cfg: Config) -> Path:
    """The starting gallery, written directly in the gallery format (reused when present)."""
    from daskcluster import synth
    from daskcluster.gallery.manifest import DayRecord, Manifest, now_utc, version_dir, write_manifest
    from daskcluster.stages.centres import ClusterShard, write_shard

    root = gallery_dir(args)
    marker = _done(root)
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    c, d, ident = args.gallery_clusters, args.dim, args.identities
    centres = np.empty((c, d), np.float32)
    # the identity centres of the day's population (synth has no public accessor for them)
    synth._gather_centres(synth_spec(args, args.n), np.arange(ident, dtype=np.int64), centres[:ident])
    rng = np.random.default_rng([args.seed, 7177])
    for lo in range(ident, c, 65_536):
        hi = min(c, lo + 65_536)
        block = rng.standard_normal((hi - lo, d), dtype=np.float32)
        centres[lo:hi] = block / np.linalg.norm(block, axis=1, keepdims=True)
    snapshot = version_dir("snapshots", 1)
    day = np.datetime64(BASE_DAY, "D")
    for s in range(args.shards):
        ids = np.arange(s, c, args.shards, dtype=np.int64)
        write_shard(ClusterShard(s, ids, np.full(len(ids), args.cluster_count, np.int64), centres[ids],
                                 np.full(len(ids), day), np.full(len(ids), day), np.ones(len(ids), bool)),
                    root / snapshot)
    assignments, report = version_dir("assignments", 1, BASE_DAY), version_dir("reports", 1, BASE_DAY)
    (root / assignments).mkdir(parents=True, exist_ok=True)  # no faces of the past: the duplicate check is free
    (root / report).mkdir(parents=True, exist_ok=True)
    (root / report / "summary.json").write_text(json.dumps({"synthetic": "starting gallery of bench_scaling.py"}))
    n_faces = c * args.cluster_count
    record = DayRecord(
        day=BASE_DAY, version=1, snapshot_before=None, snapshot=snapshot, assignments=assignments, quarantine=None,
        report=report, input_checksum="synthetic", config_digest=cfg.digest(), config=cfg.to_dict(),
        next_cluster_id_before=0, next_cluster_id_after=c, n_clusters_after=c, n_faces_after=n_faces,
        n_faces=n_faces, n_quarantined=0, committed_at=now_utc(), quantizer=None)
    write_manifest(root, Manifest(dim=d, n_shards=args.shards, version=1, next_cluster_id=c, snapshot=snapshot,
                                  n_clusters=c, n_faces=n_faces, days=[record], quantizer=None))
    marker.write_text(json.dumps({"clusters": c, "identities": ident, "shards": args.shards}))
    log.warning("wrote the %d-cluster starting gallery under %s in %.1f s", c, root, time.perf_counter() - t0)
    return root


def prepare_all(args: argparse.Namespace, cfg: Config) -> None:
    prepare_gallery(args, cfg)
    for n in day_sizes(args):
        prepare_day(args, n)


def day_sizes(args: argparse.Namespace) -> list[int]:
    return [args.n] + ([max(100, args.n // 4)] if args.memory_quarter else [])


def prepare_in_subprocess(args: argparse.Namespace) -> None:
    """Generate the data in a child process, so the driver's RSS is not that of the generator."""
    if all(_done(day_dir(args, n).parent).exists() for n in day_sizes(args)) and _done(gallery_dir(args)).exists():
        return
    cmd = [sys.executable, str(SCRIPT), *args.argv, "--prepare-only"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


# --------------------------------------------------------------------------------------------- one run
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


def probe_scheduler(client: Client, n: int) -> float:
    """Tasks per second through scheduler and workers, submitted one ``client.submit`` at a time as the pipeline
    does (half trivial ``divmod`` tasks, half ``getitem`` picks of them; builtins, so that nothing of this script
    has to be importable on the workers); the better of two rounds."""
    best = 0.0
    for _ in range(2):
        token = uuid.uuid4().hex
        t0 = time.perf_counter()
        first = [client.submit(divmod, i, 7, key=f"probe-{token}-{uuid.uuid4().hex[:8]}") for i in range(n // 2)]
        picks = [client.submit(operator.getitem, f, 0, key=f"probe-pick-{token}-{uuid.uuid4().hex[:8]}")
                 for f in first]
        client.gather(picks)
        best = max(best, (len(first) + len(picks)) / (time.perf_counter() - t0))
        del first, picks
    return best


@contextlib.contextmanager
def local_cluster(workers: int, cfg: Config) -> Iterator[Client]:
    with dask.config.set({"distributed.admin.low-level-log-length": 1_000_000}), \
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                         memory_limit=cfg.dask.memory_limit, silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        yield client


def run_config(args: argparse.Namespace, cfg: Config, label: str, workers: int, n: int) -> RunData:
    """One day on a fresh LocalCluster and a fresh copy of the starting gallery."""
    gallery = Path(args.workdir) / "runs" / label / "gallery"
    shutil.rmtree(gallery.parent, ignore_errors=True)
    shutil.copytree(gallery_dir(args), gallery)
    log.warning("run %s: %d faces, %d worker(s) x 1 thread", label, n, workers)
    try:
        with local_cluster(workers, cfg) as client:
            t0 = time.perf_counter()
            client.register_plugin(FaissThreads(1))
            client.register_plugin(RssPlugin(args.sample_period))
            client.run(_warm_up)
            rate = probe_scheduler(client, args.probe_tasks)
            warm_s = time.perf_counter() - t0
            scheduler_pid = client.run_on_scheduler(_start_scheduler_sampler, args.sample_period)
            client.run(_worker_samples)  # drop the warm-up samples
            driver = Sampler(args.sample_period, machine=True).start()
            clock = StageClock()
            t_start, p0 = time.time(), time.perf_counter()
            with get_task_stream(client=client) as ts:
                result = run_day(client, day_dir(args, n), gallery, cfg, day=DAY, progress=clock)
            wall, t_end = time.perf_counter() - p0, time.time()
            driver.stop()
            names = {addr: f"worker-{i}" for i, addr in enumerate(sorted(client.scheduler_info()["workers"]))}
            samples = {"driver": driver.take()}
            sched = client.run_on_scheduler(_scheduler_samples)
            if scheduler_pid == os.getpid():  # LocalCluster: the scheduler runs in the driver's process
                samples = {"driver+scheduler": samples["driver"]}
            else:
                samples["scheduler"] = sched
            samples.update({names[a]: s for a, s in client.run(_worker_samples).items()})
            transfers = {names.get(a, a): log_ for a, log_ in client.run(_transfer_logs).items()}
            transfers = {"names": names, **transfers}
            tasks = [{**t, "worker": names.get(t.get("worker"), t.get("worker"))} for t in ts.data]
    finally:
        if not args.keep:
            shutil.rmtree(gallery.parent, ignore_errors=True)
    log.warning("run %s: %s in %.1f s (pipeline %.1f s)", label, result.status, wall,
                result.summary.get("stage_seconds", {}).get("total", float("nan")))
    return RunData(label, workers, n, result, wall, t_start, t_end, clock, tasks, transfers, samples, rate, warm_s)


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


def by_prefix(run: RunData) -> dict[str, dict[str, float]]:
    """Per task-name prefix: tasks, compute seconds, longest task, Dask's size estimate of the outputs
    (``nbytes_dask``), and the bytes received for its tasks: ``in_bytes`` on the wire (the sender's outgoing
    log), ``in_bytes_dask`` as Dask estimated them (``sizeof``: 56 bytes for a dataclass it does not know)."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"tasks": 0, "compute_s": 0.0, "max_task_s": 0.0,
                                                            "nbytes_dask": 0, "in_bytes": 0, "in_bytes_dask": 0,
                                                            "transfers": 0, "workers": set()})
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
    names, sent = run.transfers["names"], wire_bytes(run)
    for worker, logs in run.transfers.items():
        if worker == "names":
            continue
        for e in logs["in"]:
            if e["start"] < run.t_start or e["start"] > run.t_end:  # not the probe's
                continue
            p = cause.get((worker, round(e["start"], 6), round(e["stop"], 6)))
            if p is None:  # logged on a dependent that had already reported: the stage it happened in
                p = "(unmatched)" + run.clock.stage_at(e["start"])
            wire = sent.get((names.get(e["who"], e["who"]), worker, tuple(sorted(e["keys"]))))
            out[p]["in_bytes"] += wire.pop(0) if wire else e["total"]
            out[p]["in_bytes_dask"] += e["total"]
            out[p]["transfers"] += 1
    return {p: {**v, "workers": len(v["workers"])} for p, v in out.items()}


def stage_of(prefix: str) -> str:
    """The stage of a task-name prefix; ``(unmatched)X``: stage X (when the transfer happened), or X's stage."""
    if prefix.startswith("(unmatched)"):
        rest = prefix.removeprefix("(unmatched)")
        return rest if rest in STAGES else PREFIX_STAGE.get(rest, OTHER)
    return PREFIX_STAGE.get(prefix, OTHER)


def stage_sums(prefixes: dict[str, dict], field: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for p, v in prefixes.items():
        out[stage_of(p)] += v[field]
    return out


def memory_by_stage(run: RunData) -> tuple[dict[str, dict[str, int]], dict[str, int], dict[str, int]]:
    """Peak RSS per stage and process, overall peak and idle baseline (first sample) per process."""
    peaks: dict[str, dict[str, int]] = defaultdict(dict)
    overall, base = {}, {}
    for proc, samples in run.samples.items():
        if not samples:
            continue
        base[proc] = samples[0][1]
        for t, rss, *_ in samples:
            stage = run.clock.stage_at(t)
            peaks[stage][proc] = max(peaks[stage].get(proc, 0), rss)
            overall[proc] = max(overall.get(proc, 0), rss)
    return dict(peaks), overall, base


def cpu_by_stage(run: RunData) -> dict[str, dict[str, float]]:
    """CPU seconds per stage: ``workers`` (all worker processes), ``ours`` (workers, driver, scheduler) and
    ``machine`` (every process on the machine), from consecutive samples (attributed at their midpoint)."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"workers": 0.0, "ours": 0.0, "machine": 0.0})
    for proc, samples in run.samples.items():
        for (t0, _, c0, m0), (t1, _, c1, m1) in zip(samples, samples[1:]):
            row = out[run.clock.stage_at((t0 + t1) / 2)]
            row["ours"] += c1 - c0
            if proc.startswith("worker"):
                row["workers"] += c1 - c0
            if m0 is not None and m1 is not None:
                row["machine"] += m1 - m0
    return dict(out)


def stage_order(runs: list[RunData]) -> list[str]:
    order: list[str] = []
    for run in runs:
        for s in run.result.summary.get("stage_seconds", {}):
            if s != "total" and s not in order:
                order.append(s)
    return order


def components_worker(run: RunData) -> str | None:
    """The worker that ran the (single) ``components`` task."""
    return next((t["worker"] for t in run.tasks if key_split(t["key"]) == "components"), None)


def run_record(args: argparse.Namespace, run: RunData) -> dict[str, Any]:
    s = run.result.summary
    counts = {k: s.get(k) for k in ("faces_in", "faces_valid", "quarantined", "assigned", "new_clusters",
                                    "singletons", "largest_new_cluster", "knn_edges", "gallery_clusters",
                                    "gallery_faces", "assign_index", "knn_index", "assign_quantizer",
                                    "edge_recall")}
    prefixes = by_prefix(run)
    return meta(args, kind="run", label=run.label, workers=run.workers, threads_per_worker=1, faces=run.n,
                shards=args.shards, components_worker=components_worker(run),
                status=run.result.status, message=run.result.message, wall_s=r3(run.wall_s),
                stage_seconds={k: r3(v) for k, v in s.get("stage_seconds", {}).items()},
                scheduler_tasks_per_s=round(run.sched_tasks_per_s, 1), warm_up_s=r3(run.warm_s), counts=counts,
                unassigned=(s.get("faces_valid", 0) or 0) - (s.get("assigned", 0) or 0),
                prefixes={p: {k: (r3(x) if isinstance(x, float) else x) for k, x in v.items()}
                          for p, v in sorted(prefixes.items())},
                tasks_total=sum(v["tasks"] for v in prefixes.values()),
                bytes_moved=sum(v["in_bytes"] for v in prefixes.values()))


# --------------------------------------------------------------------------------------------- model
@dataclasses.dataclass(frozen=True)
class PrefixModel:
    work: str      # unit of compute (a key of UNITS)
    tasks: str     # unit of the number of tasks
    data: str      # unit of the bytes it receives
    fan: str = "1"  # how many shards' workers need each input: "1", "Sg", "Sk", "W"
    serial: bool = False  # one task: never spread
    tree: bool = False    # a tree reduction over the partitions (cc-merge)


MODELS: dict[str, PrefixModel] = {
    "ingest": PrefixModel("F", "P", "F"),
    "id-buckets": PrefixModel("F", "P", "F"),
    "bucket": PrefixModel("F", "PB", "F"),
    "duplicates": PrefixModel("F", "B", "F"),
    "dedupe": PrefixModel("F", "P", "F"),
    "reasons": PrefixModel("F", "P", "P"),
    "count": PrefixModel("F", "P", "P"),
    "load-shard": PrefixModel("C", "Sg", "C"),
    "assign-sample": PrefixModel("C", "Sg", "C"),
    "assign-train": PrefixModel("train_a", "1", "ntrain_a", serial=True),
    "gallery-index": PrefixModel("C_nla", "Sg", "nla", fan="W"),
    "assign-probe": PrefixModel("F_nla", "P", "F"),
    "assign-search": PrefixModel("dots_a", "PSg", "F", fan="Sg"),
    "assign-merge": PrefixModel("FSg", "P_tree_Sg", "FSg"),
    "assign-decide": PrefixModel("F", "P", "F"),
    "knn-sample": PrefixModel("F", "P", "F"),
    "knn-train": PrefixModel("train_k", "1", "ntrain_k", serial=True),
    "knn-build": PrefixModel("U_nlk", "Sk", "F"),
    "knn-probe": PrefixModel("U_nlk", "P", "F"),
    "knn-search": PrefixModel("dots_k", "PSk", "F", fan="Sk"),
    "knn-merge": PrefixModel("USk", "P_tree_Sk", "USk"),
    "edges": PrefixModel("U", "P", "U"),
    "cc-forest": PrefixModel("E", "P", "E"),
    "cc-merge": PrefixModel("V_levels", "tree_P", "V", tree=True),
    "vertex-ids": PrefixModel("F", "P", "F"),
    "components": PrefixModel("V", "1", "V", serial=True),
    "component-stats": PrefixModel("1", "1", "V", serial=True),
    "labels": PrefixModel("V", "P", "V", fan="W"),
    "centre-sums": PrefixModel("F", "P", "F"),
    "new-centres": PrefixModel("F", "P", "F"),
    "sums": PrefixModel("F", "PSg2", "F"),
    "centre-update": PrefixModel("C", "Sg", "F"),
    "write-shard": PrefixModel("C", "Sg", "C"),
    "write-assignments": PrefixModel("F", "P", "F"),
    "shard-stats": PrefixModel("C", "Sg", "1"),
    "commit": PrefixModel("nla", "1", "nla", serial=True),
}
DEFAULT_MODEL = PrefixModel("F", "P", "F")
NOT_MODELLED = ("gallery-ids", "probe", "probe-pick")  # history-dependent (0 here) / the probe itself


def train_dots(n_train: int, nlist: int, rows: int) -> float:
    """faiss k-means as the CPU backend runs it: 12 iterations over min(sample, 256 x nlist) points."""
    if nlist <= 0:
        return 0.0
    return 12.0 * min(n_train, rows, 256 * nlist) * nlist


UNITS: dict[str, Callable[[dict], float]] = {
    "1": lambda q: 1.0,
    "F": lambda q: q["F"],
    "U": lambda q: q["U"],
    "V": lambda q: q["U"],
    "E": lambda q: q["E"],
    "C": lambda q: q["C"],
    "P": lambda q: q["P"],
    "B": lambda q: min(q["P"], 16),
    "PB": lambda q: q["P"] * min(q["P"], 16),
    "Sg": lambda q: q["Sg"],
    "Sk": lambda q: q["Sk"],
    "PSg": lambda q: q["P"] * q["Sg"],
    "PSg2": lambda q: 2 * q["P"] * q["Sg"],
    "PSk": lambda q: q["P"] * q["Sk"],
    "P_tree_Sg": lambda q: q["P"] * sum(tree_levels(q["Sg"])),
    "P_tree_Sk": lambda q: q["P"] * sum(tree_levels(q["Sk"])),
    "tree_P": lambda q: sum(tree_levels(q["P"])),
    "FSg": lambda q: q["F"] * q["Sg"],
    "USk": lambda q: q["U"] * q["Sk"],
    "V_levels": lambda q: q["U"] * len(tree_levels(q["P"])),
    "nla": lambda q: max(q["nla"], 1),
    "ntrain_a": lambda q: min(q["ntrain_a"], q["C"]),
    "ntrain_k": lambda q: min(q["ntrain_k"], q["U"]),
    # dot products of d-dim vectors: the lists probed, plus the coarse quantization when every shard's search
    # runs it again (``qa``/``qk`` = 1: no ``assign-probe``/``knn-probe`` tasks in the measured code)
    "dots_a": lambda q: q["F"] * (q["C"] * q["pa"] + q["qa"] * q["nla"] * q["Sg"]),
    "dots_a_once": lambda q: q["F"] * (q["C"] * q["pa"] + q["nla"]),
    "dots_k": lambda q: q["U"] * (q["U"] * q["pk"] + q["qk"] * q["nlk"] * q["Sk"]),
    "F_nla": lambda q: q["F"] * q["nla"],
    "C_nla": lambda q: q["C"] * q["nla"],
    "U_nlk": lambda q: q["U"] * q["nlk"],
    "train_a": lambda q: train_dots(q["ntrain_a"], q["nla"], q["C"]),
    "train_k": lambda q: train_dots(q["ntrain_k"], q["nlk"], q["U"]),
}


DOT_UNITS = ("dots_a", "dots_k", "train_a", "train_k", "C_nla", "U_nlk", "F_nla")


def fan_factor(fan: str, q: dict) -> float:
    """Expected number of other workers an input goes to: min(W, S) x (W - 1) / W."""
    w = q["W"]
    s = {"1": 1, "Sg": q["Sg"], "Sk": q["Sk"], "W": w}[fan]
    return min(w, s) * (w - 1) / w


def measured_quantities(rec: dict, cfg: Config) -> dict[str, float]:
    """The measured day's units, from a ``run`` record."""
    s, prefixes = rec["counts"], rec["prefixes"]
    f = s["faces_valid"]
    nla, npa = parse_index(s.get("assign_index"))
    nlk, npk = parse_index(s.get("knn_index"))
    search = cfg.search
    return {"F": f, "U": max(1, f - s["assigned"]), "E": max(1, s.get("knn_edges") or 0),
            "C": rec["gallery_clusters"], "P": prefixes.get("ingest", {}).get("tasks", 1),
            "Sg": rec.get("shards", 2), "Sk": max(1, prefixes.get("knn-build", {}).get("tasks", 1)),
            "W": rec["workers"], "nla": nla, "pa": npa / nla if nla else 1.0, "nlk": nlk,
            "pk": npk / nlk if nlk else 1.0, "qa": 0 if "assign-probe" in prefixes else 1,
            "qk": 0 if "knn-probe" in prefixes else 1,
            "ntrain_a": max(search.train_sample, 39 * nla), "ntrain_k": max(search.train_sample, 39 * nlk)}


def scale_quantities(args: argparse.Namespace, cfg: Config, qm: dict, w: int) -> dict[str, float]:
    """The production day: ``--scale-faces`` against ``--scale-clusters`` on ``w`` workers."""
    f, c, d = args.scale_faces, args.scale_clusters, args.dim
    u = f * qm["U"] / qm["F"]
    nla = min(args.scale_nlist, max(16, c // 39))
    knn = choose_index(int(u), cfg.search)
    nlk = args.scale_knn_nlist or knn.nlist
    npk = args.scale_knn_nprobe or knn.nprobe
    nlk = min(nlk, max(16, int(u) // 39)) if nlk else 0
    rows_per_part = max(256, int(cfg.ingest.partition_mb * MB // (4 * d)))
    return {"F": f, "U": u, "E": u * qm["E"] / qm["U"], "C": c, "P": math.ceil(f / rows_per_part),
            "Sg": args.scale_shards or w, "Sk": max(1, math.ceil(u * d * 4 / MB / cfg.search.shard_mb)), "W": w,
            "nla": nla, "pa": min(1.0, args.scale_nprobe / nla), "nlk": nlk,
            "pk": min(1.0, npk / nlk) if nlk else 1.0,
            "ntrain_a": max(cfg.search.train_sample, 39 * nla), "ntrain_k": max(cfg.search.train_sample, 39 * nlk),
            "qa": qm["qa"], "qk": qm["qk"]}


def part_bytes_per_face(args: argparse.Namespace, moved: dict, qm_bytes: dict) -> float:
    """Bytes a query partition puts on the wire per face (features, ids, metadata), from the measured
    ``assign-search`` transfers; the features alone (d x 4 bytes) when none were measured. (``knn-search`` is
    not used: its partitions may already sit at the shard's worker, copied there by ``knn-build``.)"""
    f_m = fan_factor("Sg", qm_bytes)
    b = moved.get("assign-search", {}).get("in_bytes", 0)
    return b / (qm_bytes["F"] * f_m) if b and f_m else args.dim * 4.0


def _ratio(unit: str, qs: dict, qm: dict) -> float:
    m = UNITS[unit](qm)
    return UNITS[unit](qs) / m if m else 0.0


def project(args: argparse.Namespace, cfg: Config, compute: dict, moved: dict, qm_compute: dict, qm_bytes: dict,
            sched_rate: float, w: int, speedup: float) -> dict[str, Any]:
    """Projected seconds per stage at ``w`` workers (see the module docstring)."""
    qs = scale_quantities(args, cfg, qm_compute, w)
    bw = args.net_gbps * 1e9 / 8
    dot_rate = UNITS["dots_a"](qm_compute) / max(compute.get("assign-search", {}).get("compute_s", 0.0), 1e-9)
    part_bytes = part_bytes_per_face(args, moved, qm_bytes)
    stage: dict[str, dict[str, float]] = {s: {"compute_s": 0.0, "network_s": 0.0, "tasks": 0.0, "bytes": 0.0}
                                          for s in STAGES}
    prefix_wall: dict[str, float] = {}
    for p in sorted(set(compute) | set(moved) | {"knn-train"}):
        if p in NOT_MODELLED:
            continue
        m = DEFAULT_MODEL if p.startswith("(unmatched)") else MODELS.get(p, DEFAULT_MODEL)
        cm = compute.get(p, {})
        cpu_m, tasks_m = cm.get("compute_s", 0.0), cm.get("tasks", 0)
        tasks_s = tasks_m * _ratio(m.tasks, qs, qm_compute) if tasks_m else 0.0
        if m.work in DOT_UNITS and not (tasks_m and UNITS[m.work](qm_compute)):
            # no such dot products at the measured size (flat search there): at the assign-search dot rate
            cpu_s = UNITS[m.work](qs) / dot_rate
            tasks_s = tasks_s or (UNITS[m.tasks](qs) if cpu_s else 0.0)
        else:
            cpu_s = cpu_m * _ratio(m.work, qs, qm_compute)
        cpu_s /= speedup
        if m.serial:
            wall = cpu_s
        elif m.tree:
            levels = tree_levels(int(qs["P"]))
            per_level = cpu_s / max(1, len(levels))
            wall = sum(math.ceil(n / w) * per_level / n for n in levels)
        else:
            wall = cpu_s / max(1.0, min(w, tasks_s))
        receivers = max(1.0, min(w, tasks_s))
        if m.fan in ("Sg", "Sk"):  # every query partition travels to every shard's worker
            b_s = qs["F"] * part_bytes * fan_factor(m.fan, qs)
        else:
            b_m = moved.get(p, {}).get("in_bytes", 0)
            f_m = fan_factor(m.fan, qm_bytes)
            b_s = b_m * _ratio(m.data, qs, qm_bytes) * fan_factor(m.fan, qs) / f_m if f_m else 0.0
            if p.startswith("(unmatched)"):  # partitions or sums, in the stage they moved in: spread over P
                receivers = max(1.0, min(w, qs["P"]))
        net = b_s / bw if (m.serial or m.tree) else b_s / (receivers * bw)
        prefix_wall[p] = wall + net
        row = stage[stage_of(p)]
        row["compute_s"] += wall
        row["network_s"] += net
        row["tasks"] += tasks_s
        row["bytes"] += b_s
    per_stage = {}
    for s, row in stage.items():
        sched = row["tasks"] / sched_rate
        per_stage[s] = {"wall_s": max(row["compute_s"] + row["network_s"], sched), "compute_s": row["compute_s"],
                        "network_s": row["network_s"], "scheduling_s": sched, "tasks": row["tasks"],
                        "bytes": row["bytes"]}
    retrain = per_stage.pop("assign-train")
    once = UNITS["dots_a_once"](qs) / UNITS["dots_a"](qs)
    a = compute.get("assign-search", {}).get("compute_s", 0.0) * _ratio("dots_a", qs, qm_compute) / speedup
    a /= max(1.0, min(w, qs["P"] * qs["Sg"]))
    return {"workers": w, "worker_speedup": speedup, "quantities": qs, "stages": per_stage,
            "retrain_quantizer": retrain,
            "total_s": sum(v["wall_s"] for v in per_stage.values()),
            "tasks": sum(v["tasks"] for v in per_stage.values()),
            "scheduling_s": sum(v["scheduling_s"] for v in per_stage.values()),
            "assign_search_s": a, "assign_search_if_quantized_once_s": a * once,
            "prefix_wall_s": prefix_wall,
            "gallery_gb_per_worker": qs["C"] * args.dim * 4 / qs["Sg"] / 1e9}


# --------------------------------------------------------------------------------------------- tables
def _s(x: float | None) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _mb(x: int | None) -> str:
    return "-" if not x else f"{x / MB:,.0f}"


def scaling_table(args: argparse.Namespace, rows: list[dict]) -> str:
    out = [f"**Measured strong scaling**: {args.n:,} faces x d={args.dim} against {args.gallery_clusters:,} clusters "
           f"({args.shards} shards), 1 worker x 1 thread vs 2 workers x 1 thread, {os.cpu_count()} cores "
           f"(efficiency = T1 / (2 T2); task CPU-s from the Dask task stream)", "",
           "| stage | tasks | 1 worker s | 2 workers s | speedup | efficiency | task CPU-s 1 w | task CPU-s 2 w "
           "| worker cores busy 1 w | 2 w | other processes' cores 1 w | 2 w |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        bold = "**" if r["stage"] in ("total", "run_day wall") else ""
        tasks = "" if r.get("tasks") is None else int(r["tasks"])
        out.append(f"| {bold}{r['stage']}{bold} | {tasks} | {_s(r['t1_s'])} | {_s(r['t2_s'])} | "
                   f"{_s(r.get('speedup'))} | {bold}{_s(r.get('efficiency'))}{bold} | "
                   f"{_s(r.get('cpu1_s'))} | {_s(r.get('cpu2_s'))} | {_s(r.get('worker_cores1'))} | "
                   f"{_s(r.get('worker_cores2'))} | {_s(r.get('other_cores1'))} | {_s(r.get('other_cores2'))} |")
    out.append("")
    out.append("Task CPU-s: the wall time of the tasks' compute (Dask task stream); worker cores busy: CPU seconds of "
               "the worker processes / stage seconds (psutil); other processes' cores: the machine's busy CPU "
               "seconds less ours (driver, scheduler, workers) / stage seconds. The efficiency compares wall times "
               "of the stages as the driver waits for them; gaps between them (count gathers) are "
               "'(between stages)', and 'run_day wall' adds the summary, report and commit.")
    return "\n".join(out)


def model_table(compute: dict, moved: dict) -> str:
    cpu = stage_sums(compute, "compute_s")
    tasks = stage_sums(compute, "tasks")
    byt = stage_sums(moved, "in_bytes")
    out = ["**Cost model** (compute from the 1-worker run, bytes from the 2-worker run)", "",
           "| stage | compute scales with | tasks | task CPU-s | MB moved |", "| --- | --- | ---: | ---: | ---: |"]
    for s in STAGES:
        out.append(f"| {s} | {MODEL_TEXT[s]} | {int(tasks.get(s, 0))} | {_s(cpu.get(s, 0.0))} | "
                   f"{byt.get(s, 0) / MB:,.1f} |")
    return "\n".join(out)


def projection_table(args: argparse.Namespace, projections: list[dict]) -> str:
    cols = [(p["worker_speedup"], p["workers"]) for p in projections]
    head = " | ".join(f"{w} w x{sp:g}" for sp, w in cols)
    qs = projections[0]["quantities"]
    out = [f"**Projection**: {args.scale_faces:,.0f} faces/day against {args.scale_clusters:,.0f} clusters, "
           f"gallery IVF{qs['nla']},Flat nprobe={args.scale_nprobe}, k-NN IVF{int(qs['nlk'])} probing "
           f"{qs['pk']:.4f}, unassigned {qs['U'] / qs['F']:.3f}, {args.net_gbps:g} Gbit/s per worker; "
           f"seconds (W workers x worker speed-up)", "",
           f"| stage | {head} |", "| --- |" + " ---: |" * len(cols)]
    for s in [x for x in STAGES if x != "assign-train"]:
        out.append(f"| {s} | " + " | ".join(_s(p["stages"][s]["wall_s"]) for p in projections) + " |")
        if s == "assign":
            for sub in ("assign-search", "gallery-index"):
                out.append(f"| ... of which {sub} | " + " | ".join(_s(p["prefix_wall_s"].get(sub))
                                                                 for p in projections) + " |")
    out.append("| **total** | " + " | ".join(f"**{_s(p['total_s'])}**" for p in projections) + " |")
    out.append("| efficiency vs 8 workers | " + " | ".join(_s(p.get("efficiency_vs_8")) for p in projections) + " |")
    out.append("| of which scheduling s | " + " | ".join(_s(p["scheduling_s"]) for p in projections) + " |")
    out.append("| tasks | " + " | ".join(f"{p['tasks']:,.0f}" for p in projections) + " |")
    out.append("| assign-search if quantized once | " + " | ".join(_s(p["assign_search_if_quantized_once_s"])
                                                         for p in projections) + " |")
    out.append("| quantizer retrain (not daily) | " + " | ".join(_s(p["retrain_quantizer"]["wall_s"])
                                                         for p in projections) + " |")
    out.append("| gallery GB per worker (centres) | " + " | ".join(_s(p["gallery_gb_per_worker"])
                                                           for p in projections) + " |")
    return "\n".join(out)


def memory_table(run: RunData, peaks: dict, overall: dict, base: dict) -> str:
    procs = sorted(overall, key=lambda p: (p != "driver", p != "scheduler", p))
    stages = [s for s in ["(setup)", *[i[0] for i in run.clock.intervals], "(between stages)", "(summary+commit)"]
              if s in peaks]
    stages = list(dict.fromkeys(stages))
    out = [f"**Peak RSS (MB) per stage**, run {run.label} ({run.workers} worker(s), {run.n:,} faces)", "",
           "| stage | " + " | ".join(procs) + " |", "| --- |" + " ---: |" * len(procs)]
    out.append("| idle before the day | " + " | ".join(_mb(base.get(p)) for p in procs) + " |")
    for s in stages:
        out.append(f"| {s} | " + " | ".join(_mb(peaks[s].get(p)) for p in procs) + " |")
    out.append("| **peak** | " + " | ".join(f"**{_mb(overall.get(p))}**" for p in procs) + " |")
    return "\n".join(out)


def sizes_table(rows: list[dict], small: RunData, big: RunData) -> str:
    def vertices(r: RunData) -> int:
        return r.result.summary["faces_valid"] - r.result.summary["assigned"]

    def edges(r: RunData) -> int:
        return r.result.summary["knn_edges"]

    out = [f"**Peak RSS (MB) per process at two day sizes** (2 workers): {small.n:,} faces ({vertices(small):,} "
           f"vertices, {edges(small):,} edges) and {big.n:,} faces ({vertices(big):,} vertices, {edges(big):,} edges): "
           f"vertices x{vertices(big) / max(1, vertices(small)):.2f}, edges x{edges(big) / max(1, edges(small)):.2f}",
           "", "| process | peak small | peak large | above idle, small | above idle, large | growth above idle |",
           "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        out.append(f"| {r['process']} | {_mb(r['peak_small'])} | {_mb(r['peak_large'])} | {_mb(r['above_idle_small'])} "
                   f"| {_mb(r['above_idle_large'])} | x{_s(r['growth_above_idle'])} |")
    out.append("")
    out.append(f"The single `components` task ran on {components_worker(small)} (small day) and "
               f"{components_worker(big)} (large day); idle = the first sample before the day.")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--backend", default="cpu", choices=["cpu", "gpu", "auto"])
    p.add_argument("--n", type=int, default=None, help="faces in the day (default 500000; --quick: 20000)")
    p.add_argument("--gallery-clusters", type=int, default=None,
                   help="clusters in the starting gallery (default 500000; --quick: 20000)")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--identities", type=int, default=0, help="synthetic population (0 = n / 5, at most the gallery)")
    p.add_argument("--shards", type=int, default=2, help="gallery shards (cluster_id %% shards)")
    p.add_argument("--cluster-count", type=int, default=10, help="faces counted per starting cluster")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1, help="runs per worker count (per stage, the fastest is kept)")
    p.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "daskcluster-bench-scaling"),
                   help="data, starting gallery and run galleries (reused when present)")
    p.add_argument("--keep", action="store_true", help="keep each run's gallery under WORKDIR/runs")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for the runs (as daskcluster run-day --set)")
    p.add_argument("--out", type=Path, default=None, help="also append the JSON lines to this file")
    p.add_argument("--quick", action="store_true", help="tiny: n=20000, gallery 20000 (for tests)")
    p.add_argument("--no-memory-quarter", dest="memory_quarter", action="store_false",
                   help="skip the n/4 day (memory at two sizes)")
    p.add_argument("--sample-period", type=float, default=0.1, help="RSS sampling period, seconds")
    p.add_argument("--probe-tasks", type=int, default=None, help="scheduler probe tasks (default 2000; quick 200)")
    # the projection
    p.add_argument("--scale-faces", type=float, default=100e6, help="faces per day at scale")
    p.add_argument("--scale-clusters", type=float, default=1e9, help="gallery clusters at scale")
    p.add_argument("--scale-workers", type=int, nargs="+", default=[8, 32, 100])
    p.add_argument("--scale-shards", type=int, default=0, help="gallery shards at scale (0 = one per worker)")
    p.add_argument("--scale-nlist", type=int, default=262_144, help="gallery IVF lists at scale")
    p.add_argument("--scale-nprobe", type=int, default=64, help="gallery IVF lists probed at scale")
    p.add_argument("--scale-knn-nlist", type=int, default=0, help="k-NN IVF lists at scale (0 = choose_index)")
    p.add_argument("--scale-knn-nprobe", type=int, default=0, help="k-NN lists probed at scale (0 = choose_index)")
    p.add_argument("--net-gbps", type=float, default=10.0, help="network bandwidth per worker, Gbit/s")
    p.add_argument("--worker-speedup", type=float, nargs="+", default=[1.0, 50.0],
                   help="production worker speed relative to the measured one (e.g. a GPU)")
    p.add_argument("--project-from", type=Path, default=None, metavar="FILE.jsonl",
                   help="run nothing: recompute the model and projection from the run records of an earlier run")
    p.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    args.argv = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--prepare-only"]
    args.n = args.n or (20_000 if args.quick else 500_000)
    args.gallery_clusters = args.gallery_clusters or (20_000 if args.quick else 500_000)
    args.probe_tasks = args.probe_tasks or (200 if args.quick else 2000)
    args.identities = min(args.identities or max(10, args.n // 5), args.gallery_clusters)
    if args.n < 1000 or args.gallery_clusters < 100 or args.shards < 1 or args.repeats < 1:
        p.error("need --n >= 1000, --gallery-clusters >= 100, --shards >= 1, --repeats >= 1")
    args.backend = resolve_backend_name(args.backend)
    return args


def make_config(args: argparse.Namespace) -> Config:
    return load_config(None, [f"backend={args.backend}", *args.overrides], environ={})


def _register_by_value() -> None:
    """Ship this module's functions and classes to the workers by value (it is not importable there)."""
    if __name__ == "__main__":
        return
    import cloudpickle

    module = sys.modules.get(__name__)
    if module is not None:
        with contextlib.suppress(ValueError):
            cloudpickle.register_pickle_by_value(module)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = make_config(args)
    if args.prepare_only:
        prepare_all(args, cfg)
        return []
    t_all = time.perf_counter()
    records: list[dict[str, Any]] = []
    if args.project_from:
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(open(args.out, "a")) if args.out else None
            tables = project_from(args, cfg, args.project_from, records, out)
        print("\n\n".join(tables), file=sys.stderr)
        return records
    _register_by_value()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    prepare_in_subprocess(args)
    out = open(args.out, "a") if args.out else None  # noqa: SIM115
    try:
        runs: dict[int, list[RunData]] = {1: [], 2: []}
        for rep in range(args.repeats):
            for w in (1, 2):
                run = run_config(args, cfg, f"w{w}-r{rep}", w, args.n)
                runs[w].append(run)
                emit(run_record(args, run), records, out)
        small = None
        if args.memory_quarter:
            small = run_config(args, cfg, "w2-quarter", 2, day_sizes(args)[1])
            emit(run_record(args, small), records, out)
        tables = report(args, cfg, runs, small, records, out)
    finally:
        if out is not None:
            out.close()
    print("\n\n".join(tables), file=sys.stderr)
    print(f"\ntotal {time.perf_counter() - t_all:.1f} s", file=sys.stderr)
    return records


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


def model_and_projection(args: argparse.Namespace, cfg: Config, rec1: dict, rec2: dict, records: list[dict],
                         out: Any) -> list[str]:
    """The ``model`` and ``projection`` records and tables, from the ``run`` records of the 1-worker run
    (compute) and the 2-worker run (bytes, scheduler throughput)."""
    p1, p2 = rec1["prefixes"], rec2["prefixes"]
    qm_c, qm_b = measured_quantities(rec1, cfg), measured_quantities(rec2, cfg)
    rate = rec2["scheduler_tasks_per_s"]
    emit(meta(args, kind="model", measured_compute_run=rec1["label"], measured_bytes_run=rec2["label"],
              quantities_measured=qm_c, quantities_measured_bytes_run=qm_b, scheduler_tasks_per_s=round(rate, 1),
              scale_faces=args.scale_faces, scale_clusters=args.scale_clusters, net_gbps=args.net_gbps,
              scale_nlist=args.scale_nlist, scale_nprobe=args.scale_nprobe,
              dot_rate_per_s=UNITS["dots_a"](qm_c) / max(p1.get("assign-search", {}).get("compute_s", 0.0), 1e-9),
              part_bytes_per_face=part_bytes_per_face(args, p2, qm_b),
              stage_model=MODEL_TEXT,
              prefix_model={p: dataclasses.asdict(m) for p, m in MODELS.items()}), records, out)
    projections = []
    for sp in args.worker_speedup:
        group = [project(args, cfg, p1, p2, qm_c, qm_b, rate, w, sp) for w in args.scale_workers]
        base = next((g for g in group if g["workers"] == 8), group[0])
        for g in group:
            g["efficiency_vs_8"] = base["workers"] * base["total_s"] / (g["workers"] * g["total_s"])
            emit(meta(args, kind="projection", **_round_tree(g)), records, out)
        projections += group
    return [model_table(p1, p2), projection_table(args, projections)]


def project_from(args: argparse.Namespace, cfg: Config, path: Path, records: list[dict], out: Any) -> list[str]:
    """Recompute the model and projection from the ``run`` records of an earlier run's JSON lines."""
    runs = [r for r in map(json.loads, Path(path).read_text().splitlines())
            if r.get("bench") == "scaling" and r.get("kind") == "run" and r.get("status") == "committed"]
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

    return model_and_projection(args, cfg, best(1), best(2), records, out)


def best_run(runs: list[RunData]) -> RunData:
    return min(runs, key=lambda r: r.result.summary.get("stage_seconds", {}).get("total", math.inf))


def report(args: argparse.Namespace, cfg: Config, runs: dict[int, list[RunData]], small: RunData | None,
           records: list[dict], out: Any) -> list[str]:
    r1, r2 = best_run(runs[1]), best_run(runs[2])
    p1, p2 = by_prefix(r1), by_prefix(r2)
    cpu1, cpu2 = stage_sums(p1, "compute_s"), stage_sums(p2, "compute_s")
    tasks1 = stage_sums(p1, "tasks")

    # (a) measured scaling, per stage: the fastest of the repeats
    def best(w: int, stage: str) -> float:
        return min(r.result.summary["stage_seconds"].get(stage, 0.0) for r in runs[w])

    use1, use2 = cpu_by_stage(r1), cpu_by_stage(r2)
    rows = []
    stages = stage_order(runs[1] + runs[2])
    for s in [*stages, "(between stages)", "total", "run_day wall"]:
        if s == "(between stages)":
            t1 = best(1, "total") - sum(best(1, x) for x in stages)
            t2 = best(2, "total") - sum(best(2, x) for x in stages)
        elif s == "run_day wall":
            t1, t2 = min(r.wall_s for r in runs[1]), min(r.wall_s for r in runs[2])
        else:
            t1, t2 = best(1, s), best(2, s)
        key = OTHER if s == "(between stages)" else s

        def per_stage(d: dict, key: str = key, s: str = s) -> float | None:
            if key in STAGES:
                return r3(d.get(key, 0.0))
            return r3(sum(d.values())) if s == "total" else None

        row = {"stage": s, "t1_s": r3(t1), "t2_s": r3(t2), "speedup": r3(t1 / t2) if t2 > 0 else None,
               "efficiency": r3(t1 / (2 * t2)) if t2 > 0 else None, "tasks": per_stage(tasks1),
               "cpu1_s": per_stage(cpu1), "cpu2_s": per_stage(cpu2)}
        for i, (run, use) in enumerate(((r1, use1), (r2, use2)), start=1):
            secs, busy = stage_use(run, use, s)
            row[f"worker_cores{i}"] = r3(busy["workers"] / secs) if secs > 0 else None
            row[f"other_cores{i}"] = r3(max(0.0, busy["machine"] - busy["ours"]) / secs) if secs > 0 else None
        rows.append(row)
        emit(meta(args, kind="scaling", **row), records, out)

    # (b) the model
    model_tables = model_and_projection(args, cfg, run_record(args, r1), run_record(args, r2), records, out)

    # (c) memory
    tables = [scaling_table(args, rows), *model_tables]
    mem_runs = [r2, r1] + ([small] if small else [])
    mems = {}
    for run in mem_runs:
        peaks, overall, base = memory_by_stage(run)
        mems[run.label] = (peaks, overall, base)
        for stage, procs in peaks.items():
            emit(meta(args, kind="memory", label=run.label, workers=run.workers, faces=run.n, stage=stage,
                      peak_rss_mb={p: round(v / MB, 1) for p, v in sorted(procs.items())}), records, out)
        tables.append(memory_table(run, peaks, overall, base))
    if small is not None:
        (_, o_s, b_s), (_, o_l, b_l) = mems[small.label], mems[r2.label]
        size_rows = []
        for proc in sorted(set(o_s) & set(o_l), key=lambda p: (p != "driver", p != "scheduler", p)):
            a_s, a_l = o_s[proc] - b_s[proc], o_l[proc] - b_l[proc]
            row = {"process": proc, "peak_small": o_s[proc], "peak_large": o_l[proc], "above_idle_small": a_s,
                   "above_idle_large": a_l, "growth_above_idle": a_l / a_s if a_s > 0 else None}
            size_rows.append(row)
            sv, lv = (r.result.summary["faces_valid"] - r.result.summary["assigned"] for r in (small, r2))
            emit(meta(args, kind="memory_sizes", process=proc, faces_small=small.n, faces_large=r2.n,
                      vertices_small=sv, vertices_large=lv, edges_small=small.result.summary["knn_edges"],
                      edges_large=r2.result.summary["knn_edges"],
                      peak_rss_mb_small=round(o_s[proc] / MB, 1), peak_rss_mb_large=round(o_l[proc] / MB, 1),
                      above_idle_mb_small=round(a_s / MB, 1), above_idle_mb_large=round(a_l / MB, 1),
                      growth_above_idle=None if row["growth_above_idle"] is None else r3(row["growth_above_idle"])),
                 records, out)
        tables.append(sizes_table(size_rows, small, r2))
    return tables


def _round_tree(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _round_tree(v) for k, v in x.items()}
    if isinstance(x, float):
        return float(f"{x:.6g}")
    return x


if __name__ == "__main__":
    main()
