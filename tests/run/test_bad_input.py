"""Bad input: schema problems stop the run naming file and field; row problems are quarantined with a
reason; either way a failed run leaves the gallery byte-identical."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from daskcluster.gallery.manifest import GalleryError, read_manifest
from daskcluster.run.pipeline import run_day
from daskcluster.stages.inputs import InputError

from ..conftest import make_config, tree_digest

pytestmark = pytest.mark.distributed
DIM = 32


def _features(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 10), dim))
    return (centres[rng.integers(0, len(centres), n)] + 0.2 * rng.standard_normal((n, dim))).astype(np.float32)


def _fixed(x: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(x.ravel(), pa.float32()), x.shape[1])


def write_day(path, ids, feature, **extra) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"face_id": ids, "feature": feature, **extra}), path)
    return str(path)


@pytest.fixture()
def gallery(client, tmp_path):
    """A gallery with one committed day (ids 0..199, d=32)."""
    g = tmp_path / "gallery"
    day = write_day(tmp_path / "in" / "d1.parquet", pa.array(np.arange(200), pa.int64()), _fixed(_features(200, 1)))
    assert run_day(client, day, g, make_config(), day="2026-01-01").status == "committed"
    return g


def _refused(client, gallery, path, match, exc=InputError, **kw):
    before = tree_digest(gallery)
    with pytest.raises(exc, match=match):
        run_day(client, path, gallery, make_config(*kw.pop("overrides", ())), day=kw.pop("day", "2026-01-02"))
    assert tree_digest(gallery) == before


def test_missing_column(client, gallery, tmp_path):
    p = write_day(tmp_path / "bad.parquet", pa.array([1, 2], pa.int64()), pa.array([1.0, 2.0]))
    p2 = tmp_path / "nofeat.parquet"
    pq.write_table(pa.table({"face_id": pa.array([1000], pa.int64())}), p2)
    _refused(client, gallery, p2, r"nofeat\.parquet: required field 'feature' is missing")
    _refused(client, gallery, p, r"bad\.parquet: field 'feature' must be a list")


def test_mistyped_columns(client, gallery, tmp_path):
    x = _fixed(_features(5, 2))
    p = write_day(tmp_path / "ids.parquet", pa.array(["a", "b", "c", "d", "e"]), x)
    _refused(client, gallery, p, r"ids\.parquet: field 'face_id' must be int64, found string")
    strings = pa.array([["x"] * DIM] * 5, pa.list_(pa.string()))
    p = write_day(tmp_path / "feat.parquet", pa.array(np.arange(1000, 1005), pa.int64()), strings)
    _refused(client, gallery, p, r"feat\.parquet: field 'feature' must hold float32/float16 values")


def test_dimension_differs_from_gallery(client, gallery, tmp_path):
    p = write_day(tmp_path / "d16.parquet", pa.array(np.arange(1000, 1010), pa.int64()), _fixed(_features(10, 3, 16)))
    _refused(client, gallery, p, r"d16\.parquet: field 'feature' has dimension 16, the gallery's dimension is 32")


def test_empty_missing_and_corrupt_inputs(client, gallery, tmp_path):
    empty = write_day(tmp_path / "empty.parquet", pa.array([], pa.int64()), _fixed(np.empty((0, DIM), np.float32)))
    _refused(client, gallery, empty, "has no rows")
    _refused(client, gallery, tmp_path / "nope", "does not exist")
    (tmp_path / "emptydir").mkdir()
    _refused(client, gallery, tmp_path / "emptydir", "holds no .parquet files")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    _refused(client, gallery, tmp_path / "junk.parquet", r"junk\.parquet: not a readable Parquet file")


def test_row_problems_are_quarantined(client, gallery, tmp_path):
    x = _features(60, 4).astype(np.float32)
    x[3, 5] = np.nan
    x[4, 0] = np.inf
    x[5] = 0.0
    rows = [list(map(float, v)) for v in x]
    rows[6] = rows[6][:-1]  # wrong dimension in a variable-length list
    rows[7] = None  # null feature
    ids = np.arange(1000, 1060)
    ids[9] = ids[8]  # duplicate within the day
    ids[10] = 5  # already in the gallery
    p = write_day(
        tmp_path / "rows.parquet",
        pa.array(ids, pa.int64()),
        pa.array(rows, pa.list_(pa.float32())),
        camera_id=pa.array(np.arange(60), pa.int32()),
    )
    result = run_day(client, p, gallery, make_config(), day="2026-01-02")
    assert result.status == "committed"
    assert result.summary["quarantined"] == 7 and result.summary["faces_valid"] == 53
    manifest = read_manifest(gallery)
    q = pq.read_table(gallery / manifest.days[-1].quarantine).to_pandas().set_index("_row")
    assert q.loc[3, "reason"] == "feature has NaN or Inf" and q.loc[4, "reason"] == "feature has NaN or Inf"
    assert q.loc[5, "reason"] == "feature is all zeros"
    assert q.loc[6, "reason"] == "feature has dimension 31, expected 32"
    assert q.loc[7, "reason"] == "feature is null"
    assert q.loc[9, "reason"] == "duplicate face_id within the day"
    assert q.loc[10, "reason"] == "face_id already in the gallery"
    assert q.loc[9, "face_id"] == ids[8] and q.loc[9, "camera_id"] == 9
    np.testing.assert_allclose(q.loc[9, "feature"], x[9], rtol=1e-5)  # nothing lost: the row is kept whole
    a = pq.read_table(gallery / manifest.days[-1].assignments).to_pandas()
    assert len(a) == 53 and ids[8] in set(a.face_id) and "camera_id" in a.columns


def test_duplicates_across_partitions_keep_first(client, tmp_path):
    ids = pa.array(np.arange(300), pa.int64())
    f1 = write_day(tmp_path / "in" / "a.parquet", ids, _fixed(_features(300, 5)))
    write_day(tmp_path / "in" / "b.parquet", pa.array(np.arange(250, 350), pa.int64()), _fixed(_features(100, 6)))
    result = run_day(client, tmp_path / "in", tmp_path / "g", make_config("ingest.partition_mb=0.01"), day="2026-01-01")
    assert f1 and result.summary["quarantined"] == 50 and result.summary["faces_valid"] == 350
    q = pq.read_table(tmp_path / "g" / read_manifest(tmp_path / "g").days[0].quarantine).to_pandas()
    assert set(q["_file"].map(lambda s: s.rsplit("/", 1)[-1])) == {"b.parquet"}


def test_error_mode_names_file_and_row(client, gallery, tmp_path):
    x = _features(20, 7)
    x[11] = 0.0
    p = write_day(tmp_path / "strict.parquet", pa.array(np.arange(1000, 1020), pa.int64()), _fixed(x))
    _refused(
        client, gallery, p, r"strict\.parquet: row 11: feature is all zeros", overrides=("ingest.on_bad_row=error",)
    )


def test_mostly_bad_day_is_refused(client, gallery, tmp_path):
    x = np.full((20, DIM), np.nan, np.float32)
    p = write_day(tmp_path / "nan.parquet", pa.array(np.arange(1000, 1020), pa.int64()), _fixed(x))
    _refused(client, gallery, p, "20 of 20 rows .* are bad")


def test_first_day_failure_leaves_no_gallery(client, tmp_path):
    x = np.full((5, DIM), np.nan, np.float32)
    p = write_day(tmp_path / "nan.parquet", pa.array(np.arange(5), pa.int64()), _fixed(x))
    with pytest.raises(InputError):
        run_day(client, p, tmp_path / "fresh", make_config(), day="2026-01-01")
    assert not (tmp_path / "fresh").exists()


def test_day_is_required_without_day_path(client, gallery, tmp_path):
    p = write_day(tmp_path / "x.parquet", pa.array([1000], pa.int64()), _fixed(_features(1, 8)))
    before = tree_digest(gallery)
    with pytest.raises(InputError, match="pass --day"):
        run_day(client, p, gallery, make_config())
    assert tree_digest(gallery) == before


def test_corrupt_manifest_is_reported(client, gallery, tmp_path):
    (gallery / "manifest.json").write_text("{not json")
    p = write_day(tmp_path / "x.parquet", pa.array([1000], pa.int64()), _fixed(_features(1, 9)))
    with pytest.raises(GalleryError, match="unreadable manifest"):
        run_day(client, p, gallery, make_config(), day="2026-01-02")


def test_first_day_variable_lists_take_the_common_dimension(client, tmp_path):
    x = _features(30, 10)
    rows = [list(map(float, v)) for v in x]
    rows[2] = rows[2] + [0.5]
    p = write_day(tmp_path / "var.parquet", pa.array(np.arange(30), pa.int64()), pa.array(rows, pa.list_(pa.float32())))
    result = run_day(client, p, tmp_path / "g", make_config(), day="2026-01-01")
    assert result.summary["quarantined"] == 1 and read_manifest(tmp_path / "g").dim == DIM
    assert result.summary["quarantine_reasons"] == {"feature has dimension 33, expected 32": 1}


def test_float16_features_and_unnormalised_input(client, tmp_path):
    x = (_features(40, 11) * 7.5).astype(np.float16)  # real models' output is often not normalised
    feature = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel(), pa.float16()), DIM)
    p = write_day(tmp_path / "half.parquet", pa.array(np.arange(40), pa.int64()), feature)
    result = run_day(client, p, tmp_path / "g", make_config(), day="2026-01-01")
    assert result.status == "committed" and result.summary["faces_valid"] == 40
    a = pq.read_table(tmp_path / "g" / read_manifest(tmp_path / "g").days[0].assignments).to_pandas()
    np.testing.assert_allclose(
        np.sort(a.feature_norm), np.sort(np.linalg.norm(x.astype(np.float32), axis=1)), rtol=1e-3
    )
