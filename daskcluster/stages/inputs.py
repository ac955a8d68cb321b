"""Reading a day: input discovery, schema checks, partitioning and per-row validation.

Schema problems (a missing or mistyped column, a fixed dimension that differs from the gallery's) stop the
run with :class:`InputError` naming the file and field. Per-row problems (null, wrong length, NaN/Inf, zero
norm, duplicate ``face_id``) are quarantined with a reason, or raise when ``ingest.on_bad_row: error``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from daskcluster.backends import partition_mb
from daskcluster.config import IngestConfig
from daskcluster.stages.fs import gpath, is_remote, parquet_file

log = logging.getLogger(__name__)

DAY_RE = re.compile(r"day=(\d{4}-\d{2}-\d{2})")
FLOAT_TYPES = (pa.float16(), pa.float32(), pa.float64())
ROW_COLUMNS = ("_file", "_row")


class InputError(ValueError):
    """The day's input cannot be used; the message names the file and field (and row where relevant)."""


@dataclass(frozen=True)
class InputFile:
    path: str
    num_rows: int
    fixed_dim: int | None  # the list size of a fixed_size_list feature column
    columns: tuple[str, ...]


@dataclass(frozen=True)
class PartitionSpec:
    """Rows ``[start, stop)`` of one input file; ``index`` orders partitions in input order."""

    index: int
    file: str
    start: int
    stop: int


def discover_inputs(path: str | Path) -> list[Path]:
    """The Parquet files of a day: the file itself, or every ``*.parquet`` below a directory, sorted (a local
    path or an fsspec URL)."""
    p = gpath(path)
    if is_remote(p):
        p.fs.invalidate_cache()
    if not p.exists():
        raise InputError(f"input {p} does not exist")
    files = sorted((f for f in p.rglob("*.parquet") if f.is_file()), key=str) if p.is_dir() else [p]
    if not files:
        raise InputError(f"input {p} holds no .parquet files")
    return files


def infer_day(path: str | Path) -> str | None:
    p = gpath(path)
    match = DAY_RE.search(str(p if is_remote(p) else p.resolve()))
    return match.group(1) if match else None


def _check_feature_type(path: Path, field: pa.Field) -> int | None:
    t = field.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
        raise InputError(f"{path}: field {field.name!r} must be a list of float32/float16, found {t}")
    if t.value_type not in FLOAT_TYPES:
        raise InputError(f"{path}: field {field.name!r} must hold float32/float16 values, found {t.value_type}")
    return t.list_size if pa.types.is_fixed_size_list(t) else None


