"""Running a day's stages on a Dask client: task naming and placement, progress, tree reductions.

The driver holds futures and small counts; data stays on the workers.
"""
from __future__ import annotations

import logging
import operator
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from distributed import Client, Future, as_completed, wait

from daskcluster.config import Config
from daskcluster.run.plan import DayPlan, output_dirs

log = logging.getLogger(__name__)

FAN_IN = 8  # inputs per reduction task


class Progress(Protocol):
    def start(self, stage: str, total: int) -> None: ...
    def advance(self, stage: str) -> None: ...
    def finish(self, stage: str, seconds: float) -> None: ...


class NullProgress:
    def start(self, stage: str, total: int) -> None:
        log.info("stage %s: %d tasks", stage, total)

    def advance(self, stage: str) -> None:
        pass

    def finish(self, stage: str, seconds: float) -> None:
        log.info("stage %s done in %.2f s", stage, seconds)


@dataclass
class DayState:
    """Futures and driver-side counts threaded through the stages."""

    parts: list[Future] = field(default_factory=list)
    tables: list[Future] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    new_quantizer: tuple[Future, int] | None = None
    knn_centroids: Future | None = None
    new_mean: Future | None = None  # the centring mean learned on the gallery's first day
    rest: list[Future] = field(default_factory=list)  # per partition, its unassigned faces alone


class DayRunner:
    """Runs the stages of one planned day on a Dask client."""

    def __init__(self, client: Client, cfg: Config, plan: DayPlan, progress: Progress | None = None):
        self.client, self.cfg, self.plan = client, cfg, plan
        self.progress = progress or NullProgress()
        self.token = uuid.uuid4().hex
        self.state = DayState()
        self.dirs = {k: str(plan.gallery / v) for k, v in output_dirs(plan).items()}
        self.backend = cfg.backend

    def submit(self, name: str, fn: Callable, *args: Any, **kwargs: Any) -> Future:
        """Submit a task whose dashboard name is ``name``."""
        return self.client.submit(fn, *args, key=f"{name}-{self.token}-{uuid.uuid4().hex[:8]}", **kwargs)

    def submit_at(self, worker: str | None, name: str, fn: Callable, *args: Any, **kwargs: Any) -> Future:
        """Submit to run where ``worker`` is (a preference: if it died, anywhere)."""
        where = {"workers": [worker], "allow_other_workers": True} if worker else {}
        return self.submit(name, fn, *args, **where, **kwargs)

    def spread(self, name: str, fn: Callable, arg_lists: list[tuple]) -> list[Future]:
        """One task per argument tuple, placed round-robin on the workers (for shards: one load each)."""
        workers = sorted(self.client.scheduler_info().get("workers", {})) or [None]
        return [self.submit_at(workers[i % len(workers)], name, fn, *args) for i, args in enumerate(arg_lists)]

    def homes(self, futures: list[Future]) -> list[str | None]:
        """The worker holding each future (waiting for them first)."""
        wait(futures)
        who = self.client.who_has(futures)
        return [min(who.get(f.key, ()), default=None) for f in futures]

    def wait(self, stage: str, futures: list[Future]) -> list[Future]:
        """Wait for a stage's tasks, reporting progress; re-raises the first task error."""
        t0 = time.perf_counter()
        self.progress.start(stage, len(futures))
        for fut in as_completed(futures):
            if fut.status == "error":
                fut.result()
            self.progress.advance(stage)
        seconds = time.perf_counter() - t0
        self.state.timings[stage] = self.state.timings.get(stage, 0.0) + seconds
        self.progress.finish(stage, seconds)
        return futures

    def gather(self, futures: list[Future]) -> list[Any]:
        return self.client.gather(futures)

    def pick(self, name: str, fut: Future, i: int) -> Future:
        return self.submit(name, operator.getitem, fut, i)

    def tree_reduce(self, name: str, fn: Callable, futures: list[Future], *args: Any) -> Future:
        """Combine ``futures`` with ``fn(list, *args)`` in rounds of at most ``FAN_IN``: no task receives
        more than ``FAN_IN`` inputs, whatever the number of shards or partitions."""
        while len(futures) > 1:
            futures = [self.submit(name, fn, futures[i:i + FAN_IN], *args) for i in range(0, len(futures), FAN_IN)]
        return futures[0]


