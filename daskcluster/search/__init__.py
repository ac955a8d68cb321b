"""k-NN search over shards: index choice, shards, top-k merging, sampling and the quantizer life cycle."""

from daskcluster.search.index import IndexSpec, choose_index, train_size
from daskcluster.search.quantizer import Quantizer, quantizer, train_quantizer
from daskcluster.search.sampling import id_hash, sample_rows
from daskcluster.search.shard import IndexShard, build_shard, gallery_lists, nearest_lists, probe, search_shard
from daskcluster.search.topk import edge_recall, merge_topk

__all__ = [
    "IndexShard",
    "IndexSpec",
    "Quantizer",
    "build_shard",
    "choose_index",
    "edge_recall",
    "gallery_lists",
    "id_hash",
    "merge_topk",
    "nearest_lists",
    "probe",
    "quantizer",
    "sample_rows",
    "search_shard",
    "train_quantizer",
    "train_size",
]
