"""Ingest stage: per-partition validation and normalisation, and duplicate detection across partitions
and against the gallery, without gathering the day's ids into one process."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from daskcluster.config import IngestConfig
from daskcluster.search import id_hash
from daskcluster.stages.inputs import InputError, PartitionSpec, read_rows

log = logging.getLogger(__name__)


@dataclass
class Part:
    """One partition of the day on a worker: valid rows and their unit features, and the rejected rows.

    ``meta`` holds every input column but the feature (plus ``feature_norm``, the raw L2 norm, and the
    ``_file``/``_row`` provenance); ``bad`` holds rejected rows whole, with a ``reason``.
    """

    index: int
    ids: np.ndarray  # (n,) int64 face ids
    x: np.ndarray  # (n, d) float32, L2-normalised
    meta: pa.Table
    bad: pa.Table | None = None
    cluster_id: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    similarity: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    low_q: np.ndarray = field(default_factory=lambda: np.empty(0, bool))  # set by ``prepare``
    ambiguous: np.ndarray = field(default_factory=lambda: np.empty(0, bool))  # set by ``assign-decide``

    def __len__(self) -> int:
        return len(self.ids)

    def __sizeof__(self) -> int:
        bad = self.bad.nbytes if self.bad is not None else 0
        return int(
            self.ids.nbytes
            + self.x.nbytes
            + self.meta.nbytes
            + bad
            + self.cluster_id.nbytes
            + self.similarity.nbytes
            + self.low_q.nbytes
            + self.ambiguous.nbytes
        )

    @property
    def low_quality(self) -> np.ndarray:
        """Row mask of low-quality faces (none before ``prepare``)."""
        return self.low_q if len(self.low_q) == len(self.ids) else np.zeros(len(self.ids), bool)

    @property
    def searchable(self) -> np.ndarray:
        """Row mask of the faces step 2 indexes and searches: unassigned, not low quality."""
        return self.unassigned & ~self.low_quality

    @property
    def unassigned(self) -> np.ndarray:
        """Row mask of faces not assigned to a gallery cluster (all of them before assignment)."""
        if len(self.cluster_id) != len(self.ids):
            return np.ones(len(self.ids), bool)
        return self.cluster_id < 0


def _row_reasons(table: pa.Table, feature: str, id_col: str, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reason per row or '', float32 features with bad rows zeroed, raw L2 norms)."""
    n = table.num_rows
    col = table.column(feature).combine_chunks()
    reasons = np.full(n, "", dtype=object)
    reasons[table.column(id_col).is_null().to_numpy(zero_copy_only=False)] = f"{id_col} is null"
    null_feat = col.is_null().to_numpy(zero_copy_only=False)
    lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False)
    wrong = (lengths != dim) & ~null_feat
    reasons[null_feat] = f"{feature} is null"
    for length in np.unique(lengths[wrong]):
        reasons[wrong & (lengths == length)] = f"{feature} has dimension {length}, expected {dim}"
    ok = ~null_feat & ~wrong
    x = np.zeros((n, dim), np.float32)
    if ok.any():
        values = pc.list_flatten(col.filter(pa.array(ok))).to_numpy(zero_copy_only=False)
        x[ok] = values.astype(np.float32).reshape(-1, dim)
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.isfinite(x).all(axis=1)
        norms = np.linalg.norm(x.astype(np.float64), axis=1)
    reasons[ok & ~finite & (reasons == "")] = f"{feature} has NaN or Inf"
    reasons[ok & finite & (norms <= 1e-12) & (reasons == "")] = f"{feature} is all zeros"
    return reasons, x, norms


def _local_duplicates(ids: np.ndarray, reasons: np.ndarray, id_col: str) -> None:
    valid = np.flatnonzero(reasons == "")
    _, first = np.unique(ids[valid], return_index=True)
    dup = np.setdiff1d(valid, valid[first])
    reasons[dup] = f"duplicate {id_col} within the day"


def ingest_partition(spec: PartitionSpec, dim: int, cfg: IngestConfig) -> Part:
    """Read, validate and L2-normalise one partition (the ``ingest`` task)."""
    table = read_rows(spec)
    ids = table.column(cfg.id_column).cast(pa.int64()).fill_null(-1).to_numpy()
    reasons, x, norms = _row_reasons(table, cfg.feature_column, cfg.id_column, dim)
    _local_duplicates(ids, reasons, cfg.id_column)
    good = reasons == ""
    if cfg.on_bad_row == "error" and not good.all():
        row = int(np.flatnonzero(~good)[0])
        raise InputError(f"{spec.file}: row {spec.start + row}: {reasons[row]} (ingest.on_bad_row=error)")
    meta = table.drop_columns([cfg.feature_column]).filter(pa.array(good))
    meta = meta.append_column("feature_norm", pa.array(norms[good].astype(np.float32)))
    x = (x[good] / norms[good, None]).astype(np.float32)
    bad = _as_list_feature(table.filter(pa.array(~good)), cfg.feature_column)
    bad = bad.append_column("reason", pa.array(reasons[~good].astype(str)))
    return Part(spec.index, ids[good], x, meta, bad if bad.num_rows else None)


