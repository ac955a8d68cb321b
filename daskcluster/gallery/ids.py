"""A persistent index of every committed face id, so a day's duplicate check reads what the day's ids need
instead of the face_id column of every committed day.

An LSM-style set of *runs*, each partitioned by id hash into the gallery's fixed number of buckets::

    ids/v<version>-L<level>/bucket-<b>.parquet     sorted unique int64 ``face_id`` (row groups of 65536 rows)
    ids/v<version>-L<level>/bucket-<b>.bloom.npy   Bloom filter (uint64 words) of that bucket's ids

Every day adds one run at level 0; :data:`FANOUT` runs of one level are merged into one run of the next, so a
gallery of N days has O(FANOUT * log N) runs. A lookup asks each run's Bloom filter first (about 1% false
positives) and checks its hits exactly against only the row groups of the run's Parquet that can hold them.

The records are JSON-able dicts the caller keeps in the manifest: a run ``{"path", "level", "ids"}`` and the
index ``{"buckets", "runs"}`` (runs oldest first). Nothing here reads anything but the paths it is given.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from daskcluster.gallery.manifest import GalleryError, atomic_write_bytes
from daskcluster.gallery.store import gpath, load_npy, parquet_file, read_table
from daskcluster.search.sampling import id_hash

__all__ = [
    "BLOOM_BITS_PER_ID",
    "BLOOM_K",
    "FANOUT",
    "ID_BUCKETS",
    "bucket_count",
    "ID_SCHEMA",
    "add_run",
    "apply_merges",
    "bloom_bits",
    "bloom_contains",
    "bucket_files",
    "bucket_of",
    "contains",
    "empty_index",
    "index_bytes",
    "lookup",
    "merge_bucket",
    "merge_plan",
    "read_bucket",
    "rebuild",
    "run_dir",
    "run_paths",
    "write_bucket",
    "write_run",
]

ID_BUCKETS = 64  # the functions' default; a gallery's count is fixed at its first day by bucket_count
FANOUT = 8  # LSM: this many runs of one level are merged into one run of the next level
BLOOM_BITS_PER_ID = 10  # with BLOOM_K = 7: about 0.8% false positives
BLOOM_K = 7
ROW_GROUP = 65536
ID_SCHEMA = pa.schema([pa.field("face_id", pa.int64())])
_BLOOM_SALT = np.uint64(0x5851F42D4C957F2D)  # the filter hashes a re-mix of id_hash, independent of the bucket
_LOW32 = np.uint64(0xFFFFFFFF)


IDS_PER_BUCKET = 1_000_000  # ids a bucket takes a day when the bucket count is chosen from the first day


def bucket_count(configured: int, first_day_ids: int) -> int:
    """The bucket count of a new index: ``configured``, or (0) one per ``IDS_PER_BUCKET`` of the first day's
    ids (a small gallery gets one bucket: few files and tasks; 100M faces a day get 100)."""
    return configured or max(1, min(4096, -(-first_day_ids // IDS_PER_BUCKET)))


def empty_index(n_buckets: int = ID_BUCKETS) -> dict:
    """The index record of a gallery with no committed ids."""
    if n_buckets < 1:
        raise ValueError(f"n_buckets must be >= 1, got {n_buckets}")
    return {"buckets": int(n_buckets), "runs": []}


def run_dir(version: int, level: int) -> str:
    """Gallery-relative directory of the run written at ``version`` and ``level``."""
    return f"ids/v{version:06d}-L{level}"


def bucket_files(run: str, bucket: int) -> tuple[str, str]:
    """Gallery-relative ``(parquet, bloom)`` paths of one bucket of a run."""
    stem = f"{run}/bucket-{bucket:05d}"
    return f"{stem}.parquet", f"{stem}.bloom.npy"


def bucket_of(ids: np.ndarray, n_buckets: int) -> np.ndarray:
    """The bucket of each id: ``id_hash(ids) % n_buckets``, as int64."""
    ids = np.asarray(ids, dtype=np.int64)
    return (id_hash(ids) % np.uint64(n_buckets)).astype(np.int64)


# --- Bloom filter -------------------------------------------------------------------------------------------


def _bloom_positions(ids: np.ndarray, n_bits: int) -> Iterator[np.ndarray]:
    """The BLOOM_K bit positions of each id: double hashing ``h1 + i*h2`` of two 32-bit halves of a re-mix."""
    h = id_hash(id_hash(np.asarray(ids, dtype=np.int64)) ^ _BLOOM_SALT)
    h1, h2 = h & _LOW32, (h >> np.uint64(32)) | np.uint64(1)
    m = np.uint64(n_bits)
    for i in range(BLOOM_K):
        yield (h1 + np.uint64(i) * h2) % m


def bloom_bits(ids: np.ndarray) -> np.ndarray:
    """The Bloom filter of ``ids`` as uint64 words: BLOOM_BITS_PER_ID bits per id, at least 64 bits."""
    n_words = max(1, -(-BLOOM_BITS_PER_ID * len(ids) // 64))
    bits = np.zeros(n_words * 64, dtype=bool)
    for pos in _bloom_positions(ids, n_words * 64):
        bits[pos] = True
    return np.packbits(bits, bitorder="little").view("<u8").astype(np.uint64)


def bloom_contains(words: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Bool mask of the ids the filter may hold (no false negatives; false positives at about 1%)."""
    out = np.ones(len(ids), dtype=bool)
    for pos in _bloom_positions(ids, len(words) * 64):
        out &= ((words[pos >> np.uint64(6)] >> (pos & np.uint64(63))) & np.uint64(1)).astype(bool)
    return out