def inspect_file(path: Path, cfg: IngestConfig) -> InputFile:
    """Read one file's footer and check the schema of the day format."""
    try:
        meta = parquet_file(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc
    schema = meta.schema_arrow
    for name in (cfg.id_column, cfg.feature_column):
        if schema.get_field_index(name) < 0:
            raise InputError(f"{path}: required field {name!r} is missing (found {schema.names})")
    id_type = schema.field(cfg.id_column).type
    if not pa.types.is_integer(id_type) or (pa.types.is_unsigned_integer(id_type) and id_type.bit_width == 64):
        raise InputError(f"{path}: field {cfg.id_column!r} must be int64, found {id_type}")
    for reserved in ("cluster_id", "decision", "similarity", "reason", *ROW_COLUMNS):
        if reserved in schema.names:
            raise InputError(f"{path}: field {reserved!r} is reserved for the output, rename it")
    fixed_dim = _check_feature_type(path, schema.field(cfg.feature_column))
    return InputFile(str(path), meta.metadata.num_rows, fixed_dim, tuple(schema.names))


def inspect_inputs(files: list[Path], cfg: IngestConfig, dim: int | None) -> tuple[list[InputFile], int | None]:
    """Check every file's schema; returns the files and the day's dimension.

    The dimension is the gallery's when it has one, otherwise the fixed list size; None when only the
    data can tell (variable-length lists on a first day: see :func:`length_histogram`).
    """
    infos = [inspect_file(f, cfg) for f in files]
    if sum(i.num_rows for i in infos) == 0:
        raise InputError(f"input {files[0].parent if len(files) > 1 else files[0]} has no rows")
    for info in infos:
        if dim is not None and info.fixed_dim not in (None, dim):
            raise InputError(
                f"{info.path}: field {cfg.feature_column!r} has dimension {info.fixed_dim}, "
                f"the gallery's dimension is {dim}"
            )
    fixed = {i.fixed_dim for i in infos if i.fixed_dim is not None and i.num_rows}
    if dim is None and len(fixed) > 1:
        raise InputError(
            f"field {cfg.feature_column!r} has mixed dimensions {sorted(fixed)} across files "
            f"{[i.path for i in infos if i.fixed_dim in fixed]}"
        )
    return infos, dim or (fixed.pop() if fixed else None)


def estimate_dim(infos: list[InputFile], cfg: IngestConfig) -> int:
    """Mean list length from the Parquet footers (values / rows), to size partitions before any read."""
    values = rows = 0
    for info in infos:
        meta = parquet_file(info.path).metadata
        col = next(j for j in range(meta.num_columns) if meta.schema.column(j).path.split(".")[0] == cfg.feature_column)
        for g in range(meta.num_row_groups):
            values += meta.row_group(g).column(col).num_values
            rows += meta.row_group(g).num_rows
    return max(1, round(values / max(rows, 1)))


def length_histogram(spec: PartitionSpec, feature: str) -> dict[int, int]:
    """The ``dim-scan`` task: how many rows of the partition have each list length (nulls excluded)."""
    lengths = pc.list_value_length(read_rows(spec).column(feature)).drop_null().to_numpy()
    values, counts = np.unique(lengths, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


def modal_length(histograms: list[dict[int, int]], feature: str) -> int:
    """The most common non-zero list length of the day (the smaller on ties)."""
    counts: dict[int, int] = {}
    for hist in histograms:
        for length, n in hist.items():
            if length > 0:
                counts[length] = counts.get(length, 0) + n
    if not counts:
        raise InputError(f"field {feature!r} holds no vectors in the input")
    return min(counts, key=lambda length: (-counts[length], length))


def partition_rows(cfg: IngestConfig, dim: int, backend: str) -> int:
    """Rows per partition: about ``ingest.partition_mb`` of float32 features (0: what suits ``backend``, see
    :func:`daskcluster.backends.partition_mb`), at least 256."""
    mb = cfg.partition_mb or partition_mb(backend)
    return max(256, int(mb * 2**20 // (4 * dim)))


def plan_partitions(infos: list[InputFile], dim: int, cfg: IngestConfig, backend: str) -> list[PartitionSpec]:
    """Split the files into row ranges of :func:`partition_rows` each (``backend``: resolved, cpu or gpu)."""
    rows = partition_rows(cfg, dim, backend)
    specs: list[PartitionSpec] = []
    for info in infos:
        for start in range(0, info.num_rows, rows):
            specs.append(PartitionSpec(len(specs), info.path, start, min(info.num_rows, start + rows)))
    return specs


def input_checksum(files: list[Path]) -> str:
    """Identity of a day's input: names, sizes and Parquet footers (cheap; no full read)."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(str(f.stat().st_size).encode())
        with f.open("rb") as fh:
            fh.seek(max(0, f.stat().st_size - 65536))
            h.update(fh.read())
    return h.hexdigest()


def read_rows(spec: PartitionSpec) -> pa.Table:
    """Rows ``[start, stop)`` of the file, reading only the row groups that hold them."""
    pf = parquet_file(spec.file)
    groups, first, offset = [], None, 0
    for g in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if offset < spec.stop and offset + n > spec.start:
            groups.append(g)
            first = offset if first is None else first
        offset += n
    table = pf.read_row_groups(groups)
    table = table.slice(spec.start - (first or 0), spec.stop - spec.start)
    rows = pa.array(np.arange(spec.start, spec.stop, dtype=np.int64))
    return table.append_column("_row", rows).append_column("_file", pa.array([spec.file] * table.num_rows))
