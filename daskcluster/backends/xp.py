"""The few array operations the blocked IVF and the components kernel need beyond what numpy and CuPy share.

The search (``ivf``, ``candidates``) and the components (``components``) are written once over an array module
``xp``, numpy on the CPU and CuPy on a GPU: ``xp.matmul``, ``xp.flatnonzero``, ``xp.partition``,
``xp.searchsorted``... behave alike in both. Where the two differ, the function here does the same thing in
each:

- ``repeat``: CuPy's ``repeat`` takes no array of counts;
- ``lexsort``, ``argsort``: CuPy's ``lexsort`` sorts one key array of one dtype, and its sorts, always
  stable, take no ``kind``;
- ``scatter_min``: ``np.minimum.at`` is ``cupyx.scatter_min`` on the device;
- ``to_host``: what leaves the device is a numpy array.

This module never imports CuPy itself: :func:`namespace` finds it through the arrays it is given.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["argsort", "is_device", "lexsort", "namespace", "repeat", "scatter_min", "to_host"]


def namespace(*arrays: Any) -> ModuleType:
    """The array module of ``arrays``: CuPy when any of them is a CuPy array, else numpy."""
    for a in arrays:
        module = type(a).__module__
        if module.startswith("cupy"):
            import cupy

            return cupy
    return np


def is_device(xp: ModuleType) -> bool:
    return xp is not np


def to_host(a: Any) -> np.ndarray:
    """``a`` as a numpy array (a copy off the device for a CuPy array; numpy arrays as they are)."""
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)


def repeat(xp: ModuleType, values: Any, counts: Any) -> Any:
    """``values[i]`` repeated ``counts[i]`` times, in order (1-d)."""
    if xp is np:
        return np.repeat(values, counts)
    ends = xp.cumsum(counts)
    total = int(ends[-1]) if len(ends) else 0
    return values[xp.searchsorted(ends, xp.arange(total), side="right")]


def lexsort(xp: ModuleType, keys: tuple) -> Any:
    """Indices sorting by ``keys``, the last the primary key, as ``np.lexsort`` (stable)."""
    if xp is np:
        return np.lexsort(keys)
    order = xp.argsort(keys[0])  # CuPy sorts stably, and takes no ``kind``
    for key in keys[1:]:
        order = order[xp.argsort(key[order])]
    return order


def argsort(xp: ModuleType, a: Any, axis: int = -1) -> Any:
    """A stable argsort (CuPy's always is, and takes no ``kind`` in older releases)."""
    if xp is np:
        return np.argsort(a, axis=axis, kind="stable")
    return xp.argsort(a, axis=axis)


def scatter_min(xp: ModuleType, target: Any, index: Any, values: Any) -> None:
    """``target[index[i]] = min(target[index[i]], values[i])`` for every i, repeats included (in place)."""
    if xp is np:
        np.minimum.at(target, index, values)
        return
    import cupyx

    cupyx.scatter_min(target, index, values)