# --- files --------------------------------------------------------------------------------------------------


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn a missing or unreadable index file into a GalleryError naming it."""
    try:
        yield
    except FileNotFoundError as exc:
        raise GalleryError(f"{path}: id index file is missing") from exc
    except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
        raise GalleryError(f"{path}: unreadable id index file ({exc})") from exc


def write_bucket(root: str | Path, run: str, bucket: int, ids: np.ndarray) -> int:
    """Write one bucket of a run (its ids sorted and unique, and their Bloom filter); return how many ids."""
    ids = np.unique(np.asarray(ids, dtype=np.int64))
    parquet, bloom = bucket_files(run, bucket)
    buf = pa.BufferOutputStream()
    pq.write_table(pa.table({"face_id": ids}, schema=ID_SCHEMA), buf, row_group_size=ROW_GROUP)
    atomic_write_bytes(gpath(root) / parquet, buf.getvalue().to_pybytes())
    npy = io.BytesIO()
    np.save(npy, bloom_bits(ids), allow_pickle=False)
    atomic_write_bytes(gpath(root) / bloom, npy.getvalue())
    return len(ids)


def _read_bloom(root: str | Path, run: str, bucket: int) -> np.ndarray:
    path = gpath(root) / bucket_files(run, bucket)[1]
    with _reading(path):
        words = load_npy(path)
        if words.dtype != np.uint64 or words.ndim != 1 or len(words) == 0:
            raise ValueError(f"expected a non-empty 1-d uint64 array, got {words.dtype} {words.shape}")
    return words


def read_bucket(root: str | Path, run: str, bucket: int, near: np.ndarray | None = None) -> np.ndarray:
    """The sorted ids of one bucket of a run; with ``near`` (sorted), only the row groups whose min..max range
    holds one of them (the rest cannot match, so a lookup reads what its hits need)."""
    path = gpath(root) / bucket_files(run, bucket)[0]
    with _reading(path):
        pf = parquet_file(path)
        col = pf.schema_arrow.get_field_index("face_id")
        if col < 0:
            raise KeyError("no face_id column")
        groups = list(range(pf.metadata.num_row_groups))
        if near is not None:
            groups = [g for g in groups if _may_hold(pf.metadata.row_group(g).column(col).statistics, near)]
        table = pf.read_row_groups(groups, columns=["face_id"]) if groups else ID_SCHEMA.empty_table()
        return table.column("face_id").to_numpy().astype(np.int64, copy=False)


def _may_hold(stats, near: np.ndarray) -> bool:
    """Whether a row group with these statistics can hold one of the sorted ids ``near``."""
    if stats is None or not stats.has_min_max:
        return True
    lo = np.searchsorted(near, stats.min, side="left")
    return bool(lo < len(near) and near[lo] <= stats.max)


# --- lookups ------------------------------------------------------------------------------------------------


def lookup(root: str | Path, runs: list[dict], bucket: int, ids: np.ndarray) -> np.ndarray:
    """Bool mask of the ids (all of ``bucket``) that some run holds: each run's Bloom filter first, then an
    exact check of its hits against the run's Parquet, read only where the filter has hits."""
    ids = np.asarray(ids, dtype=np.int64)
    found = np.zeros(len(ids), dtype=bool)
    for run in runs:
        todo = np.flatnonzero(~found)
        if len(todo) == 0:
            break
        hit = todo[bloom_contains(_read_bloom(root, run["path"], bucket), ids[todo])]
        if len(hit) == 0:
            continue
        near = np.unique(ids[hit])
        held = read_bucket(root, run["path"], bucket, near=near)
        found[hit] = np.isin(ids[hit], held, assume_unique=False)
    return found


def contains(root: str | Path, index: dict, ids: np.ndarray) -> np.ndarray:
    """Bool mask of the ids (of any bucket) that the index holds: :func:`lookup` per bucket."""
    ids = np.asarray(ids, dtype=np.int64)
    buckets = bucket_of(ids, index["buckets"])
    found = np.zeros(len(ids), dtype=bool)
    for b in np.unique(buckets):
        rows = np.flatnonzero(buckets == b)
        found[rows] = lookup(root, index["runs"], int(b), ids[rows])
    return found


