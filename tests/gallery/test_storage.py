"""Incremental gallery storage, in process: deltas merged on read, compaction, stored IVF lists, the face-id
index in the day's dedupe, vacuum and what a forced re-run can still reach."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from daskcluster.eval.synth import SynthSpec, write_dataset
from daskcluster.gallery.manifest import GalleryError, read_manifest, write_manifest
from daskcluster.gallery.queries import face_clusters, gallery_status
from daskcluster.gallery.retention import vacuum
from daskcluster.gallery.tables import SnapshotRef, load_shard, write_delta, write_shard
from daskcluster.run.compact import compact_gallery
from daskcluster.run.executor import InProcessExecutor
from daskcluster.run.maintenance import rebuild_id_index, retrain_quantizer
from daskcluster.run.pipeline import run_day
from daskcluster.search import gallery_lists, nearest_lists
from daskcluster.stages.centres import CentreTable

from ..conftest import make_config

DIM = 64
DELTAS = "gallery.compact_fraction=100"  # never compact: every later day writes a delta
IVF = "search.flat_below=50"  # the gallery is searched by IVF from its second day


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    out = tmp_path_factory.mktemp("storage-days")
    return write_dataset(SynthSpec(days=6, faces_per_day=700, identities=150, dim=DIM, seed=3), out)


def _run(days, gallery, *overrides, force=False):
    cfg = make_config(*overrides)
    return [run_day(InProcessExecutor(), d, gallery, cfg, force=force) for d in days]


def _tables(gallery):
    m = read_manifest(gallery)
    ref = SnapshotRef.of(gallery, m)
    return [load_shard(ref, s, m.dim) for s in range(m.n_shards)]


def _table(shard, ids, count, day):
    n = len(ids)
    return CentreTable(
        shard,
        np.asarray(ids, np.int64),
        np.asarray(count, np.int64),
        np.eye(n, 4, dtype=np.float32),
        np.full(n, np.datetime64(day, "D")),
        np.full(n, np.datetime64(day, "D")),
        np.ones(n, bool),
        np.arange(n, dtype=np.int32),
    )


def test_deltas_apply_in_order_and_tombstones_drop(tmp_path):
    write_shard(_table(0, [2, 4, 6], [1, 1, 1], "2026-01-01"), tmp_path / "base")
    write_delta(_table(0, [4, 8], [5, 1], "2026-01-02"), np.empty(0, np.int64), tmp_path / "d1")
    write_delta(_table(0, [8], [7], "2026-01-03"), np.array([2]), tmp_path / "d2")
    ref = SnapshotRef(str(tmp_path / "base"), (str(tmp_path / "d1"), str(tmp_path / "d2")), lists="q")
    t = load_shard(ref, 0, 4)
    assert t.cluster_id.tolist() == [4, 6, 8]
    assert t.count.tolist() == [5, 1, 7]
    assert t.last_day.astype(str).tolist() == ["2026-01-02", "2026-01-01", "2026-01-03"]
    assert t.list_id.tolist() == [0, 2, 0]
    assert t.spill_id is None  # written without spills


def test_spill_lists_round_trip_and_mixed_widths_read_as_none(tmp_path):
    base = dataclasses.replace(
        _table(0, [2, 4, 6], [1, 1, 1], "2026-01-01"), spill_id=np.array([[1, -1], [-1, -1], [3, 0]], np.int32)
    )
    write_shard(base, tmp_path / "base")
    delta = dataclasses.replace(
        _table(0, [4, 8], [5, 1], "2026-01-02"), spill_id=np.array([[7, 2], [-1, -1]], np.int32)
    )
    write_delta(delta, np.array([2]), tmp_path / "d1")
    t = load_shard(SnapshotRef(str(tmp_path / "base"), (str(tmp_path / "d1"),), lists="q"), 0, 4)
    assert t.cluster_id.tolist() == [4, 6, 8]
    assert t.spill_id.tolist() == [[7, 2], [3, 0], [-1, -1]]  # the last row of a cluster wins, spills too
    write_delta(_table(0, [6], [2], "2026-01-03"), np.empty(0, np.int64), tmp_path / "d2")  # an older writer
    t = load_shard(SnapshotRef(str(tmp_path / "base"), (str(tmp_path / "d1"), str(tmp_path / "d2")), lists="q"), 0, 4)
    assert t.cluster_id.tolist() == [4, 6, 8] and t.spill_id is None  # re-spilled by the next day's merge


def test_days_write_deltas_that_read_back_as_full_rewrites(days, tmp_path):
    incremental, rewritten = tmp_path / "inc", tmp_path / "full"
    _run(days[:4], incremental, DELTAS)
    _run(days[:4], rewritten, "gallery.compact_fraction=1e-9")
    m = read_manifest(incremental)
    assert m.snapshot == "snapshots/v000001" and len(m.deltas) == 3
    assert sorted(p.name for p in (incremental / "snapshots").iterdir()) == ["v000001"]
    assert read_manifest(rewritten).deltas == [] and read_manifest(rewritten).snapshot == "snapshots/v000004"
    # a delta holds the rows its day changed, fewer than the gallery
    last = pq.read_table(incremental / m.deltas[-1]).num_rows
    assert 0 < last < m.n_clusters
    assert face_clusters(incremental).equals(face_clusters(rewritten))
    for a, b in zip(_tables(incremental), _tables(rewritten)):
        assert np.array_equal(a.cluster_id, b.cluster_id) and np.array_equal(a.count, b.count)
        assert np.array_equal(a.mean, b.mean) and np.array_equal(a.last_day, b.last_day)


def test_compact_folds_deltas_and_changes_no_cluster(days, tmp_path):
    g = tmp_path / "g"
    _run(days[:3], g, DELTAS)
    before, clusters = _tables(g), face_clusters(g)
    result = compact_gallery(InProcessExecutor(), g, make_config(DELTAS))
    m = read_manifest(g)
    assert result["deltas_folded"] == 2 and m.version == 4 and m.deltas == [] and m.snapshot == "snapshots/v000004"
    assert m.days[-1].compactions[0]["deltas_before"] == read_manifest(g).days[-1].compactions[0]["deltas_before"]
    assert m.base_rows == m.n_clusters and m.delta_rows == 0
    for a, b in zip(before, _tables(g)):
        assert np.array_equal(a.cluster_id, b.cluster_id) and np.array_equal(a.mean, b.mean)
    assert face_clusters(g).equals(clusters)
    # the next day runs on the compacted base as it would have on the deltas
    other = tmp_path / "other"
    _run(days[:4], other, DELTAS)
    _run(days[3:4], g, DELTAS)
    assert face_clusters(g).equals(face_clusters(other))


def test_list_ids_are_stored_under_the_committed_quantizer(days, tmp_path):
    g = tmp_path / "g"
    results = _run(days[:3], g, IVF, DELTAS)
    m = read_manifest(g)
    assert m.quantizer is not None and m.lists == m.quantizer["path"]
    assert results[1].summary["assign_quantizer"] == "trained"  # day 2 trains it: day 2 writes a new base
    assert m.snapshot == "snapshots/v000002" and len(m.deltas) == 1
    centroids = np.load(g / m.quantizer["path"])
    spilled = 0
    for t in _tables(g):
        assert t.list_id is not None and (t.list_id >= 0).all()
        assert np.array_equal(t.list_id, nearest_lists(centroids, t.centres(), "cpu"))
        own, more = gallery_lists(centroids, t.centres(), "cpu", 2, 0.3)  # the default search.spill*
        assert t.spill_id is not None and np.array_equal(t.spill_id, more)
        far = (t.centres() @ centroids.T).max(axis=1) < 0.3
        assert ((t.spill_id >= 0).any(axis=1) == far).all()  # only centres far from every centroid spill
        spilled += int(far.sum())
    assert spilled > 0


def test_retrain_relists_every_cluster_as_one_version(days, tmp_path):
    g = tmp_path / "g"
    _run(days[:3], g, IVF, DELTAS)
    result = retrain_quantizer(g, make_config(IVF))
    m = read_manifest(g)
    assert m.version == result["version"] == 4 and m.quantizer["path"] == m.lists == "quantizers/v000004.npy"
    assert m.deltas == [] and m.days[-1].quantizer == m.quantizer
    centroids = np.load(g / m.quantizer["path"])
    assert len(centroids) == m.quantizer["nlist"] == result["nlist"]
    for t in _tables(g):
        assert np.array_equal(t.list_id, nearest_lists(centroids, t.centres(), "cpu"))
        assert np.array_equal(t.spill_id, gallery_lists(centroids, t.centres(), "cpu", 2, 0.3)[1])


def _with_old_ids(day_dir, old_dir, out, n_old):
    """A day input made of ``day_dir`` plus the first ``n_old`` rows of an earlier day."""
    out.mkdir(parents=True)
    new, old = pq.read_table(day_dir), pq.read_table(old_dir).slice(0, n_old)
    pq.write_table(pa.concat_tables([new, old.cast(new.schema)]), out / "part-00000.parquet")
    return out


def test_ids_of_the_first_day_are_refused_without_reading_its_assignments(days, tmp_path):
    g = tmp_path / "g"
    _run(days[:4], g, "gallery.quality_max_faces=0")
    shutil.rmtree(g / read_manifest(g).days[0].assignments)  # the index alone must know day 1's ids
    day5 = _with_old_ids(days[4], days[0], tmp_path / "in" / days[4].name, 40)
    result = _run([day5], g, "gallery.quality_max_faces=0")[0]
    assert result.summary["quarantine_reasons"] == {"face_id already in the gallery": 40}
    assert read_manifest(g).id_index["buckets"] == 1  # a small first day: one bucket (few files, few tasks)


def test_a_lost_id_index_is_rebuilt_from_the_assignments(days, tmp_path):
    g = tmp_path / "g"
    _run(days[:3], g)
    shutil.rmtree(g / "ids")
    with pytest.raises(GalleryError, match="id index file is missing"):
        _run(days[3:4], g)
    rebuilt = rebuild_id_index(g)
    assert rebuilt["ids"] == read_manifest(g).n_faces
    day4 = _with_old_ids(days[3], days[1], tmp_path / "in" / days[3].name, 25)
    result = _run([day4], g)[0]
    assert result.summary["quarantine_reasons"] == {"face_id already in the gallery": 25}


def test_a_gallery_without_an_id_index_builds_one_on_its_next_day(days, tmp_path):
    g = tmp_path / "g"
    _run(days[:2], g)
    m = read_manifest(g)
    shutil.rmtree(g / "ids")
    days_before = [dataclasses.replace(d, id_index=None) for d in m.days]
    write_manifest(g, dataclasses.replace(m, id_index=None, days=days_before))  # as a format-1 gallery
    day3 = _with_old_ids(days[2], days[0], tmp_path / "in" / days[2].name, 30)
    result = _run([day3], g)[0]
    assert result.summary["quarantine_reasons"] == {"face_id already in the gallery": 30}
    assert read_manifest(g).id_index["runs"]


def test_vacuum_keeps_the_last_states_and_says_what_a_rerun_cannot_reach(days, tmp_path):
    g = tmp_path / "g"
    _run(days[:5], g, "gallery.keep_versions=2", "gallery.compact_fraction=0.5")
    m = read_manifest(g)
    assert [d.vacuumed for d in sorted(m.days, key=lambda d: d.day)] == [True, True, True, False, False]
    for rel in {m.snapshot, *m.deltas, *(r["path"] for r in m.id_index["runs"])}:
        assert (g / rel).exists(), rel
    for d in m.days:  # every committed day's faces stay
        assert list((g / d.assignments).glob("*.parquet"))
    clusters = face_clusters(g)
    _run(days[4:5], g, "gallery.keep_versions=2", "gallery.compact_fraction=0.5", force=True)
    assert face_clusters(g).equals(clusters)
    with pytest.raises(GalleryError, match=r"removed by vacuum.*recomputed are 2026-01-01, 2026-01-05"):
        _run(days[3:4], g, "gallery.keep_versions=2", force=True)
    dry = vacuum(g, read_manifest(g), 2, dry_run=True)
    assert dry.removed == [] and dry.kept_days == ["2026-01-04", "2026-01-05"]


def test_vacuum_removes_a_forced_days_earlier_outputs(days, tmp_path):
    g = tmp_path / "g"
    _run(days[:2], g, "gallery.keep_versions=0")
    old = read_manifest(g).days[-1]
    _run(days[1:2], g, "gallery.keep_versions=0", force=True)
    dry = vacuum(g, read_manifest(g), 3, dry_run=True)
    assert old.assignments in dry.removed and old.report in dry.removed
    assert all((g / rel).exists() for rel in dry.removed)
    done = vacuum(g, read_manifest(g), 3)
    assert done.bytes_freed > 0 and not (g / old.assignments).exists()
    assert face_clusters(g).num_rows == read_manifest(g).n_faces


def test_status_reports_bytes_per_kind_and_each_days_figures(days, tmp_path):
    g = tmp_path / "g"
    results = _run(days[:2], g, DELTAS)
    s = results[1].summary
    assert s["bytes_written"] > 0 and s["bytes_read"] > 0
    assert s["stage_tasks"]["write"] > 0 and set(s["stage_tasks"]) <= set(s["stage_seconds"]) | {"other"}
    status = gallery_status(g)
    assert status["bytes_on_disk"]["deltas"] > 0 and status["bytes_on_disk"]["ids"] > 0
    assert status["deltas"] == 1
    assert [d["bytes_written"] for d in status["days"]] == [r.summary["bytes_written"] for r in results]
    assert all(d["tasks"] > 0 for d in status["days"])
    summary = json.loads((g / read_manifest(g).days[-1].report / "summary.json").read_text())
    assert summary["bytes_written"] == s["bytes_written"]
