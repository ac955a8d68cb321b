"""Partition-independent sampling: rows chosen by a fixed hash of their ids, so any partitioning of the same rows
yields the same sample."""

from __future__ import annotations

import numpy as np

__all__ = ["id_hash", "merge_samples", "sample_rows"]

_HASH_MULT = np.uint64(0x9E3779B97F4A7C15)


def id_hash(ids: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random 64-bit hash of int64 ids (splitmix-style), for partition-independent sampling."""
    x = ids.astype(np.uint64) * _HASH_MULT
    x ^= x >> np.uint64(31)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(29)
    return x


def sample_rows(ids: np.ndarray, x: np.ndarray, n_max: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n_max`` rows with the smallest id hash: ``(hashes, x rows)``. Merging such samples from any
    partitioning and keeping the ``n_max`` smallest hashes gives the same global sample."""
    h = id_hash(ids)
    keep = np.argsort(h, kind="stable")[:n_max]
    return h[keep], x[keep]


def merge_samples(samples: list[tuple[np.ndarray, np.ndarray]], n_max: int) -> np.ndarray:
    """The global sample of ``n_max`` rows from per-partition samples (see :func:`sample_rows`)."""
    h = np.concatenate([s[0] for s in samples])
    x = np.concatenate([s[1] for s in samples])
    return x[np.argsort(h, kind="stable")[:n_max]]
