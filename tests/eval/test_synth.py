"""Tests for daskcluster.synth: day format, determinism, realism statistics (cosine), speed."""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from daskcluster.eval import synth
from daskcluster.eval.synth import (
    SynthSpec,
    generate_day,
    generate_day_arrays,
    lookalike_pairs,
    population,
    write_dataset,
)

SMALL = SynthSpec(days=3, faces_per_day=400, identities=150, dim=32, seed=7, files_per_day=2)
REALISM = SynthSpec(days=1, faces_per_day=5000, identities=1000, dim=128, seed=1)


def _clear_caches() -> None:
    for fn in (synth._population, synth._block_centres, synth._pose_bank, synth._blur_basis):
        fn.cache_clear()


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _read_days(dirs: list[Path]) -> list[pa.Table]:
    """Each day's files concatenated, cast to the day schema (Parquet renames the list child)."""

    def read(d: Path) -> pa.Table:
        parts = [pq.ParquetFile(f).read() for f in sorted(d.glob("*.parquet"))]
        return pa.concat_tables(parts).cast(synth.day_schema(parts[0].schema.field("feature").type.list_size))

    return [read(d) for d in dirs]


# ---------------------------------------------------------------------------------------------- format


def test_schema_and_dtypes() -> None:
    t = generate_day(SMALL, 1)
    assert t.schema.equals(synth.day_schema(32))
    assert t.num_rows == SMALL.faces_per_day
    assert pa.types.is_fixed_size_list(t.schema.field("feature").type)
    assert t.schema.field("feature").type.list_size == 32
    assert t.schema.field("feature").type.value_type == pa.float32()
    assert [t.schema.field(c).type for c in ("face_id", "label", "camera_id", "quality")] == [
        pa.int64(),
        pa.int64(),
        pa.int32(),
        pa.float32(),
    ]
    assert t.schema.field("captured_at").type == pa.timestamp("ms")
    assert t.column("feature").null_count == 0


def test_values_in_range() -> None:
    d = generate_day_arrays(SMALL, 2)
    start = np.datetime64(SMALL.start_date + datetime.timedelta(days=2), "ms").astype(np.int64)
    assert d.captured_at_ms.min() >= start and d.captured_at_ms.max() < start + synth.MS_PER_DAY
    assert d.quality.min() >= 0.0 and d.quality.max() <= 1.0
    assert d.label.min() >= 0 and d.label.max() < SMALL.identities
    assert d.camera_id.min() >= 0 and d.camera_id.max() < SMALL.n_cameras
    norms = np.linalg.norm(d.feature, axis=1)
    assert norms.min() > 2.0 and norms.max() < 45.0 and norms.std() > 1.0  # raw, not normalised
    assert np.all(np.isfinite(d.feature))


def test_rows_shuffled() -> None:
    label = generate_day_arrays(SMALL, 0).label
    assert not np.all(np.diff(label) >= 0)


@pytest.mark.parametrize("dim", [16, 32, 256])
def test_tiny_specs(dim: int) -> None:
    spec = SynthSpec(days=1, faces_per_day=50, identities=10, dim=dim)
    t = generate_day(spec, 0)
    assert t.num_rows == 50 and t.column("feature").type.list_size == dim
    assert set(t.column("label").to_numpy()) <= set(range(10))


def test_invalid_spec_and_day() -> None:
    with pytest.raises(ValueError):
        SynthSpec(dim=8)
    with pytest.raises(ValueError):
        SynthSpec(lowq_fraction=1.5)
    with pytest.raises(ValueError):
        generate_day(SMALL, SMALL.days)


def test_write_dataset_layout_and_unique_ids(tmp_path: Path) -> None:
    dirs = write_dataset(SMALL, tmp_path)
    assert [d.name for d in dirs] == ["day=2026-01-01", "day=2026-01-02", "day=2026-01-03"]
    for d in dirs:
        assert sorted(p.name for p in d.iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    tables = _read_days(dirs)
    ids = np.concatenate([t.column("face_id").to_numpy() for t in tables])
    assert len(ids) == SMALL.days * SMALL.faces_per_day
    assert len(np.unique(ids)) == len(ids)


# ---------------------------------------------------------------------------------------- determinism


def test_byte_identical_runs(tmp_path: Path) -> None:
    a = write_dataset(SMALL, tmp_path / "a")
    _clear_caches()
    b = write_dataset(SMALL, tmp_path / "b")
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.parquet"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.parquet"))
    assert files_a == files_b and len(files_a) == SMALL.days * SMALL.files_per_day
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert len(a) == len(b)


def test_day_independent_of_generation_order(tmp_path: Path) -> None:
    _clear_caches()
    alone = generate_day(SMALL, 2)
    full = _read_days(write_dataset(SMALL, tmp_path))[2]
    assert alone.equals(full)


def test_seed_changes_output() -> None:
    a = generate_day(SMALL, 0)
    b = generate_day(SynthSpec(**{**SMALL.__dict__, "seed": SMALL.seed + 1}), 0)
    assert not a.column("feature").equals(b.column("feature"))


