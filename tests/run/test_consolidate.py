"""Cross-day consolidation on a real LocalCluster: a person split across days is merged and exported under one
id; different people are not; a second run with nothing to merge, and a failed run, leave the gallery
byte-identical; a forced re-run of the last day after a consolidation starts from the day before."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from daskcluster.gallery.lineage import lineage_in_force, read_lineage, resolve
from daskcluster.gallery.manifest import GalleryError, read_manifest
from daskcluster.gallery.queries import evaluate_gallery, export_assignments, face_clusters, gallery_status
from daskcluster.gallery.tables import load_shard
from daskcluster.run.consolidate import consolidate_gallery
from daskcluster.run.pipeline import run_day
from daskcluster.stages.consolidate import Candidates, mutual_best

from ..cli.test_cli import dc
from ..conftest import make_config, tree_digest

pytestmark = pytest.mark.distributed

DIM, PEOPLE, FACES = 256, 12, 25
SIGMA = 0.4  # face noise norm: same-person faces ~0.86, a face to its own centre ~0.93
CFG = ("assign.threshold=0.8", "consolidate.threshold=0.7")


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _write_day(path, ids: np.ndarray, x: np.ndarray, labels: np.ndarray):
    path.mkdir(parents=True)
    feature = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel(), pa.float32()), DIM)
    pq.write_table(
        pa.table({"face_id": pa.array(ids, pa.int64()), "feature": feature, "label": pa.array(labels, pa.int64())}),
        path / "part-00000.parquet",
    )
    return path


@pytest.fixture(scope="module")
def split_person(client, tmp_path_factory):
    """Three days of 12 people, 25 faces each a day. Person 0 looks different on day 2 (his centre direction at
    cosine 0.8 to day 1's): his day-2 faces (~0.74 to his cluster's centre) miss it at assign.threshold=0.8
    and form a second cluster. Only days 1-2 are run; day 3 (both looks) is left for the tests."""
    root = tmp_path_factory.mktemp("split")
    rng = np.random.default_rng(3)
    centres = _unit(rng.standard_normal((PEOPLE, DIM)))
    g = rng.standard_normal(DIM)
    away = _unit(g - (g @ centres[0]) * centres[0])
    shifted = centres.copy()
    shifted[0] = _unit(0.8 * centres[0] + 0.6 * away)
    days = []
    for i, looks in enumerate((centres, shifted, np.concatenate([centres, shifted[:1]]))):
        x = _unit(np.repeat(looks, FACES, axis=0) + SIGMA * rng.standard_normal((len(looks) * FACES, DIM)) / DIM**0.5)
        labels = np.repeat(np.arange(len(looks)) % PEOPLE, FACES)
        days.append(_write_day(root / f"day=2026-01-0{i + 1}", np.arange(len(x)) + 1000 * i, x, labels))
    gallery = root / "gallery"
    for d in days[:2]:
        assert run_day(client, d, gallery, make_config(*CFG)).status == "committed"
    return gallery, days


def _copy(gallery, tmp_path):
    shutil.copytree(gallery, tmp_path / "g")
    return tmp_path / "g"


def _labelled(gallery, days) -> pd.DataFrame:
    labels = pd.concat([pq.read_table(d, columns=["face_id", "label"]).to_pandas() for d in days])
    return face_clusters(gallery).to_pandas().merge(labels, on="face_id")


def _snapshot(gallery, rel, n_shards):
    shards = [load_shard(gallery / rel, s, DIM) for s in range(n_shards)]
    return {
        int(c): (n, m, f, la)
        for t in shards
        for c, n, m, f, la in zip(t.cluster_id, t.count, t.mean, t.first_day, t.last_day)
    }


def test_split_person_is_merged_and_exported_as_one(client, split_person, tmp_path):
    g = _copy(split_person[0], tmp_path)
    days = split_person[1]
    before = _labelled(g, days[:2])
    person = before[before.label == 0]
    day1, day2 = (person[person.face_id // 1000 == i].cluster_id.mode()[0] for i in (0, 1))
    assert day1 < day2 and (person.cluster_id == day2).sum() >= 20  # he was split
    assert before[before.label != 0].groupby("label").cluster_id.nunique().max() == 1

    result = consolidate_gallery(client, g, make_config(*CFG))
    assert result.merges == 1 and result.version == 3
    row = result.added.to_pylist()[0]
    assert (row["old_id"], row["new_id"], str(row["day"]), row["version"]) == (day2, day1, "2026-01-02", 3)
    assert row["similarity"] >= 0.7 + 0.1 / FACES**0.5

    manifest = read_manifest(g)
    assert manifest.version == 3 and manifest.n_clusters == PEOPLE and manifest.snapshot == "snapshots/v000003"
    assert lineage_in_force(manifest) == manifest.lineage == "lineage/v000003.parquet"
    assert read_lineage(g, manifest).num_rows == 1 and gallery_status(g)["lineage_rows"] == 1
    old = _snapshot(g, manifest.days[-1].consolidated[0]["snapshot_before"], manifest.n_shards)
    new = _snapshot(g, manifest.snapshot, manifest.n_shards)
    assert day2 not in new and len(new) == len(old) - 1
    (na, ma, fa, _), (nb, mb, _, lb) = old[day1], old[day2]
    n, m, f, la = new[day1]
    assert n == na + nb and f == fa and la == lb
    np.testing.assert_allclose(m, (ma * na + mb * nb) / (na + nb), atol=1e-6)

    export_assignments(g, tmp_path / "e.parquet")
    exported = pq.read_table(tmp_path / "e.parquet").to_pandas().merge(before[["face_id", "label"]], on="face_id")
    assert exported.groupby("label").cluster_id.nunique().max() == 1  # one id per person, both days
    assert exported.cluster_id.nunique() == PEOPLE and set(exported[exported.label == 0].cluster_id) == {day1}
    assert evaluate_gallery(g, days[:2])["bcubed_f"] > evaluate_gallery(split_person[0], days[:2])["bcubed_f"]

    # a day after the consolidation: both of his looks join the merged cluster, the lineage stays in force
    assert run_day(client, days[2], g, make_config(*CFG)).status == "committed"
    assert lineage_in_force(read_manifest(g)) == "lineage/v000003.parquet"
    after = _labelled(g, days)
    assert set(after[after.label == 0].cluster_id) == {day1} and after.cluster_id.nunique() == PEOPLE


def test_different_people_are_never_merged(client, small_days, tmp_path):
    """A realistic synthetic gallery (IVF search): every merge is within one true identity, chains of merges
    resolve, recall rises and precision holds; with a size cap no merge exceeds it."""
    gallery = tmp_path / "g"
    cfg = make_config("search.flat_below=50", "search.nprobe=4")
    for d in small_days[:2]:
        run_day(client, d, gallery, cfg)
    shutil.copytree(gallery, tmp_path / "capped")
    base = evaluate_gallery(gallery, small_days[:2])
    result = consolidate_gallery(
        client, gallery, make_config("search.flat_below=50", "search.nprobe=4", "consolidate.threshold=0.75"), rounds=3
    )
    assert result.merges >= 5, result.message
    labels = pd.concat([pq.read_table(d, columns=["face_id", "label"]).to_pandas() for d in small_days[:2]])
    raw = pd.concat(
        [
            pq.read_table(f, columns=["face_id", "cluster_id"]).to_pandas()
            for d in read_manifest(gallery).days
            for f in (gallery / d.assignments).glob("*.parquet")
        ]
    )
    majority = raw.merge(labels, on="face_id").groupby("cluster_id").label.agg(lambda s: s.mode()[0])
    lineage = read_lineage(gallery, read_manifest(gallery)).to_pandas()
    assert (majority.loc[lineage.old_id].to_numpy() == majority.loc[lineage.new_id].to_numpy()).all()
    assert (lineage.new_id < lineage.old_id).all() and lineage.old_id.is_unique
    after = evaluate_gallery(gallery, small_days[:2])
    assert (
        after["bcubed_recall"] > base["bcubed_recall"] and after["bcubed_precision"] >= base["bcubed_precision"] - 0.01
    )

    capped = consolidate_gallery(
        client, tmp_path / "capped", make_config("consolidate.threshold=0.7", "cluster.max_size=40"), rounds=3
    )
    manifest = read_manifest(tmp_path / "capped")
    sizes = _snapshot(tmp_path / "capped", manifest.snapshot, manifest.n_shards)
    added = capped.added.to_pandas()
    survivors = set(resolve(added.new_id.to_numpy(), added.old_id.to_numpy(), added.new_id.to_numpy()).tolist())
    assert capped.merges >= 1 and max(sizes[i][0] for i in survivors) <= 40


def test_nothing_to_merge_changes_nothing(client, split_person, tmp_path):
    g = _copy(split_person[0], tmp_path)
    assert consolidate_gallery(client, g, make_config(*CFG)).merges == 1
    before = tree_digest(g)
    again = consolidate_gallery(client, g, make_config(*CFG), rounds=3)
    assert again.merges == 0 and again.version is None and "nothing to merge" in again.message
    assert tree_digest(g) == before
    shutil.copytree(split_person[0], tmp_path / "unmerged")
    before = tree_digest(tmp_path / "unmerged")
    strict = consolidate_gallery(client, tmp_path / "unmerged", make_config())  # default threshold 0.8
    assert strict.merges == 0 and tree_digest(tmp_path / "unmerged") == before


@pytest.mark.parametrize("how", ["blocked", "read-only"])
def test_failure_leaves_the_gallery_unchanged(client, split_person, tmp_path, how):
    g = _copy(split_person[0], tmp_path)
    if how == "blocked":  # a file where the lineage directory must go: works even as root
        (g / "lineage").write_text("not a directory")
    elif os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    before = tree_digest(g)
    if how == "read-only":
        g.chmod(0o555)  # snapshots/ stays writable: the snapshot is written, then the lineage fails
    try:
        with pytest.raises(OSError):
            consolidate_gallery(client, g, make_config(*CFG))
    finally:
        g.chmod(0o755)
    assert tree_digest(g) == before
    assert not (g / "snapshots" / "v000003").exists() and read_manifest(g).version == 2


def test_forced_rerun_of_last_day_after_consolidation(client, split_person, tmp_path):
    gallery, days = split_person
    g = _copy(gallery, tmp_path)
    unmerged = face_clusters(g).to_pandas().sort_values("face_id").reset_index(drop=True)
    first = consolidate_gallery(client, g, make_config(*CFG))
    rerun = run_day(client, days[1], g, make_config(*CFG), force=True)
    assert rerun.status == "committed"
    manifest = read_manifest(g)
    assert manifest.version == 4 and manifest.days[-1].consolidated == [] and lineage_in_force(manifest) is None
    assert manifest.days[-1].snapshot_before == manifest.days[0].snapshot == "snapshots/v000001"
    again = face_clusters(g).to_pandas().sort_values("face_id").reset_index(drop=True)
    assert again.equals(unmerged)  # the day was recomputed from the day before, merges and all undone
    second = consolidate_gallery(client, g, make_config(*CFG))
    assert second.version == 5 and second.added.select(["old_id", "new_id"]).equals(
        first.added.select(["old_id", "new_id"])
    )


def test_cli_consolidate(client, split_person, tmp_path):
    g = _copy(split_person[0], tmp_path)
    sched = client.scheduler.address  # the session's cluster: no cluster start in the subprocess
    out = dc("consolidate", "--gallery", g, "--scheduler", sched, "--set", "consolidate.threshold=0.7", "--rounds", 2)
    assert "1 clusters merged" in out.stderr and read_manifest(g).version == 3
    out = dc("consolidate", "--gallery", tmp_path / "nope", "--scheduler", sched, check=False)
    assert out.returncode == 2 and "not a gallery" in " ".join(out.stderr.split())  # rich wraps lines
    assert not (tmp_path / "nope").exists()


def test_resolve_follows_chains():
    old, new = np.array([5, 3, 9, 12]), np.array([3, 1, 5, 9])
    np.testing.assert_array_equal(resolve(np.array([5, 9, 3, 7, 1, 12]), old, new), [1, 1, 1, 7, 1, 1])
    with pytest.raises(GalleryError, match="newer id"):
        resolve(np.array([1]), np.array([1, 2]), np.array([2, 1]))


def test_mutual_best_is_a_matching():
    a, b = np.array([1, 2, 3, 4, 5, 6]), np.array([2, 1, 2, 5, 6, 5])
    merges = mutual_best(Candidates(a, b, np.full(6, 0.9, np.float32), np.ones(6), np.ones(6)))
    assert list(zip(merges.survivor, merges.absorbed)) == [(1, 2), (5, 6)]  # 3 -> 2 and 4 -> 5 are not mutual
