"""The seam the jobs are written against: submit, map, tree-reduce, gather, wait.

Two implementations: :class:`DaskExecutor` runs every task on a Dask cluster (the driver holds futures and small
counts; data stays on the workers), :class:`InProcessExecutor` runs them at once in this process (calibration
sweeps, the benchmarks, unit tests). The jobs never know which one they have, so what runs in process is the
very orchestration that runs on the cluster.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from daskcluster.run.tasks import TASK_STAGE

log = logging.getLogger(__name__)

__all__ = ["FAN_IN", "DaskExecutor", "Done", "Executor", "InProcessExecutor", "NullProgress", "Progress", "as_executor"]

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


class Executor:
    """What the jobs ask of a place to run tasks. A *handle* is what :meth:`submit` returns; handles may be
    passed, also inside lists, tuples and dicts, as arguments of later tasks.

    Every task has a name from :data:`daskcluster.run.tasks.STAGE_TASKS` (its dashboard name)."""

    def __init__(self, progress: Progress | None = None):
        self.progress = progress or NullProgress()
        self.token = uuid.uuid4().hex
        self.timings: dict[str, float] = {}
        self.tasks: dict[str, int] = {}  # tasks submitted, per stage (daskcluster.run.tasks)

    def submit(self, name: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        return self.submit_at(None, name, fn, *args, **kwargs)

    def submit_at(self, worker: str | None, name: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` where ``worker`` is, when there is such a place (a preference)."""
        raise NotImplementedError

    def workers(self) -> list[str | None]:
        return [None]

    def homes(self, handles: list) -> list[str | None]:
        """Where each handle's value lives (after waiting for it); None where placement has no meaning."""
        return [None] * len(handles)

    def gather(self, handles: Any) -> Any:
        raise NotImplementedError

    def scatter(self, value: Any) -> Any:
        """A handle of ``value``, for one value that many tasks take."""
        raise NotImplementedError

    def _wait_each(self, stage: str, handles: list) -> None:
        raise NotImplementedError

    def spread(self, name: str, fn: Callable, arg_lists: list[tuple]) -> list:
        """One task per argument tuple, placed round-robin on the workers (for shards: one load each)."""
        workers = self.workers()
        return [self.submit_at(workers[i % len(workers)], name, fn, *args) for i, args in enumerate(arg_lists)]

    def wait(self, stage: str, handles: list) -> list:
        """Wait for a stage's tasks, reporting progress and adding to ``timings[stage]``; re-raises the first
        task error."""
        t0 = time.perf_counter()
        self.progress.start(stage, len(handles))
        self._wait_each(stage, handles)
        seconds = time.perf_counter() - t0
        self.timings[stage] = self.timings.get(stage, 0.0) + seconds
        self.progress.finish(stage, seconds)
        return handles

    def pick(self, name: str, handle: Any, i: int) -> Any:
        return self.submit(name, operator.getitem, handle, i)

    def tree_reduce(self, name: str, fn: Callable, handles: list, *args: Any) -> Any:
        """Combine ``handles`` with ``fn(list, *args)`` in rounds of at most ``FAN_IN``: no task receives more
        than ``FAN_IN`` inputs, whatever the number of shards or partitions."""
        while len(handles) > 1:
            handles = [self.submit(name, fn, handles[i : i + FAN_IN], *args) for i in range(0, len(handles), FAN_IN)]
        return handles[0]

    def current(self) -> contextlib.AbstractContextManager:
        """A context in which the executor's tasks run (a Dask client made current)."""
        return contextlib.nullcontext()

    def report(self, filename: str) -> contextlib.AbstractContextManager:
        """A context whose tasks are profiled into the HTML file ``filename``, where the executor can."""
        return contextlib.nullcontext()

    def _key(self, name: str) -> str:
        if name not in TASK_STAGE:
            raise ValueError(f"task name {name!r} is not in daskcluster.run.tasks.STAGE_TASKS")
        stage = TASK_STAGE[name]
        self.tasks[stage] = self.tasks.get(stage, 0) + 1
        return f"{name}-{self.token}-{uuid.uuid4().hex[:8]}"


class DaskExecutor(Executor):
    """Tasks on a Dask cluster, through ``client``."""

    def __init__(self, client: Any, progress: Progress | None = None):
        super().__init__(progress)
        self.client = client

    def submit_at(self, worker: str | None, name: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """A preference: if ``worker`` died, the task runs anywhere."""
        where = {"workers": [worker], "allow_other_workers": True} if worker else {}
        return self.client.submit(fn, *args, key=self._key(name), **where, **kwargs)

    def workers(self) -> list[str | None]:
        return sorted(self.client.scheduler_info().get("workers", {})) or [None]

    def homes(self, handles: list) -> list[str | None]:
        from distributed import wait

        wait(handles)
        who = self.client.who_has(handles)
        return [min(who.get(f.key, ()), default=None) for f in handles]

    def _wait_each(self, stage: str, handles: list) -> None:
        from distributed import as_completed

        for fut in as_completed(handles):
            if fut.status == "error":
                fut.result()
            self.progress.advance(stage)

    def gather(self, handles: Any) -> Any:
        return self.client.gather(handles)

    def current(self) -> contextlib.AbstractContextManager:
        return self.client.as_current()

    def report(self, filename: str) -> contextlib.AbstractContextManager:
        from distributed import performance_report

        if "://" not in filename:
            return performance_report(filename=filename)
        return _uploaded_report(filename)

    def scatter(self, value: Any) -> Any:
        return self.client.scatter(value)


@contextlib.contextmanager
def _uploaded_report(url: str):
    """Dask's performance report, written locally and then to ``url`` (an object store)."""
    import tempfile

    from distributed import performance_report

    from daskcluster.gallery.store import atomic_write_bytes

    with tempfile.TemporaryDirectory() as tmp:
        local = f"{tmp}/dask-report.html"
        with performance_report(filename=local):
            yield
        with open(local, "rb") as fh:
            atomic_write_bytes(url, fh.read())


class Done:
    """The handle of a task the in-process executor has run: its value."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


def _resolve(obj: Any) -> Any:
    if isinstance(obj, Done):
        return obj.value
    if type(obj) in (list, tuple):
        return type(obj)(_resolve(o) for o in obj)
    if type(obj) is dict:
        return {k: _resolve(v) for k, v in obj.items()}
    return obj


class InProcessExecutor(Executor):
    """Tasks run here, when submitted, in submission order (errors raise at once)."""

    def submit_at(self, worker: str | None, name: str, fn: Callable, *args: Any, **kwargs: Any) -> Done:
        self._key(name)
        return Done(fn(*_resolve(args), **_resolve(kwargs)))

    def _wait_each(self, stage: str, handles: list) -> None:
        for _ in handles:
            self.progress.advance(stage)

    def gather(self, handles: Any) -> Any:
        return _resolve(handles)

    def scatter(self, value: Any) -> Done:
        return Done(value)


def as_executor(where: Any, progress: Progress | None = None) -> Executor:
    """``where`` if it is an executor, else a :class:`DaskExecutor` on it (a ``distributed.Client``)."""
    if isinstance(where, Executor):
        if progress is not None:
            where.progress = progress
        return where
    return DaskExecutor(where, progress)
