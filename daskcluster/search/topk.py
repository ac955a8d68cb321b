"""Top-k lists: merging per-shard results and measuring edge recall."""

from __future__ import annotations

import numpy as np

__all__ = ["edge_recall", "merge_topk"]


def merge_topk(results: list[tuple[np.ndarray, ...]], k: int) -> tuple[np.ndarray, ...]:
    """Merge per-shard top-k lists ``(D, I, *extra)`` of the same queries; ties are broken by the smaller id, so
    the result does not depend on the order or number of shards. ``extra`` arrays (e.g. the neighbours' sizes)
    are carried along in the same order."""
    if len(results) == 1:
        return tuple(a[:, :k] for a in results[0])
    columns = [np.concatenate([r[j] for r in results], axis=1) for j in range(len(results[0]))]
    D, I = columns[0], columns[1]
    id_key = np.where(I >= 0, I, np.iinfo(np.int64).max)
    order = np.lexsort((id_key, -D.astype(np.float64)), axis=1)[:, :k]
    return tuple(np.take_along_axis(a, order, axis=1) for a in columns)


def edge_recall(
    approx: tuple[np.ndarray, np.ndarray],
    exact: tuple[np.ndarray, np.ndarray],
    threshold: float,
    self_ids: np.ndarray | None = None,
) -> tuple[int, int]:
    """How many of the exact top-k edges ``(query, id)`` with similarity >= ``threshold`` the approximate
    top-k also holds, by id: ``(found, total)``. ``self_ids`` (each query's own id) are not edges."""
    D, I = exact
    want = (D >= threshold) & (I >= 0)
    if self_ids is not None:
        want &= I != self_ids[:, None]
    hit = (I[:, :, None] == approx[1][:, None, :]).any(axis=2) & want
    return int(hit.sum()), int(want.sum())
