"""End to end on a real LocalCluster: three labelled days, quality, idempotence, order rules, and exact
mode against the single-process numpy reference of the two steps."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from daskcluster.gallery.manifest import GalleryError, read_manifest
from daskcluster.gallery.queries import evaluate_gallery, face_clusters, gallery_status
from daskcluster.run.pipeline import run_day

from ..conftest import make_config, tree_digest
from ..reference import ReferenceGallery

pytestmark = pytest.mark.distributed

# the reference system's two steps: every guard off
EXACT = (
    "search.exact=true",
    "assign.threshold=0.5",
    "cluster.threshold=0.5",
    "cluster.k=10",
    "cluster.min_shared=0",
    "cluster.max_size=0",
    "quality.floor=0",
)


def _read_day(day_dir):
    t = pq.read_table(day_dir)
    x = np.stack(t.column("feature").to_numpy(zero_copy_only=False)).astype(np.float32)
    return t.column("face_id").to_numpy(), x, t.column("label").to_numpy()


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.fixture(scope="module")
def three_days(client, small_days, tmp_path_factory):
    gallery = tmp_path_factory.mktemp("g3") / "gallery"
    cfg = make_config()
    results = [run_day(client, d, gallery, cfg) for d in small_days]
    return gallery, results


def test_three_days_commit_and_quality(three_days, small_days):
    gallery, results = three_days
    assert [r.status for r in results] == ["committed"] * 3
    manifest = read_manifest(gallery)
    assert [d.day for d in manifest.days] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert manifest.n_faces == 4500 and manifest.version == 3
    assert results[1].summary["assigned"] > 0.5 * 1500  # identities recur: most day-2 faces join clusters
    metrics = evaluate_gallery(gallery, small_days)
    assert metrics["n"] == 4500
    assert metrics["bcubed_precision"] >= 0.95
    assert metrics["bcubed_recall"] >= 0.6


def test_rerun_is_noop_and_gallery_unchanged(client, three_days, small_days):
    gallery, _ = three_days
    before = tree_digest(gallery)
    result = run_day(client, small_days[1], gallery, make_config())
    assert result.status == "skipped" and "already committed" in result.message
    assert tree_digest(gallery) == before


def test_earlier_day_refused_unless_forced(client, small_days, tmp_path):
    gallery = tmp_path / "g"
    cfg = make_config()
    run_day(client, small_days[0], gallery, cfg)
    run_day(client, small_days[2], gallery, cfg)
    before = tree_digest(gallery)
    with pytest.raises(GalleryError, match="before the last committed day"):
        run_day(client, small_days[1], gallery, cfg)
    assert tree_digest(gallery) == before
    forced = run_day(client, small_days[1], gallery, cfg, force=True)
    assert forced.status == "committed"
    assert [d.day for d in read_manifest(gallery).days] == ["2026-01-01", "2026-01-02"]


def test_force_recomputes_same_result(client, small_days, tmp_path):
    gallery = tmp_path / "g"
    cfg = make_config(*EXACT)
    for d in small_days[:2]:
        run_day(client, d, gallery, cfg)
    first = face_clusters(gallery).to_pandas().sort_values("face_id").reset_index(drop=True)
    again = run_day(client, small_days[1], gallery, cfg, force=True)
    assert again.status == "committed"
    second = face_clusters(gallery).to_pandas().sort_values("face_id").reset_index(drop=True)
    assert first.equals(second)
    assert read_manifest(gallery).version == 3


def test_exact_mode_matches_numpy_reference(client, small_days, tmp_path):
    gallery = tmp_path / "g"
    cfg = make_config(*EXACT)
    ref = ReferenceGallery()
    for d in small_days:
        run_day(client, d, gallery, cfg)
        ids, x, _ = _read_day(d)
        expected = ref.run_day(ids, x, 0.5, 0.5, 10)
        got = face_clusters(gallery).to_pandas().set_index("face_id").loc[ids, "cluster_id"].to_numpy()
        assert _same_partition(got, expected), f"day {d.name} differs from the reference"
        np.testing.assert_array_equal(got, expected)  # even the ids: counter order by smallest face_id


def test_default_search_close_to_exact(client, tmp_path):
    from daskcluster.eval.synth import SynthSpec, write_dataset

    days = write_dataset(SynthSpec(days=1, faces_per_day=30_000, identities=3000, dim=128, seed=5), tmp_path / "d")
    f = {}
    for mode, extra in (("exact", ("search.exact=true",)), ("ivf", ())):
        res = run_day(client, days[0], tmp_path / mode, make_config(*extra))
        f[mode] = evaluate_gallery(tmp_path / mode, days)["bcubed_f"]
    assert res.summary["knn_index"].startswith("IVF") and "gap=" in res.summary["knn_index"]
    assert res.summary["edge_recall"] >= 0.97  # the audit half: ~0.99 (search.target_recall) +- sampling
    assert abs(f["exact"] - f["ivf"]) <= 0.02


def test_status_and_report(three_days):
    gallery, results = three_days
    status = gallery_status(gallery)
    assert status["faces"] == 4500 and len(status["days"]) == 3
    report = gallery / read_manifest(gallery).days[-1].report
    summary = json.loads((report / "summary.json").read_text())
    assert summary["quality_gallery"]["n"] == 4500
    assert (report / "dask-report.html").exists() and (report / "config.yaml").exists()


def test_gallery_quantizer_is_persisted_reused_and_retrained(client, small_days, tmp_path):
    from daskcluster.config import load_config
    from daskcluster.run.maintenance import retrain_quantizer

    gallery = tmp_path / "g"
    cfg = make_config("search.flat_below=50")
    r1, r2, r3 = (run_day(client, d, gallery, cfg) for d in small_days)
    assert "assign_quantizer" not in r1.summary and r2.summary["assign_quantizer"] == "trained"
    assert "gap=" in r2.summary["assign_index"] and r2.summary["assign_agreement"] >= 0.99
    stored = read_manifest(gallery).days[1].quantizer
    assert stored and (gallery / stored["path"]).exists()
    assert r3.summary["assign_quantizer"] == f"reused {stored['path']}"
    before = read_manifest(gallery).version
    result = retrain_quantizer(gallery, load_config(environ={}))
    manifest = read_manifest(gallery)
    assert manifest.version == before + 1 and manifest.quantizer["path"] == result["path"] != stored["path"]
    assert manifest.days[-1].quantizer == manifest.quantizer and (gallery / result["path"]).exists()


def test_exact_mode_independent_of_partition_size(client, small_days, tmp_path):
    got = {}
    for mb in (0.05, 0.3, 64):
        for d in small_days:
            run_day(client, d, tmp_path / f"g{mb}", make_config(*EXACT, f"ingest.partition_mb={mb}"))
        got[mb] = face_clusters(tmp_path / f"g{mb}").to_pandas().sort_values("face_id").reset_index(drop=True)
    assert got[0.05].equals(got[64]) and got[0.3].equals(got[64])


def test_ivf_mode_independent_of_partition_size(client, small_days, tmp_path):
    """The calibrated gap, the probes and the search (both ways, its reverse candidates crossing shards and
    workers) do not depend on how a day is partitioned or sharded."""
    got, gaps = {}, {}
    layouts = {"one": ("ingest.partition_mb=64",), "many": ("ingest.partition_mb=0.05", "search.shard_mb=0.08")}
    for name, layout in layouts.items():
        for d in small_days:
            res = run_day(client, d, tmp_path / f"g{name}", make_config("search.flat_below=100", *layout))
        gaps[name] = (res.summary["knn_index"], res.summary["assign_index"])
        got[name] = face_clusters(tmp_path / f"g{name}").to_pandas().sort_values("face_id").reset_index(drop=True)
    assert "gap=" in gaps["one"][0] and gaps["many"] == gaps["one"]
    assert got["many"].equals(got["one"])


def test_searching_both_ways_raises_edge_recall(client, tmp_path):
    from daskcluster.eval.synth import SynthSpec, write_dataset

    days = write_dataset(SynthSpec(days=1, faces_per_day=20_000, identities=2000, dim=64, seed=9), tmp_path / "d")
    recall = {}
    for both in ("true", "false"):
        cfg = make_config("search.flat_below=100", "search.gap=0.03", f"search.both_ways={both}")
        recall[both] = run_day(client, days[0], tmp_path / both, cfg).summary["edge_recall"]
    assert recall["true"] > recall["false"]
