"""Which index searches a database: flat (exact) or IVF, from the database size and the config."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from daskcluster.config import SearchConfig

__all__ = ["MIN_POINTS_PER_LIST", "IndexSpec", "choose_index", "train_size"]

MIN_POINTS_PER_LIST = 39  # faiss wants at least this many training points per list


@dataclass(frozen=True)
class IndexSpec:
    """How a database of ``n`` vectors is searched: ``nlist == 0`` means flat (exact) search."""

    nlist: int = 0
    nprobe: int = 0  # lists probed, or with ``gap`` the most probed
    gap: float | None = None  # probe the lists within this centroid score of the nearest (None: nprobe lists)
    pq: tuple[int, int] | None = None  # ``(bytes, rerank)``: PQ codes re-ranked exactly (``search.codec: pq``)

    @property
    def is_flat(self) -> bool:
        return self.nlist == 0

    def with_gap(self, gap: float | None) -> IndexSpec:
        return dataclasses.replace(self, gap=gap)

    def with_codec(self, cfg: SearchConfig) -> IndexSpec:
        """This spec with the gallery codec of ``cfg`` (``search.codec``; a flat spec stays flat)."""
        if self.is_flat or cfg.codec == "flat":
            return dataclasses.replace(self, pq=None)
        return dataclasses.replace(self, pq=(cfg.pq_bytes, cfg.rerank))

    def describe(self) -> str:
        if self.is_flat:
            return "Flat (exact)"
        codec = "Flat" if self.pq is None else f"PQ{self.pq[0]}x8 rerank={self.pq[1]}"
        if self.gap is None:
            return f"IVF{self.nlist},{codec} nprobe={self.nprobe}"
        return f"IVF{self.nlist},{codec} gap={self.gap:.3f} nprobe<={self.nprobe}"


def choose_index(n_db: int, cfg: SearchConfig) -> IndexSpec:
    """Pick the index from the database size: flat when small or exact, else IVF with ~2 sqrt(n) lists
    (a power of two), probed by centroid score gap (``search.gap``, or chosen per day when 0) up to
    ``nprobe`` lists (nlist / 8 by default).

    Measured with ``benchmarks.search`` (``docs/search.md``): the gap probing reaches the target edge recall
    with ~2-3 % of the database scanned at 200k and 1M; finer lists scan less but cost more to train and probe.
    """
    if cfg.exact or n_db < max(cfg.flat_below, 1):
        return IndexSpec()
    nlist = cfg.nlist or int(2 ** round(math.log2(2 * math.sqrt(n_db))))
    nlist = max(16, min(nlist, n_db // MIN_POINTS_PER_LIST))
    nprobe = cfg.nprobe or max(32, nlist // 8)
    return IndexSpec(nlist=nlist, nprobe=min(nprobe, nlist), gap=cfg.gap or None)


def train_size(spec: IndexSpec, cfg: SearchConfig) -> int:
    """Vectors the quantizer of ``spec`` is trained on: ``search.train_sample``, and enough for every list."""
    return max(cfg.train_sample, MIN_POINTS_PER_LIST * spec.nlist)
