"""Compute backends: one small interface, a CPU and a GPU implementation.

Stage code only ever sees :class:`~daskcluster.backends.base.Backend`. GPU libraries are imported lazily
inside :mod:`daskcluster.backends.gpu`, never when the package is imported.
"""

from __future__ import annotations

import functools
import importlib.util

from daskcluster.backends.base import Backend

__all__ = ["Backend", "get_backend", "partition_mb", "resolve_backend_name"]


def _gpu_available() -> bool:
    for name in ("cupy", "faiss", "cugraph"):
        if importlib.util.find_spec(name) is None:
            return False
    from daskcluster.backends.gpu import gpu_count  # lazy: imports cupy only here

    return gpu_count() > 0


def resolve_backend_name(name: str) -> str:
    """Turn ``auto`` into ``cpu`` or ``gpu``; checks that ``gpu`` can work."""
    if name == "auto":
        return "gpu" if _gpu_available() else "cpu"
    if name not in ("cpu", "gpu"):
        raise ValueError(f"backend must be auto, cpu or gpu, not {name!r}")
    return name


@functools.cache
def get_backend(name: str) -> Backend:
    """The backend instance for ``cpu`` or ``gpu`` (cached per process, so per Dask worker)."""
    resolved = resolve_backend_name(name)
    if resolved == "gpu":
        from daskcluster.backends.gpu import GpuBackend

        return GpuBackend()
    from daskcluster.backends.cpu import CpuBackend

    return CpuBackend()


def partition_mb(name: str) -> float:
    """Feature MB per partition that suits the backend ``name`` (what ``ingest.partition_mb: 0`` means)."""
    return get_backend(name).partition_mb