# --- runs and merges ----------------------------------------------------------------------------------------


def add_run(index: dict, run: dict) -> dict:
    """A new index record with ``run`` appended (the newest)."""
    return {**index, "runs": [*index["runs"], dict(run)]}


def run_paths(index: dict) -> list[str]:
    """Every gallery-relative run directory the index points to (what a vacuum must keep)."""
    return [run["path"] for run in index["runs"]]


def write_run(root: str | Path, run: str, ids: np.ndarray, n_buckets: int, level: int = 0) -> dict:
    """Write every bucket of a run of ``ids`` (empty buckets too); return its run record."""
    ids = np.asarray(ids, dtype=np.int64)
    buckets = bucket_of(ids, n_buckets)
    order = np.argsort(buckets, kind="stable")
    bounds = np.searchsorted(buckets[order], np.arange(n_buckets + 1))
    total = 0
    for b in range(n_buckets):
        total += write_bucket(root, run, b, ids[order[bounds[b] : bounds[b + 1]]])
    return {"path": run, "level": int(level), "ids": int(total)}


def merge_plan(index: dict, version: int) -> list[tuple[list[dict], dict]]:
    """The merges due at ``version``: for each level (lowest first) holding >= FANOUT runs, its oldest FANOUT
    runs into one run at the next level, counting the merge's own target (so merges cascade). At most one merge
    per level per call, since the target's path names only version and level; a backlog drains over later
    versions. Run the merges in order: a later one may read an earlier one's target."""
    runs, merges = list(index["runs"]), []
    taken = set(run_paths(index))
    for level in range(max((r["level"] for r in runs), default=-1) + 1):
        sources = [r for r in runs if r["level"] == level][:FANOUT]
        if len(sources) < FANOUT:
            continue
        target = {"path": run_dir(version, level + 1), "level": level + 1, "ids": sum(r["ids"] for r in sources)}
        if target["path"] in taken:
            raise GalleryError(f"{target['path']}: id index run already exists (version {version} reused)")
        taken.add(target["path"])
        merges.append((sources, target))
        runs = _replace(runs, sources, target)
    return merges


def _replace(runs: list[dict], sources: list[dict], target: dict) -> list[dict]:
    """``runs`` with ``target`` in place of ``sources``, at the oldest source's position."""
    paths = {s["path"] for s in sources}
    at = [i for i, r in enumerate(runs) if r["path"] in paths]
    if len(at) != len(paths):
        missing = sorted(paths - {runs[i]["path"] for i in at})
        raise GalleryError(f"id index merge sources not in the index: {missing}")
    kept = [r for r in runs if r["path"] not in paths]
    return [*kept[: at[0]], dict(target), *kept[at[0] :]]


def apply_merges(index: dict, merges: list[tuple[list[dict], dict]]) -> dict:
    """The index record after ``merges`` (each target in place of its sources, oldest-first order kept)."""
    runs = list(index["runs"])
    for sources, target in merges:
        runs = _replace(runs, sources, target)
    return {**index, "runs": runs}


def merge_bucket(root: str | Path, sources: list[dict], target: dict, bucket: int) -> int:
    """Write the union of the sources' ids of one bucket into the target run; return how many ids."""
    parts = [read_bucket(root, s["path"], bucket) for s in sources]
    return write_bucket(root, target["path"], bucket, np.concatenate([np.empty(0, np.int64), *parts]))


# --- whole index --------------------------------------------------------------------------------------------


def index_bytes(root: str | Path, index: dict) -> int:
    """Bytes on disk of every file the index points to."""
    total = 0
    for run in run_paths(index):
        for b in range(index["buckets"]):
            for rel in bucket_files(run, b):
                path = gpath(root) / rel
                with _reading(path):
                    total += path.stat().st_size
    return total


def rebuild(root: str | Path, face_id_files: list, version: int, n_buckets: int = ID_BUCKETS) -> dict:
    """An index from scratch: the ``face_id`` column of each given Parquet file (the committed assignments,
    gallery-relative) written as one level-0 run at ``run_dir(version, 0)``; return the index record."""
    parts = [np.empty(0, np.int64)]
    for rel in face_id_files:
        path = gpath(root) / rel
        with _reading(path):
            col = read_table(path, columns=["face_id"]).column("face_id")
            if col.null_count:
                raise ValueError(f"{col.null_count} null face ids")
            parts.append(col.to_numpy().astype(np.int64, copy=False))
    run = write_run(root, run_dir(version, 0), np.concatenate(parts), n_buckets)
    return add_run(empty_index(n_buckets), run)
