"""Byte sizes of the pipeline's objects for Dask (``dask.sizeof``), so the scheduler weighs transfers
and memory right: without them a 64 MB partition counts as 56 bytes, tasks are placed next to small
inputs and whole partitions and shards are shipped to them, and spilling cannot see them."""
from __future__ import annotations

from dask.sizeof import sizeof

from daskcluster.search.index import Shard
from daskcluster.stages.centres import ClusterShard, ClusterSums
from daskcluster.stages.components import ComponentResult
from daskcluster.stages.ingest import Part


@sizeof.register(Part)
def _part(p: Part) -> int:
    bad = p.bad.nbytes if p.bad is not None else 0
    return int(p.ids.nbytes + p.x.nbytes + p.meta.nbytes + bad + p.cluster_id.nbytes + p.similarity.nbytes)


@sizeof.register(Shard)
def _shard(s: Shard) -> int:
    centroids = s.centroids.nbytes if s.centroids is not None else 0
    return int(2 * s.xb.nbytes + s.ids.nbytes + centroids)  # the index holds a copy of the vectors


@sizeof.register(ClusterShard)
def _cluster_shard(s: ClusterShard) -> int:
    return int(s.cluster_id.nbytes + s.count.nbytes + s.mean.nbytes + s.first_day.nbytes + s.last_day.nbytes)


@sizeof.register(ClusterSums)
def _sums(s: ClusterSums) -> int:
    return int(s.cluster_id.nbytes + s.sums.nbytes + s.count.nbytes)


@sizeof.register(ComponentResult)
def _components(c: ComponentResult) -> int:
    return int(c.cluster_id.nbytes)
