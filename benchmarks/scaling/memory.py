"""Memory and CPU sampling of the scaling benchmark's processes (package docstring, part (c)).

A :class:`Sampler` thread records RSS and CPU time in every worker (:class:`RssPlugin`), in the scheduler and in
the driver; the samples are attributed to the stage the driver was waiting for (``StageClock.stage_at``). The
plugin and the functions run on the workers are found there by import (``benchmarks`` is importable on the
workers of a LocalCluster started from the repository root).
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from distributed import WorkerPlugin

if TYPE_CHECKING:
    from benchmarks.scaling.run import RunData

SAMPLER = "bench-scaling-rss"
MB = 2**20


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
            return (
                c.user
                + c.nice
                + c.system
                + getattr(c, "irq", 0.0)
                + getattr(c, "softirq", 0.0)
                + getattr(c, "steal", 0.0)
            )

        def loop() -> None:
            while True:
                cpu = proc.cpu_times()
                self.samples.append(
                    (time.time(), proc.memory_info().rss, cpu.user + cpu.system, busy() if self.machine else None)
                )
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


def worker_samples(dask_worker: Any) -> list:
    """(``client.run``) the worker's samples so far."""
    return dask_worker.plugins[SAMPLER].sampler.take()


def start_scheduler_sampler(period: float, dask_scheduler: Any = None) -> int:
    """(``client.run_on_scheduler``) start sampling the scheduler's process; its pid."""
    dask_scheduler._bench_rss = Sampler(period).start()
    return os.getpid()


def scheduler_samples(dask_scheduler: Any = None) -> list:
    """(``client.run_on_scheduler``) stop sampling the scheduler; its samples."""
    sampler = dask_scheduler._bench_rss
    sampler.stop()
    return sampler.take()


def process_order(proc: str) -> tuple:
    """Driver, scheduler, then the workers by name."""
    return proc != "driver", proc != "scheduler", proc


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


def memory_fields(run: RunData, peaks: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """The ``memory`` records' fields of one run: one per stage, the peak RSS (MB) of every process."""
    return [
        dict(
            kind="memory",
            label=run.label,
            workers=run.workers,
            faces=run.n,
            stage=stage,
            peak_rss_mb={p: round(v / MB, 1) for p, v in sorted(procs.items())},
        )
        for stage, procs in peaks.items()
    ]


def vertices(run: RunData) -> int:
    return run.result.summary["faces_valid"] - run.result.summary["assigned"]


def size_rows(small: RunData, big: RunData, mems: dict[str, tuple]) -> list[dict[str, Any]]:
    """Per process: peaks of the small and the large day, above the idle baseline, and the growth."""
    (_, o_s, b_s), (_, o_l, b_l) = mems[small.label], mems[big.label]
    rows = []
    for proc in sorted(set(o_s) & set(o_l), key=process_order):
        a_s, a_l = o_s[proc] - b_s[proc], o_l[proc] - b_l[proc]
        rows.append(
            {
                "process": proc,
                "peak_small": o_s[proc],
                "peak_large": o_l[proc],
                "above_idle_small": a_s,
                "above_idle_large": a_l,
                "growth_above_idle": a_l / a_s if a_s > 0 else None,
            }
        )
    return rows


def size_fields(row: dict[str, Any], small: RunData, big: RunData) -> dict[str, Any]:
    """The ``memory_sizes`` record's fields of one process (a row of :func:`size_rows`)."""
    growth = row["growth_above_idle"]
    return dict(
        kind="memory_sizes",
        process=row["process"],
        faces_small=small.n,
        faces_large=big.n,
        vertices_small=vertices(small),
        vertices_large=vertices(big),
        edges_small=small.result.summary["knn_edges"],
        edges_large=big.result.summary["knn_edges"],
        peak_rss_mb_small=round(row["peak_small"] / MB, 1),
        peak_rss_mb_large=round(row["peak_large"] / MB, 1),
        above_idle_mb_small=round(row["above_idle_small"] / MB, 1),
        above_idle_mb_large=round(row["above_idle_large"] / MB, 1),
        growth_above_idle=None if growth is None else round(float(growth), 3),
    )
