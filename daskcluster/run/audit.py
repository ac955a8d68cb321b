"""The day's exact sample of the step-2 search: it chooses the probing gap (``search.gap: 0``) and audits the
finished search (``search.audit``), on the two halves of one exact pass (see ``daskcluster.search.calibrate``).

The sample is the ``search.audit_sample`` searched faces of smallest id hash over the whole day, so it does not
depend on the partitioning; its exact top-k comes from one ``calibrate-search`` task per shard, merged.
"""

from __future__ import annotations

import logging

import numpy as np

from daskcluster.config import Config
from daskcluster.search import calibrate, merge_topk
from daskcluster.stages import ingest

log = logging.getLogger(__name__)


def _part_sample(part: ingest.Part, offset: int, m: int, searchable: bool) -> calibrate.Sample:
    """The ``calibrate-sample`` task: a partition's ``m`` faces of smallest id hash (only the faces step 2
    searches, with ``searchable``), numbered from ``offset``."""
    rows = np.flatnonzero(part.searchable) if searchable else np.arange(len(part.ids))
    return calibrate.sample_faces(part.ids[rows], offset + rows, part.x[rows], m)


def _merge(samples: list[calibrate.Sample], m: int, audit_only: bool) -> calibrate.Sample:
    """The ``calibrate-sample`` task that merges the partitions' samples (``audit_only``: its odd half)."""
    sample = calibrate.merge_samples(samples, m)
    return sample.half(odd=True) if audit_only else sample


def _with_exact(sample: calibrate.Sample, exact: tuple) -> calibrate.Sample:
    sample.exact = exact
    return sample


def exact_sample(
    ex,
    cfg: Config,
    shards: list,
    parts: list,
    offsets: list[int],
    k: int,
    threshold: float,
    prefix: str = "",
    searchable: bool = True,
    both_ways: bool = False,
    audit_only: bool = False,
) -> object:
    """Handle of the day's sample with its exact top-``k`` (>= ``threshold``) over every shard. Tasks are named
    ``<prefix>calibrate-sample``, ``-search`` and ``-merge``. ``both_ways``: the search will run both ways, so
    each edge's gap is also measured from the neighbour's side. ``audit_only`` (the gap is fixed): only the
    audit half is searched, at half the cost."""
    m = cfg.search.audit_sample
    name = f"{prefix}calibrate"
    per_part = [ex.submit(f"{name}-sample", _part_sample, p, off, m, searchable) for p, off in zip(parts, offsets)]
    sample = ex.submit(f"{name}-sample", _merge, per_part, m, audit_only)
    per_shard = [  # where each shard lives: shards never move, the sample travels
        ex.submit_at(h, f"{name}-search", calibrate.exact_with_lists, s, sample, k, threshold, both_ways)
        for s, h in zip(shards, ex.homes(shards))
    ]
    exact = ex.tree_reduce(f"{name}-merge", merge_topk, per_shard, k)
    return ex.submit(f"{name}-sample", _with_exact, sample, exact)


def choose_gap(
    ex,
    cfg: Config,
    sample,
    threshold: float,
    target: float,
    stage: str,
    prefix: str = "",
    self_edges: bool = True,
) -> float:
    """The probing gap of a search: ``search.gap`` when set, else chosen on the sample's even half (its time
    counted in ``stage``)."""
    if cfg.search.gap:
        return cfg.search.gap
    fut = ex.submit(f"{prefix}calibrate-gap", calibrate.gap_from_sample, sample, threshold, target, self_edges)
    gap = ex.gather(ex.wait(stage, [fut])[0])
    log.info("%sprobing gap %.4f (recall target %.4f)", prefix, gap, target)
    return gap


def _audit_rows(best: tuple, offset: int, sample: calibrate.Sample) -> tuple:
    """The ``audit-queries`` task: the search's top-k of the audit faces that live in this partition."""
    audit = sample.half(odd=True)
    n = len(best[0])
    mine = (audit.vertex >= offset) & (audit.vertex < offset + n)
    rows = audit.vertex[mine] - offset
    return audit.vertex[mine], best[0][rows], best[1][rows]


def _recall(sample: calibrate.Sample, found: list[tuple], threshold: float) -> tuple[int, int]:
    """The ``audit-recall`` task: ``(found, total)`` exact edges of the audit half."""
    audit = sample.half(odd=True)
    vertex = np.concatenate([f[0] for f in found])
    order = np.argsort(vertex, kind="stable")
    assert np.array_equal(vertex[order], audit.vertex), "audit rows missing"
    D = np.concatenate([f[1] for f in found])[order]
    I = np.concatenate([f[2] for f in found])[order]
    return calibrate.audit_counts(audit, (D, I), threshold)


def audit_edges(ex, cfg: Config, sample, best: list, offsets: list[int]) -> float:
    """Recall (by id) of the k-NN edges >= ``cluster.threshold`` on the sample's audit half, against exact."""
    found = [ex.submit("audit-queries", _audit_rows, b, off, sample) for b, off in zip(best, offsets)]
    n_found, total = ex.gather(ex.submit("audit-recall", _recall, sample, found, cfg.cluster.threshold))
    log.info("edge recall audit: %d of %d exact edges >= %.3f found", n_found, total, cfg.cluster.threshold)
    return n_found / total if total else 1.0


def _agreement(sample: calibrate.Sample, found: list[tuple]) -> tuple[int, int]:
    """The ``assign-agreement`` task: audit faces whose best cluster (at or above the threshold, or none) is
    the exact search's, and the audit faces."""
    audit = sample.half(odd=True)
    vertex = np.concatenate([f[0] for f in found])
    order = np.argsort(vertex, kind="stable")
    best = np.concatenate([f[2] for f in found])[order][:, 0]
    return int((best == audit.exact[1][:, 0]).sum()), len(audit)


def audit_assignment(ex, sample, best: list, offsets: list[int]) -> float:
    """Share of the audit faces whose assignment search found the exact best cluster (or, like it, none)."""
    found = [ex.submit("assign-audit", _audit_rows, b, off, sample) for b, off in zip(best, offsets)]
    same, total = ex.gather(ex.submit("assign-agreement", _agreement, sample, found))
    log.info("assignment audit: %d of %d faces have the exact search's best cluster", same, total)
    return same / total if total else 1.0
