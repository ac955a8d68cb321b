"""Compute backends: one small interface, a CPU and a GPU implementation.

Stage code only ever sees :class:`~daskcluster.backends.base.Backend`. GPU libraries are imported lazily
inside :mod:`daskcluster.backends.gpu`, never when the package is imported.
"""

from __future__ import annotations

import functools
import importlib.util

from daskcluster.backends.base import Backend
from daskcluster.config import ConfigError

__all__ = ["Backend", "BackendUnavailable", "get_backend", "gpu_problem", "partition_mb", "resolve_backend_name"]


class BackendUnavailable(ConfigError):
    """``backend: gpu`` on a machine where the GPU backend cannot run (raised before any work)."""


@functools.cache
def gpu_problem() -> str | None:
    """Why the GPU backend cannot run in this process, or None when it can. The GPU backend needs CuPy and
    one working CUDA device; faiss-gpu, cuGraph and dask-cuda are used where present, and CuPy kernels of
    the same algorithms (``daskcluster.backends.xp``) stand in for them where not."""
    if importlib.util.find_spec("cupy") is None:
        return "CuPy is not installed (install the [gpu] extra)"
    from daskcluster.backends.gpu import device_problem  # lazy: imports cupy only here

    return device_problem()


def resolve_backend_name(name: str) -> str:
    """Turn ``auto`` into ``cpu`` or ``gpu``; refuses ``gpu`` (:class:`BackendUnavailable`) where it cannot
    run, so a GPU day fails at once rather than on its first task."""
    if name == "auto":
        return "gpu" if gpu_problem() is None else "cpu"
    if name not in ("cpu", "gpu"):
        raise ConfigError(f"backend must be auto, cpu or gpu, not {name!r}")
    if name == "gpu" and (problem := gpu_problem()) is not None:
        raise BackendUnavailable(f"backend gpu cannot run here: {problem}; use --set backend=cpu (or auto)")
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
    """Feature MB per partition that suits the backend ``name`` (what ``ingest.partition_mb: 0`` means). A
    property of the backend's class, so asking it needs no device (the planner may run off the GPU host)."""
    if (name if name == "gpu" else resolve_backend_name(name)) == "gpu":
        from daskcluster.backends.gpu import GpuBackend  # the module imports no GPU library itself

        return GpuBackend.partition_mb
    from daskcluster.backends.cpu import CpuBackend

    return CpuBackend.partition_mb
