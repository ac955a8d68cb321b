"""Preprocessing and quality gating of the day's valid faces (the ``prepare`` task, after dedupe).

Centring: some models' features are not zero-centred (dlib: the raw cosine between different people is
~0.86), which squeezes every similarity into a narrow band. With ``preprocess.centre`` the mean unit feature
of the gallery's first day is subtracted before normalising; it is stored in the gallery and used for every
later day, so all days live in the same space.

Quality: a face's quality is the mean of the signals it has, each in [0, 1]: the detector's score in the
``quality.column`` metadata column (clipped to [0, 1]; null = no signal) and, with ``quality.use_norm``,
the raw feature norm mapped linearly from ``quality.norm_range`` (MagFace-style models encode quality in
it). Both are noisy; averaging two noisy signals is steadier than either. Faces under ``quality.floor`` are
low quality: they may join an existing cluster only at ``quality.join_threshold``, never update a centre,
and never seed or chain a new cluster (they become singletons flagged ``low_quality`` that no face joins).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from daskcluster.config import QualityConfig
from daskcluster.stages.ingest import Part
from daskcluster.stages.inputs import InputError


def unit_sum(part: Part) -> tuple[np.ndarray, int]:
    """The ``centre-sum`` task: the sum of a partition's unit features (float64) and its row count."""
    return part.x.astype(np.float64).sum(axis=0), len(part)


def mean_feature(sums: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """The ``centre-mean`` task: the mean unit feature of the day (float32)."""
    total = np.sum([s for s, _ in sums], axis=0)
    n = sum(c for _, c in sums)
    if n == 0:
        raise InputError("no valid faces to learn the centring mean from")
    return (total / n).astype(np.float32)


def centre(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Unit features with the mean subtracted, renormalised."""
    y = x - mean[None, :]
    norms = np.linalg.norm(y, axis=1, keepdims=True)
    return (y / np.maximum(norms, 1e-12)).astype(np.float32)


def quality_score(meta: pa.Table, cfg: QualityConfig) -> np.ndarray:
    """Per-row quality in [0, 1], NaN where the row has no signal."""
    n = meta.num_rows
    signals = []
    if cfg.column and cfg.column in meta.schema.names:
        col = meta.column(cfg.column)
        if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
            files = sorted(set(meta.column("_file").to_pylist())) if "_file" in meta.schema.names else []
            raise InputError(
                f"{', '.join(files) or 'input'}: quality column {cfg.column!r} has type {col.type}, "
                "expected numbers in [0, 1] (set quality.column to another column or null)"
            )
        values = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
        signals.append(np.clip(values, 0.0, 1.0))
    if cfg.use_norm and "feature_norm" in meta.schema.names:
        norm = meta.column("feature_norm").to_numpy(zero_copy_only=False).astype(np.float64)
        lo, hi = cfg.norm_range
        signals.append(np.clip((norm - lo) / (hi - lo), 0.0, 1.0))
    if not signals:
        return np.full(n, np.nan, np.float32)
    stacked = np.vstack(signals)
    have = np.isfinite(stacked)
    total = np.where(have, stacked, 0.0).sum(axis=0)
    count = have.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan).astype(np.float32)


def low_quality(meta: pa.Table, cfg: QualityConfig) -> np.ndarray:
    """Row mask of low-quality faces (none when ``quality.floor`` is 0 or no signal exists)."""
    if cfg.floor <= 0:
        return np.zeros(meta.num_rows, bool)
    score = quality_score(meta, cfg)
    return np.isfinite(score) & (score < cfg.floor)


def prepare(part: Part, mean: np.ndarray | None, cfg: QualityConfig) -> Part:
    """The ``prepare`` task: centre (when the gallery has a mean) and flag low-quality faces."""
    x = part.x if mean is None else centre(part.x, mean)
    return replace(part, x=x, low_q=low_quality(part.meta, cfg))
