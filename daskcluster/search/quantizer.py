"""The IVF quantizer's life cycle, written once: reuse the stored one while it fits, else sample and train.

Every search of a job (the assignment against the gallery, the step-2 graph, consolidation, ``retrain``) gets
its coarse centroids here. Training runs on a worker from per-source samples chosen by id hash, so the
centroids do not depend on how the data is partitioned.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np

from daskcluster.backends import get_backend
from daskcluster.config import SearchConfig
from daskcluster.search.index import IndexSpec, train_size
from daskcluster.search.sampling import merge_samples

__all__ = ["Quantizer", "quantizer", "train_quantizer"]


def train_quantizer(
    samples: list[tuple[np.ndarray, np.ndarray]],
    nlist: int,
    n_max: int,
    backend: str,
    seed: int = 1234,
    niter: int = SearchConfig().gallery_train_iters,
) -> np.ndarray:
    """Merge per-partition samples (see :func:`~daskcluster.search.sampling.sample_rows`) and train ``nlist``
    IVF centroids in ``niter`` k-means iterations."""
    return get_backend(backend).train_quantizer(merge_samples(samples, n_max), nlist, seed, niter)


def _load(path: str) -> np.ndarray:
    """The stored centroids (a local path or an fsspec URL)."""
    with fsspec.open(path, "rb") as fh:
        return np.load(io.BytesIO(fh.read()), allow_pickle=False)


@dataclass
class Quantizer:
    """A search's coarse centroids: ``centroids`` is a handle (None for flat search); ``trained`` says whether
    they are new (to be written at commit) or the stored ones."""

    centroids: Any
    trained: bool
    nlist: int


def quantizer(
    ex: Any,
    stage: str,
    spec: IndexSpec,
    cfg: SearchConfig,
    backend: str,
    sources: list,
    sample_fn: Callable,
    stored: dict | None = None,
    root: Any = None,
    niter: int | None = None,
) -> Quantizer:
    """The quantizer of a search by ``spec``: the ``stored`` one (``{"path", "nlist"}``, relative to ``root``)
    while its list count is what ``spec`` asks for, else trained on a worker from ``sample_fn(source, n)`` of
    every source, in ``niter`` k-means iterations (default ``search.gallery_train_iters``: a quantizer that is
    stored serves many days). Tasks are named ``<stage>-quantizer``, ``<stage>-sample`` and ``<stage>-train``."""
    if spec.is_flat:
        return Quantizer(None, False, 0)
    if stored and stored["nlist"] == spec.nlist:
        return Quantizer(ex.submit(f"{stage}-quantizer", _load, str(root / stored["path"])), False, spec.nlist)
    n_max = train_size(spec, cfg)
    samples = [ex.submit(f"{stage}-sample", sample_fn, src, n_max) for src in sources]
    niter = niter or cfg.gallery_train_iters
    fut = ex.submit(f"{stage}-train", train_quantizer, samples, spec.nlist, n_max, backend, niter=niter)
    return Quantizer(ex.wait(f"{stage}-train", [fut])[0], True, spec.nlist)
