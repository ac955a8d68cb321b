"""Per-partition outputs of a day: the assignments and the quarantined rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from daskcluster.gallery.manifest import write_parquet_atomic
from daskcluster.gallery.store import gpath
from daskcluster.stages.ingest import Part

DROP_FROM_ASSIGNMENTS = ("_file", "_row")


def assignments_table(part: Part, new_labels: np.ndarray, id_column: str) -> pa.Table:
    """face_id, cluster_id, decision (``assigned``, ``new`` or ``low_quality``: a low-quality face that
    joined nothing), similarity, ambiguous (the assignment margin sent it to step 2) and the carried
    metadata of one partition."""
    cluster_id = part.cluster_id.copy()
    new = cluster_id < 0
    cluster_id[new] = new_labels
    decision = np.where(new, np.where(part.low_quality, "low_quality", "new"), "assigned")
    meta = part.meta.drop_columns([c for c in (id_column, *DROP_FROM_ASSIGNMENTS) if c in part.meta.schema.names])
    head = pa.table(
        {
            "face_id": pa.array(part.ids, pa.int64()),
            "cluster_id": pa.array(cluster_id, pa.int64()),
            "decision": pa.array(decision).dictionary_encode(),
            "similarity": pa.array(part.similarity, pa.float32(), from_pandas=True),
            "ambiguous": pa.array(part.ambiguous if len(part.ambiguous) == len(part) else np.zeros(len(part), bool)),
        }
    )
    for name in meta.schema.names:
        head = head.append_column(meta.schema.field(name), meta.column(name))
    return head


def write_outputs(
    part: Part, new_labels: np.ndarray, assign_dir: str, quarantine_dir: str, id_column: str
) -> tuple[int, int]:
    """The ``write-assignments`` task; returns (rows written, rows quarantined)."""
    name = f"part-{part.index:05d}.parquet"
    write_parquet_atomic(assignments_table(part, new_labels, id_column), gpath(assign_dir) / name)
    n_bad = 0
    if part.bad is not None and part.bad.num_rows:
        write_parquet_atomic(part.bad, gpath(quarantine_dir) / name)
        n_bad = part.bad.num_rows
    return len(part), n_bad