def _as_list_feature(table: pa.Table, feature: str) -> pa.Table:
    i = table.schema.get_field_index(feature)
    return table.set_column(i, feature, table.column(feature).cast(pa.list_(pa.float32())))


def bucket_ids(part: Part, n_buckets: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Split the partition's ids by hash into buckets of ``(ids, partition index, row)``."""
    b = (id_hash(part.ids) % np.uint64(n_buckets)).astype(np.int64)
    rows = np.arange(len(part), dtype=np.int64)
    return [
        (part.ids[b == j], np.full(int((b == j).sum()), part.index, np.int64), rows[b == j]) for j in range(n_buckets)
    ]


def bucket_known_ids(ids: np.ndarray, n_buckets: int) -> list[np.ndarray]:
    b = (id_hash(ids) % np.uint64(n_buckets)).astype(np.int64)
    return [ids[b == j] for j in range(n_buckets)]


def find_duplicates(
    day: list[tuple[np.ndarray, np.ndarray, np.ndarray]], known: list[np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """Within one hash bucket: day ids seen in an earlier partition, or already in the gallery.

    Returns ``(partition index, row, reason)`` groups; the first occurrence in input order is kept.
    """
    ids = np.concatenate([d[0] for d in day])
    parts = np.concatenate([d[1] for d in day])
    rows = np.concatenate([d[2] for d in day])
    order = np.lexsort((rows, parts, ids))
    ids, parts, rows = ids[order], parts[order], rows[order]
    repeat = np.zeros(len(ids), bool)
    repeat[1:] = ids[1:] == ids[:-1]
    in_gallery = np.isin(ids, np.concatenate(known)) if known else np.zeros(len(ids), bool)
    first_only = repeat & ~in_gallery
    return [
        (parts[first_only], rows[first_only], "duplicate face_id within the day"),
        (parts[in_gallery], rows[in_gallery], "face_id already in the gallery"),
    ]


def drop_rows(part: Part, groups: list[list[tuple[np.ndarray, np.ndarray, str]]], cfg: IngestConfig) -> Part:
    """Move the rows named by :func:`find_duplicates` results from the partition to its rejected rows."""
    reasons = np.full(len(part), "", dtype=object)
    for bucket in groups:
        for parts, rows, reason in bucket:
            reasons[rows[parts == part.index]] = reason
    bad = reasons != ""
    if not bad.any():
        return part
    if cfg.on_bad_row == "error":
        row = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{part.meta['_file'][row]}: row {part.meta['_row'][row]}: {reasons[row]} (ingest.on_bad_row=error)"
        )
    return _move_to_bad(part, bad, reasons, cfg.feature_column)


def _move_to_bad(part: Part, bad: np.ndarray, reasons: np.ndarray, feature: str) -> Part:
    """Rejected rows keep every column; the raw feature is rebuilt as unit vector x raw norm."""
    meta = part.meta.filter(pa.array(bad))
    raw = part.x[bad] * meta.column("feature_norm").to_numpy()[:, None]
    offsets = pa.array(np.arange(0, raw.size + 1, part.x.shape[1], dtype=np.int32))
    features = pa.ListArray.from_arrays(offsets, pa.array(raw.ravel().astype(np.float32)))
    rejected = meta.drop_columns(["feature_norm"]).append_column(feature, features)
    rejected = rejected.append_column("reason", pa.array(reasons[bad].astype(str)))
    bad_tables = [t for t in (part.bad, rejected) if t is not None]
    keep = pa.array(~bad)
    return replace(
        part,
        ids=part.ids[~bad],
        x=part.x[~bad],
        meta=part.meta.filter(keep),
        bad=pa.concat_tables(bad_tables, promote_options="permissive"),
    )


def unassigned_view(part: Part) -> Part:
    """The ``unassigned`` task: a partition's unassigned faces alone (ids and features, no metadata), which
    is all step 2 needs: the assigned faces and the metadata never travel to the k-NN shards."""
    mask = part.unassigned
    n = int(mask.sum())
    return Part(
        part.index,
        part.ids[mask],
        part.x[mask],
        pa.table({}),
        None,
        np.full(n, -1, np.int64),
        np.full(n, np.nan, np.float32),
        part.low_quality[mask],
    )


def count_rows(part: Part) -> tuple[int, int]:
    """(valid rows, rejected rows)."""
    return len(part), 0 if part.bad is None else part.bad.num_rows
