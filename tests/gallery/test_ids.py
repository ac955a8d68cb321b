"""The persistent face-id index: Bloom filters, exact lookups, LSM merges, rebuild and its failures."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from daskcluster.gallery import ids as idx
from daskcluster.gallery.manifest import GalleryError

N_BUCKETS = 4


def _day_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(-(2**62), 2**62, n, dtype=np.int64)


def _run_days(root, days: list[np.ndarray], n_buckets: int = N_BUCKETS, merge: bool = True):
    """The incremental index after committing ``days`` (versions 1, 2, ...), merging as the LSM rule says."""
    index = idx.empty_index(n_buckets)
    for version, ids in enumerate(days, start=1):
        index = idx.add_run(index, idx.write_run(root, idx.run_dir(version, 0), ids, n_buckets))
        if merge:
            index = _merge(root, index, version)
    return index


def _merge(root, index: dict, version: int) -> dict:
    merges = idx.merge_plan(index, version)
    for sources, target in merges:
        counts = [idx.merge_bucket(root, sources, target, b) for b in range(index["buckets"])]
        assert sum(counts) == target["ids"]
    return idx.apply_merges(index, merges)


def test_bucket_of_is_stable():
    ids = np.array([0, 1, 2, -1, 2**62, 12345], dtype=np.int64)
    got = idx.bucket_of(ids, 64)
    assert got.dtype == np.int64
    assert got.tolist() == [0, 62, 11, 46, 36, 28]
    many = idx.bucket_of(np.arange(-5000, 5000), 7)
    assert many.min() == 0 and many.max() == 6
    assert np.bincount(many).min() > 1200  # spread over all buckets


def test_bloom_has_no_false_negatives_and_few_false_positives():
    rng = np.random.default_rng(1)
    held, other = _day_ids(rng, 100_000), _day_ids(rng, 100_000)
    words = idx.bloom_bits(held)
    assert words.dtype == np.uint64
    assert len(words) * 64 >= idx.BLOOM_BITS_PER_ID * len(held)
    assert idx.bloom_contains(words, held).all()
    rate = idx.bloom_contains(words, other[~np.isin(other, held)]).mean()
    assert 0.001 < rate < 0.02
    # sequential ids within one bucket (what a bucket's filter really holds) behave the same
    seq = np.arange(2_000_000)
    seq = seq[idx.bucket_of(seq, 64) == 5]
    words = idx.bloom_bits(seq[::2])
    assert idx.bloom_contains(words, seq[1::2]).mean() < 0.02


def test_empty_filter_is_minimal_and_holds_nothing():
    words = idx.bloom_bits(np.empty(0, np.int64))
    assert words.shape == (1,) and not words.any()
    assert not idx.bloom_contains(words, np.arange(1000)).any()


def test_round_trip_over_several_runs_without_false_reports(tmp_path):
    rng = np.random.default_rng(2)
    days = [_day_ids(rng, n) for n in (3000, 1, 0, 5000, 2500)]
    index = _run_days(tmp_path, days, merge=False)
    assert [r["ids"] for r in index["runs"]] == [3000, 1, 0, 5000, 2500]
    written = np.concatenate(days)
    assert idx.contains(tmp_path, index, written).all()
    misses = _day_ids(rng, 200_000)
    misses = misses[~np.isin(misses, written)]
    # the filters alone report some misses: the exact check is what removes them
    runs = index["runs"]
    b = idx.bucket_of(misses, N_BUCKETS)
    bloom_reports = sum(idx.bloom_contains(idx._read_bloom(tmp_path, r["path"], 0), misses[b == 0]).sum() for r in runs)
    assert bloom_reports > 0
    assert not idx.contains(tmp_path, index, misses).any()
    mixed = np.concatenate([misses[:1000], written[::7], written[:5]])  # duplicates too
    expect = np.isin(mixed, written)
    assert (idx.contains(tmp_path, index, mixed) == expect).all()


def test_lookup_reads_parquet_only_on_filter_hits(tmp_path):
    rng = np.random.default_rng(3)
    held = _day_ids(rng, 4000)
    index = _run_days(tmp_path, [held], n_buckets=1, merge=False)
    run = index["runs"][0]["path"]
    parquet, bloom = idx.bucket_files(run, 0)
    words = np.load(tmp_path / bloom)
    probe = _day_ids(rng, 5000)
    clean = probe[~idx.bloom_contains(words, probe)]
    (tmp_path / parquet).unlink()
    assert not idx.lookup(tmp_path, index["runs"], 0, clean).any()  # no hits: the Parquet is never opened
    with pytest.raises(GalleryError, match=str(tmp_path / parquet)):
        idx.lookup(tmp_path, index["runs"], 0, held[:3])


def test_read_bucket_prunes_row_groups(tmp_path):
    ids = np.arange(0, 3 * idx.ROW_GROUP + 100, dtype=np.int64) * 3
    assert idx.write_bucket(tmp_path, "ids/v000001-L0", 0, ids[::-1]) == len(ids)
    everything = idx.read_bucket(tmp_path, "ids/v000001-L0", 0)
    assert (everything == ids).all()
    near = np.array([ids[idx.ROW_GROUP + 5]])
    part = idx.read_bucket(tmp_path, "ids/v000001-L0", 0, near=near)
    assert len(part) == idx.ROW_GROUP and near[0] in part
    # ids on both sides of a row-group boundary, and between stored ids, are decided exactly
    probe = np.array([ids[idx.ROW_GROUP - 1], ids[idx.ROW_GROUP], ids[idx.ROW_GROUP] + 1, -3, ids[-1] + 3])
    runs = [{"path": "ids/v000001-L0", "level": 0, "ids": len(ids)}]
    assert idx.lookup(tmp_path, runs, 0, probe).tolist() == [True, True, False, False, False]


def test_merges_cascade_and_keep_lookups(tmp_path):
    rng = np.random.default_rng(4)
    days = [_day_ids(rng, 40) for _ in range(64)]
    index = idx.empty_index(2)  # few buckets: every file write is fsynced
    for version, ids in enumerate(days, start=1):
        index = idx.add_run(index, idx.write_run(tmp_path, idx.run_dir(version, 0), ids, 2))
        before = idx.contains(tmp_path, index, np.concatenate(days[: version + 1]))
        plan = idx.merge_plan(index, version)
        if version == 64:
            assert [(len(s), t["path"]) for s, t in plan] == [(8, "ids/v000064-L1"), (8, "ids/v000064-L2")]
            assert plan[0][1] in plan[1][0]  # the second merge reads the first's target
        index = _merge(tmp_path, index, version)
        assert (idx.contains(tmp_path, index, np.concatenate(days[: version + 1])) == before).all()
        if version == 8:
            assert index["runs"] == [{"path": "ids/v000008-L1", "level": 1, "ids": 320}]
        if version == 9:
            assert [r["level"] for r in index["runs"]] == [1, 0]
    assert index["runs"] == [{"path": "ids/v000064-L2", "level": 2, "ids": 64 * 40}]
    assert sum(r["ids"] for r in index["runs"]) == sum(len(d) for d in days)
    assert idx.contains(tmp_path, index, np.concatenate(days)).all()
    assert not idx.contains(tmp_path, index, _day_ids(rng, 20_000)).any()


def test_merge_plan_and_apply_merges_order():
    runs = [{"path": f"ids/v{v:06d}-L0", "level": 0, "ids": v} for v in range(2, 18)]
    index = {"buckets": 2, "runs": [{"path": "ids/v000001-L1", "level": 1, "ids": 100}, *runs]}
    assert idx.merge_plan(idx.empty_index(2), 1) == []
    assert idx.merge_plan({"buckets": 2, "runs": index["runs"][:8]}, 18) == []
    plan = idx.merge_plan(index, 18)
    assert len(plan) == 1  # one merge per level per version: the backlog waits
    sources, target = plan[0]
    assert sources == runs[:8]
    assert target == {"path": "ids/v000018-L1", "level": 1, "ids": sum(range(2, 10))}
    after = idx.apply_merges(index, plan)
    assert after["runs"] == [index["runs"][0], target, *runs[8:]]
    assert len(index["runs"]) == 17  # the input is left as it was
    assert idx.run_paths(after)[:2] == ["ids/v000001-L1", "ids/v000018-L1"]
    with pytest.raises(GalleryError, match="v000002-L0"):
        idx.apply_merges(after, plan)  # its sources are gone
    with pytest.raises(GalleryError, match="v000001-L1"):
        idx.merge_plan(idx.add_run(index, {"path": "ids/v000020-L0", "level": 0, "ids": 0}), 1)


def test_rebuild_matches_incremental_index(tmp_path):
    rng = np.random.default_rng(5)
    days = [_day_ids(rng, n) for n in (1500, 700, 0, 2200)]
    files = []
    for i, ids in enumerate(days):
        rel = f"assignments/day=2024-01-0{i + 1}/v{i + 1:06d}/part-00000.parquet"
        (tmp_path / rel).parent.mkdir(parents=True)
        pq.write_table(pa.table({"face_id": ids, "cluster_id": np.zeros(len(ids), np.int64)}), tmp_path / rel)
        files.append(rel)
    incremental = _run_days(tmp_path, days)
    rebuilt = idx.rebuild(tmp_path, files, version=9, n_buckets=N_BUCKETS)
    assert rebuilt == {"buckets": N_BUCKETS, "runs": [{"path": "ids/v000009-L0", "level": 0, "ids": 4400}]}
    probe = np.concatenate([np.concatenate(days), _day_ids(rng, 5000)])
    got = idx.contains(tmp_path, rebuilt, probe)
    assert (got == idx.contains(tmp_path, incremental, probe)).all()
    assert got.sum() == 4400
    with pytest.raises(GalleryError, match="part-00009"):
        idx.rebuild(tmp_path, ["assignments/part-00009.parquet"], version=10, n_buckets=N_BUCKETS)


def test_missing_or_corrupt_files_raise_naming_the_path(tmp_path):
    rng = np.random.default_rng(6)
    index = _run_days(tmp_path, [_day_ids(rng, 100)], merge=False)
    run = index["runs"][0]["path"]
    parquet, bloom = idx.bucket_files(run, 2)
    assert idx.index_bytes(tmp_path, index) == sum(p.stat().st_size for p in (tmp_path / run).iterdir())
    (tmp_path / bloom).unlink()
    with pytest.raises(GalleryError, match=f"{tmp_path / bloom}.*missing"):
        idx.lookup(tmp_path, index["runs"], 2, np.array([1, 2, 3]))
    with pytest.raises(GalleryError, match=str(tmp_path / bloom)):
        idx.index_bytes(tmp_path, index)
    (tmp_path / parquet).write_bytes(b"not parquet")
    with pytest.raises(GalleryError, match=f"{tmp_path / parquet}.*unreadable"):
        idx.merge_bucket(tmp_path, index["runs"], {"path": "ids/v000002-L1", "level": 1, "ids": 0}, 2)


def test_empty_buckets_get_files_and_merge(tmp_path):
    index = _run_days(tmp_path, [np.array([7], np.int64), np.empty(0, np.int64)], n_buckets=8, merge=False)
    for run in idx.run_paths(index):
        assert len(list((tmp_path / run).iterdir())) == 16
    assert idx.contains(tmp_path, index, np.array([7, 8])).tolist() == [True, False]
    target = {"path": "ids/v000003-L1", "level": 1, "ids": 1}
    assert [idx.merge_bucket(tmp_path, index["runs"], target, b) for b in range(8)].count(0) == 7
    assert idx.lookup(tmp_path, [target], int(idx.bucket_of(np.array([7]), 8)[0]), np.array([7])).all()


def test_records_and_paths():
    assert idx.empty_index() == {"buckets": idx.ID_BUCKETS, "runs": []}
    assert idx.run_dir(3, 0) == "ids/v000003-L0"
    assert idx.bucket_files("ids/v000003-L0", 7) == (
        "ids/v000003-L0/bucket-00007.parquet",
        "ids/v000003-L0/bucket-00007.bloom.npy",
    )
    run = {"path": "ids/v000003-L0", "level": 0, "ids": 5}
    index = idx.empty_index(2)
    assert idx.add_run(index, run) == {"buckets": 2, "runs": [run]}
    assert index["runs"] == []
