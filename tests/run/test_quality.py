"""The quality guards end to end on a real LocalCluster: the distributed pipeline gives exactly the clusters
of the single-process engine (which calibration and the benchmark use), low-quality faces are flagged and
never joined, the chaining guard holds, and the real ORL set clusters well with calibrated thresholds."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from daskcluster.config import Config
from daskcluster.eval.calibrate import calibrate, load_probe
from daskcluster.eval.metrics import evaluate
from daskcluster.gallery.queries import face_clusters
from daskcluster.gallery.tables import load_shard
from daskcluster.run import inprocess as engine
from daskcluster.run.pipeline import run_day

from ..conftest import REAL_DATA, make_config

pytestmark = pytest.mark.distributed

GUARDS = (
    "search.exact=true",
    "ingest.partition_mb=0.3",
    "search.shard_mb=0.6",
    "cluster.threshold=0.55",
    "assign.threshold=0.6",
    "cluster.k=8",
    "quality.floor=0.4",
    "quality.join_threshold=0.7",
    "assign.margin=0.03",
    "cluster.max_size=15",
    "preprocess.centre=true",
)


def _day_data(day_dir) -> tuple[engine.DayData, np.ndarray]:
    t = pa.concat_tables(pq.read_table(f) for f in sorted(day_dir.glob("*.parquet")))
    x = np.stack(t.column("feature").to_numpy(zero_copy_only=False)).astype(np.float32)
    return (
        engine.DayData(t.column("face_id").to_numpy(), x, {"quality": t.column("quality").to_numpy()}),
        t.column("label").to_numpy(),
    )


@pytest.mark.parametrize("rule", [("cluster.min_shared=0.3", "cluster.mutual=true"), ("cluster.link=density",)])
def test_distributed_pipeline_equals_engine_with_every_guard(client, small_days, tmp_path, rule):
    cfg = make_config(*GUARDS, *rule)
    gallery = tmp_path / "gallery"
    summaries = [run_day(client, d, gallery, cfg).summary for d in small_days]
    got = face_clusters(gallery).to_pandas().set_index("face_id")["cluster_id"]
    data = [_day_data(d)[0] for d in small_days]
    want = np.concatenate(engine.run_days(data, cfg))
    ids = np.concatenate([d.ids for d in data])
    assert summaries[0]["knn_index"].startswith("Flat") and len(summaries[0]["input"]) >= 2
    np.testing.assert_array_equal(got.loc[ids].to_numpy(), want)
    assert sum(s["assign_ambiguous"] for s in summaries[1:]) > 0
    cuts = [c for s in summaries for c in s["cut_components"]]
    assert cuts and all(c["pieces"] >= 2 and c["largest_piece"] <= 15 and c["threshold"] > 0.55 for c in cuts)
    assert max(s["largest_new_cluster"] for s in summaries) <= 15


def test_low_quality_faces_are_flagged_and_never_joined(client, small_days, tmp_path):
    cfg = make_config("quality.floor=0.4", "quality.join_threshold=0.99")
    gallery = tmp_path / "gallery"
    for d in small_days[:2]:
        run_day(client, d, gallery, cfg)
    rows = pa.concat_tables(pq.read_table(f) for f in sorted(gallery.glob("assignments/day=*/*/*.parquet")))
    low = rows.filter(pa.compute.equal(rows["decision"], "low_quality")).to_pandas()
    assert len(low) > 0 and (low["quality"] < 0.4).all()
    assert low["cluster_id"].is_unique  # singletons
    manifest = json.loads((gallery / "manifest.json").read_text())
    tables = [load_shard(gallery / manifest["snapshot"], s, manifest["dim"]) for s in range(manifest["n_shards"])]
    not_joinable = set(np.concatenate([t.cluster_id[~t.joinable] for t in tables]).tolist())
    assert set(low["cluster_id"].tolist()) == not_joinable
    assigned = rows.filter(pa.compute.equal(rows["decision"], "assigned")).to_pandas()
    assert not set(assigned["cluster_id"].tolist()) & not_joinable  # day 2 joined none of them


@pytest.fixture(scope="module")
def orl_calibrated(tmp_path_factory):
    probe = load_probe(REAL_DATA / "orl_dlib128.parquet", Config())
    return calibrate(probe, Config(), 0.98)


def test_orl_one_day_and_two_days_with_calibrated_thresholds(client, orl_calibrated, tmp_path):
    cfg = orl_calibrated.config
    assert cfg.preprocess.centre  # dlib features are not zero-centred: calibration finds it
    table = pq.read_table(REAL_DATA / "orl_dlib128.parquet")
    one = tmp_path / "one" / "day=2026-01-01"
    one.mkdir(parents=True)
    pq.write_table(table, one / "part-0.parquet")
    run_day(client, one, tmp_path / "g1", cfg)
    clusters = face_clusters(tmp_path / "g1").to_pandas().set_index("face_id")["cluster_id"]
    truth = table.to_pandas().set_index("face_id")["label"]
    f_one = evaluate(truth.loc[clusters.index].to_numpy(), clusters.to_numpy())["bcubed_f"]
    odd = np.arange(table.num_rows) % 2 == 1
    for i, mask in enumerate((~odd, odd)):
        d = tmp_path / "two" / f"day=2026-01-0{i + 1}"
        d.mkdir(parents=True)
        pq.write_table(table.filter(pa.array(mask)), d / "part-0.parquet")
        run_day(client, d, tmp_path / "g2", cfg)
    clusters = face_clusters(tmp_path / "g2").to_pandas().set_index("face_id")["cluster_id"]
    f_two = evaluate(truth.loc[clusters.index].to_numpy(), clusters.to_numpy())["bcubed_f"]
    assert f_one >= 0.9 and f_two >= 0.9, (f_one, f_two)
