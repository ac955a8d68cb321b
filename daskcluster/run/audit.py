"""The ``search.audit``: recall (by id) of the k-NN edges at or above ``cluster.threshold`` on a sample of
faces, against exact search over the same shards."""

from __future__ import annotations

import logging

import numpy as np

from daskcluster.config import Config
from daskcluster.search import IndexShard, IndexSpec, edge_recall, merge_topk, sample_rows, search_shard
from daskcluster.stages import ingest

log = logging.getLogger(__name__)


def _audit_queries(part: ingest.Part, best: tuple, offset: int, m: int) -> tuple:
    """Up to ``m`` searched faces of a partition (smallest id hashes): features, approximate top-k
    ``(D, I)`` and vertex numbers."""
    rows = np.flatnonzero(part.searchable)
    pick = rows[sample_rows(part.ids[rows], np.arange(len(rows)), m)[1].astype(np.int64)]
    return part.x[pick], best[0][pick], best[1][pick], offset + pick


def _concat_queries(items: list[tuple]) -> tuple:
    return tuple(np.concatenate([i[j] for i in items]) for j in range(4))


def _exact_search(shard, queries: tuple, k: int) -> tuple:
    """Exact top-k by inner product of the audit queries in one shard (numpy, no index)."""
    flat = IndexShard(ids=shard.ids, xb=shard.xb, centroids=None, nprobe=0, backend=shard.backend)
    return search_shard(flat, queries[0], k)


def _recall(exact: tuple, queries: tuple, threshold: float) -> tuple[int, int]:
    return edge_recall((queries[1], queries[2]), exact, threshold, self_ids=queries[3])


def audit_edges(ex, cfg: Config, gshards: list, rest: list, best: list, offsets: list[int], spec: IndexSpec) -> float:
    """Recall (by id) of the k-NN edges >= ``cluster.threshold`` on a sample, against exact search."""
    if spec.is_flat:
        return 1.0
    m = max(1, cfg.search.audit_sample // max(1, len(best)))
    q = ex.submit(
        "audit-queries",
        _concat_queries,
        [ex.submit("audit-queries", _audit_queries, p, b, off, m) for p, b, off in zip(rest, best, offsets)],
    )
    k, threshold = cfg.cluster.k + 1, cfg.cluster.threshold
    exact = ex.submit(
        "audit-merge", merge_topk, [ex.submit("audit-search", _exact_search, s, q, k) for s in gshards], k
    )
    found, total = ex.gather(ex.submit("audit-recall", _recall, exact, q, threshold))
    log.info("edge recall audit: %d of %d exact edges >= %.3f found", found, total, threshold)
    return found / total if total else 1.0
