"""External clustering-quality metrics computed from a sparse contingency table.

Every metric is derived from the sparse contingency table ``C`` (rows: true
classes, columns: predicted clusters, ``C[i, j] = n_ij`` = number of items of
class ``i`` placed in cluster ``j``) and its marginals, with vectorised numpy
operations only, so that tens of millions of labels are evaluated in seconds.

Labels may be of any hashable dtype that :func:`pandas.factorize` understands
(ints, floats, strings, objects, categoricals).  Missing labels (``NaN``,
``None``, ``NaT``) are rejected with a :class:`ValueError`.

Conventions for degenerate cases
--------------------------------
* Pairwise precision is ``1.0`` when the prediction has no same-cluster pairs
  (all singletons): no false-positive pair was predicted.  Symmetrically,
  pairwise recall is ``1.0`` when the ground truth has no same-class pairs.
  So an all-singleton prediction against a truth with pairs scores
  ``P = 1.0, R = 0.0, F = 0.0``; all-singletons against all-singletons scores
  ``1.0`` everywhere.
* Any F score is ``0.0`` when precision and recall are both ``0``.
* B-cubed precision/recall are always well-defined and positive (``n >= 1``).
* NMI (arithmetic-mean normalisation, as scikit-learn's default) is ``1.0``
  when both labelings are a single cluster, or more generally when the two
  partitions are identical up to renaming (checked exactly on the table);
  it is ``0.0`` when the mutual information is zero (e.g. exactly one side
  is a single cluster).  The result is clipped to ``[0, 1]``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["SCORES", "bcubed", "cluster_stats", "contingency", "evaluate", "nmi", "pairwise"]

# the scores of :func:`evaluate` (its other keys are counts)
SCORES = ("bcubed_precision", "bcubed_recall", "bcubed_f", "pairwise_precision", "pairwise_recall", "pairwise_f", "nmi")

_ArrayLikeTypes = (np.ndarray, pd.Series, pd.Index, pd.api.extensions.ExtensionArray)


class _Table(NamedTuple):
    """Non-zero cells of a contingency table plus its marginals."""

    n: int
    rows: np.ndarray  # true-class index of each non-zero cell
    cols: np.ndarray  # predicted-cluster index of each non-zero cell
    counts: np.ndarray  # n_ij (int64) of each non-zero cell
    class_sizes: np.ndarray  # |class i| (int64)
    cluster_sizes: np.ndarray  # |cluster j| (int64)


def _encode(labels: Any, name: str) -> np.ndarray:
    """Validate one label vector and return its dense integer codes (0..k-1)."""
    if not isinstance(labels, _ArrayLikeTypes):
        if np.isscalar(labels) or labels is None:
            raise ValueError(f"{name} must be a 1-D sequence of labels, got a scalar")
        labels = pd.Series(labels if isinstance(labels, (list, tuple)) else list(labels))
    if getattr(labels, "ndim", 1) != 1:
        raise ValueError(f"{name} must be 1-D, got an array with {labels.ndim} dimensions")
    if len(labels) == 0:
        raise ValueError(f"{name} is empty: need at least one label")
    codes, _ = pd.factorize(labels, sort=False, use_na_sentinel=True)
    missing = int(np.count_nonzero(codes < 0))
    if missing:
        raise ValueError(f"{name} contains {missing} missing (NaN/None) label(s); every item needs a label")
    return np.asarray(codes, dtype=np.int64)


def _encode_pair(labels_true: Any, labels_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """Encode both label vectors and check that they have the same length."""
    codes_true = _encode(labels_true, "labels_true")
    codes_pred = _encode(labels_pred, "labels_pred")
    if codes_true.shape[0] != codes_pred.shape[0]:
        raise ValueError(
            f"labels_true and labels_pred have different lengths ({codes_true.shape[0]} != {codes_pred.shape[0]})"
        )
    return codes_true, codes_pred


def _contingency_from_codes(codes_true: np.ndarray, codes_pred: np.ndarray) -> sp.csr_matrix:
    """Build the canonical (duplicates summed, sorted) CSR contingency table from codes."""
    shape = (int(codes_true.max()) + 1, int(codes_pred.max()) + 1)
    ones = np.ones(codes_true.shape[0], dtype=np.int64)
    table = sp.coo_matrix((ones, (codes_true, codes_pred)), shape=shape).tocsr()
    table.sum_duplicates()  # no-op if tocsr already canonicalised; guarantees it otherwise
    return table


def _table(table: sp.csr_matrix) -> _Table:
    """Extract non-zero cells and marginals of a CSR contingency table."""
    counts = table.data.astype(np.int64, copy=False)
    rows = np.repeat(np.arange(table.shape[0], dtype=np.int64), np.diff(table.indptr))
    cols = table.indices.astype(np.int64, copy=False)
    class_sizes = np.asarray(table.sum(axis=1), dtype=np.int64).ravel()
    cluster_sizes = np.asarray(table.sum(axis=0), dtype=np.int64).ravel()
    return _Table(int(counts.sum()), rows, cols, counts, class_sizes, cluster_sizes)


def _harmonic(precision: float, recall: float) -> float:
    """Harmonic mean of precision and recall; 0.0 when both are 0."""
    total = precision + recall
    return 0.0 if total == 0 else 2.0 * precision * recall / total


def _comb2(x: np.ndarray) -> int:
    """Sum of C(x, 2) over an int64 array, exactly, as a Python int."""
    x = x.astype(np.int64, copy=False)
    return int(np.sum(x * (x - 1) // 2, dtype=np.int64))


def _bcubed(t: _Table) -> tuple[float, float, float]:
    """B-cubed precision, recall and F from table cells."""
    sq = t.counts.astype(np.float64) ** 2
    precision = float(np.sum(sq / t.cluster_sizes[t.cols]) / t.n)
    recall = float(np.sum(sq / t.class_sizes[t.rows]) / t.n)
    return precision, recall, _harmonic(precision, recall)


def _pairwise(t: _Table) -> tuple[float, float, float]:
    """Pairwise precision, recall and F from table cells (see module docstring for 0/0)."""
    true_pos = _comb2(t.counts)
    pred_pairs = _comb2(t.cluster_sizes)
    true_pairs = _comb2(t.class_sizes)
    precision = 1.0 if pred_pairs == 0 else true_pos / pred_pairs
    recall = 1.0 if true_pairs == 0 else true_pos / true_pairs
    return precision, recall, _harmonic(precision, recall)


def _entropy(sizes: np.ndarray, n: int) -> float:
    """Shannon entropy (nats) of a partition given its block sizes."""
    sizes = sizes[sizes > 0].astype(np.float64)
    return float(np.log(n) - np.sum(sizes * np.log(sizes)) / n)


def _nmi(t: _Table) -> float:
    """Arithmetic-mean NMI from table cells (see module docstring for degenerate cases)."""
    k_true, k_pred = t.class_sizes.shape[0], t.cluster_sizes.shape[0]
    if k_true == k_pred == t.counts.shape[0]:  # identical partitions up to renaming
        return 1.0
    counts = t.counts.astype(np.float64)
    log_ratio = (
        np.log(counts)
        + np.log(t.n)
        - np.log(t.class_sizes[t.rows].astype(np.float64))
        - np.log(t.cluster_sizes[t.cols].astype(np.float64))
    )
    mi = float(np.sum(counts * log_ratio) / t.n)
    if mi <= 0.0:
        return 0.0
    denominator = 0.5 * (_entropy(t.class_sizes, t.n) + _entropy(t.cluster_sizes, t.n))
    return float(min(1.0, mi / max(denominator, np.finfo(np.float64).eps)))


def _stats(cluster_sizes: np.ndarray) -> dict[str, int]:
    """Summary statistics of a partition given its (non-empty) cluster sizes."""
    return {
        "n": int(cluster_sizes.sum()),
        "n_clusters": int(cluster_sizes.shape[0]),
        "n_singletons": int(np.count_nonzero(cluster_sizes == 1)),
        "largest_cluster": int(cluster_sizes.max()),
    }


def _table_from_labels(labels_true: Any, labels_pred: Any) -> _Table:
    """Validate, encode and tabulate two labelings."""
    return _table(contingency(labels_true, labels_pred))


def contingency(labels_true: Any, labels_pred: Any) -> sp.csr_matrix:
    """Sparse contingency table of two labelings.

    Rows are true classes and columns predicted clusters, both in order of first
    appearance (as :func:`pandas.factorize` with ``sort=False``); entry ``(i, j)``
    is the number of items with true class ``i`` and predicted cluster ``j``.
    The matrix is canonical (duplicates summed, indices sorted) with int64 data.
    """
    codes_true, codes_pred = _encode_pair(labels_true, labels_pred)
    return _contingency_from_codes(codes_true, codes_pred)


def bcubed(labels_true: Any, labels_pred: Any) -> tuple[float, float, float]:
    """B-cubed ``(precision, recall, F)``.

    precision = (1/n) * sum_ij n_ij^2 / |cluster j|,
    recall = (1/n) * sum_ij n_ij^2 / |class i|, F = harmonic mean.
    """
    return _bcubed(_table_from_labels(labels_true, labels_pred))


def pairwise(labels_true: Any, labels_pred: Any) -> tuple[float, float, float]:
    """Pairwise ``(precision, recall, F)`` over unordered same-cluster item pairs.

    TP = sum_ij C(n_ij, 2); precision = TP / sum_j C(|cluster j|, 2);
    recall = TP / sum_i C(|class i|, 2).  Exact int64 pair counts.  When the
    prediction (truth) has no pairs, precision (recall) is 1.0 by convention.
    """
    return _pairwise(_table_from_labels(labels_true, labels_pred))


def nmi(labels_true: Any, labels_pred: Any) -> float:
    """Normalised mutual information, ``MI / ((H_true + H_pred) / 2)``.

    Matches scikit-learn's ``normalized_mutual_info_score`` default.  Returns 1.0
    for identical partitions (incl. both single-cluster) and 0.0 when MI is 0.
    """
    return _nmi(_table_from_labels(labels_true, labels_pred))


def cluster_stats(labels_pred: Any) -> dict[str, int]:
    """Sizes summary of a labeling: ``n``, ``n_clusters``, ``n_singletons``, ``largest_cluster``."""
    codes = _encode(labels_pred, "labels_pred")
    return _stats(np.bincount(codes).astype(np.int64))


def evaluate(labels_true: Any, labels_pred: Any) -> dict[str, float | int]:
    """All metrics at once from a single contingency table, as JSON-serialisable Python scalars.

    Keys: ``bcubed_precision``, ``bcubed_recall``, ``bcubed_f``, ``pairwise_precision``,
    ``pairwise_recall``, ``pairwise_f``, ``nmi`` (floats) and ``n``, ``n_clusters``,
    ``n_singletons``, ``largest_cluster`` (ints, describing ``labels_pred``).
    """
    t = _table_from_labels(labels_true, labels_pred)
    bp, br, bf = _bcubed(t)
    pp, pr, pf = _pairwise(t)
    result: dict[str, float | int] = {
        "bcubed_precision": float(bp),
        "bcubed_recall": float(br),
        "bcubed_f": float(bf),
        "pairwise_precision": float(pp),
        "pairwise_recall": float(pr),
        "pairwise_f": float(pf),
        "nmi": float(_nmi(t)),
    }
    result.update(_stats(t.cluster_sizes))
    return result