# -------------------------------------------------------------------------------------------- realism


@pytest.fixture(scope="module")
def realism() -> tuple[synth.SynthDay, np.ndarray]:
    d = generate_day_arrays(REALISM, 0)
    return d, _unit(d.feature)


def _balanced_same_pairs(label: np.ndarray, keep: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Cosines of up to 20 random same-identity pairs per identity (each identity weighted equally)."""
    rng, out = np.random.default_rng(0), []
    for lab in np.unique(label[keep]):
        idx = np.flatnonzero((label == lab) & keep)
        if len(idx) >= 2:
            a, b = rng.choice(idx, 20), rng.choice(idx, 20)
            out.append(np.einsum("ij,ij->i", x[a[a != b]], x[b[a != b]]))
    return np.concatenate(out)


def _cross_pairs(x: np.ndarray, label: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """Cosines of all pairs (ia x ib) whose identities differ."""
    sim = x[ia] @ x[ib].T
    return sim[label[ia][:, None] != label[ib][None, :]]


def test_same_identity_similarity(realism) -> None:
    d, x = realism
    sims = _balanced_same_pairs(d.label, ~d.lowq, x)
    assert 0.62 <= np.median(sims) <= 0.74
    assert np.mean((sims > 0.5) & (sims < 0.85)) > 0.85


def test_different_identity_similarity(realism) -> None:
    d, x = realism
    normal = np.flatnonzero(~d.lowq)[:1500]
    sims = _cross_pairs(x, d.label, normal, normal)
    assert abs(np.median(sims)) < 0.02
    assert 0.05 < sims.std() < 0.12  # ~1/sqrt(dim)


def test_lookalikes_between(realism) -> None:
    d, x = realism
    pairs = lookalike_pairs(REALISM)
    assert len(pairs) > 0.05 * REALISM.identities
    pop = population(REALISM)
    assert np.all(pop.parent[pairs[:, 1]] == -1)  # parents are not look-alikes themselves
    sims = []
    for child, parent in pairs:
        a = np.flatnonzero((d.label == child) & ~d.lowq)
        b = np.flatnonzero((d.label == parent) & ~d.lowq)
        sims.append((x[a] @ x[b].T).ravel())
    sims = np.concatenate(sims)
    assert len(sims) > 200
    same = np.median(_balanced_same_pairs(d.label, ~d.lowq, x))
    assert 0.25 < np.median(sims) < 0.5
    assert 0.1 < np.median(sims) < same - 0.2
    assert np.mean(sims > 0.6) < 0.05  # mostly separable at a 0.6 threshold


def test_lowq_faces_drift_together(realism) -> None:
    d, x = realism
    low, normal = np.flatnonzero(d.lowq), np.flatnonzero(~d.lowq)[:1500]
    assert 0.03 < len(low) / len(d.label) < 0.08
    lq = np.median(_cross_pairs(x, d.label, low, low))
    nn = np.median(_cross_pairs(x, d.label, normal, normal))
    assert lq > nn + 0.25
    assert 0.3 <= lq <= 0.5


def test_quality_and_norm_lower_for_lowq(realism) -> None:
    d, _ = realism
    assert d.quality[d.lowq].mean() < d.quality[~d.lowq].mean() - 0.25
    norms = np.linalg.norm(d.feature, axis=1)
    assert np.median(norms[d.lowq]) < np.median(norms[~d.lowq]) - 5
    assert 10 < np.median(norms[~d.lowq]) < 30
    assert np.corrcoef(norms, d.quality)[0, 1] > 0.5
    assert d.quality[~d.lowq].std() > 0.05  # noisy for everyone


def test_zipf_popularity(realism) -> None:
    d, _ = realism
    counts = np.bincount(d.label)
    counts = counts[counts > 0]
    assert counts.max() > 20 * np.median(counts)
    assert np.mean(counts <= 2) > 0.3  # long tail seen once or twice


def test_identities_recur_and_arrive() -> None:
    spec = SynthSpec(days=3, faces_per_day=3000, identities=800, dim=32, seed=3, new_identity_rate=0.1)
    labels = [set(generate_day_arrays(spec, day).label.tolist()) for day in range(spec.days)]
    first_day = population(spec).first_day
    recurring = labels[0] & labels[1] & labels[2]
    assert len(recurring) > 50
    for day, labs in enumerate(labels):
        assert np.all(first_day[list(labs)] <= day)
    new_on_2 = labels[2] - labels[0] - labels[1]
    assert np.any(first_day[list(new_on_2)] == 2)


# ---------------------------------------------------------------------------------------------- speed


def test_runtime_200k_by_256() -> None:
    spec = SynthSpec(days=1, faces_per_day=200_000, identities=20_000, dim=256, seed=5)
    start = time.perf_counter()
    t = generate_day(spec, 0)
    elapsed = time.perf_counter() - start
    assert t.num_rows == 200_000
    assert elapsed < 30.0, f"{elapsed:.1f} s"
