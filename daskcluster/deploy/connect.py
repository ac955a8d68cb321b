"""Connecting to Dask: the backend's local cluster started for the run, or an existing scheduler."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator

from distributed import Client, WorkerPlugin

from daskcluster.backends import get_backend
from daskcluster.config import DaskConfig

log = logging.getLogger(__name__)


def free_port(preferred: int, tries: int = 100) -> int:
    """``preferred`` if it is free, else the next free port above it (0 means any)."""
    if preferred == 0:
        return 0
    for port in range(preferred, preferred + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("", port))
            except OSError:
                continue
            return port
    return 0


def default_layout(cfg: DaskConfig, workers: int | None) -> tuple[int, int]:
    """(workers, threads per worker) that fit this machine unless configured."""
    cores = os.cpu_count() or 1
    n_workers = workers or cfg.workers or max(1, min(cores, 8))
    threads = cfg.threads_per_worker or max(1, cores // n_workers)
    return n_workers, threads


class BackendThreads(WorkerPlugin):
    """Give the backend's compute libraries (faiss's OpenMP pool) the worker's share of cores, on every worker,
    restarted ones included."""

    name = "daskcluster-backend-threads"

    def __init__(self, backend: str, threads: int):
        self.backend, self.threads = backend, threads

    def setup(self, worker) -> None:
        get_backend(self.backend).set_threads(self.threads)


@contextlib.contextmanager
def connect(
    cfg: DaskConfig, scheduler: str | None = None, workers: int | None = None, backend: str = "cpu"
) -> Iterator[Client]:
    """A Client on ``scheduler``, or on the ``backend``'s local cluster started (and stopped) here."""
    if scheduler:
        with Client(scheduler) as client:
            client.register_plugin(BackendThreads(backend, 1))
            yield client
        return
    n_workers, threads = default_layout(cfg, workers)
    port = free_port(cfg.dashboard_port)
    local = get_backend(backend).local_cluster(
        n_workers, threads, cfg.memory_limit, f":{port}", cfg.rmm_pool_size, cfg.protocol
    )
    with local, Client(local) as client:
        client.register_plugin(BackendThreads(backend, max(1, (os.cpu_count() or 1) // (n_workers * threads))))
        log.info("local Dask cluster: %d workers x %d threads", n_workers, threads)
        yield client
