"""benchmarks/quality.py --quick: outputs written, every method row present and in range, and the plain
pipeline's row equal to the metrics recomputed here from a run of our own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import benchmarks.quality
from daskcluster.config import Config, load_config
from daskcluster.eval.metrics import evaluate
from daskcluster.eval.synth import SynthSpec, generate_day_arrays
from daskcluster.run.inprocess import DayData, run_days

ROOT = Path(__file__).resolve().parents[2]
PROBE_FACES, PROBE_IDS, DAYS, DIM, SEED = 600, 60, 3, 64, 3
METHODS = [
    "ours: plain",
    "ours: +mutual",
    "ours: +shared",
    "ours: +density",
    "ours: +quality",
    "ours: +max_size",
    "ours: +margin",
    "ours: all guards",
    "ours: configured",
    "kNN+threshold components",
    "Infomap (kNN graph)",
    "DBSCAN (kNN graph)",
    "HAC (average, cosine)",
]
UNIT_KEYS = [
    "bcubed_precision",
    "bcubed_recall",
    "bcubed_f",
    "pairwise_precision",
    "pairwise_recall",
    "pairwise_f",
    "nmi",
    "r_s",
]


@pytest.fixture(scope="module")
def bench():
    return benchmarks.quality


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quality")
    config = tmp / "calibrated.yaml"
    config.write_text("cluster:\n  threshold: 0.65\n  mutual: true\nassign:\n  threshold: 0.65\n")
    out = tmp / "out"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.quality",
        "--quick",
        "--sizes",
        "0,2000",
        "--probe-faces",
        str(PROBE_FACES),
        "--probe-identities",
        str(PROBE_IDS),
        "--days",
        str(DAYS),
        "--dim",
        str(DIM),
        "--seed",
        str(SEED),
        "--config",
        str(config),
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_outputs_and_rows(run):
    out, proc = run
    printed = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]  # stdout: JSON lines
    result = json.loads((out / "results.json").read_text())
    assert result["rows"] == printed
    assert result["settings"]["dim"] == DIM and result["settings"]["sizes"] == [0, 2000]
    assert (out / "quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "results.md").read_text()
    assert "| distractors | method | bP | bR | bF | pP | pR | pF | NMI | R#I | R#S | largest |" in table

    for size in (0, 2000):
        rows = {r["method"]: r for r in printed if r["size"] == size}
        assert list(rows) == METHODS
        for r in rows.values():
            assert r["status"] == "ok", r
            assert r["n_probe"] == r["n"] == PROBE_FACES
            assert r["n_faces"] == PROBE_FACES + DAYS * -(-size // DAYS)
            for key in UNIT_KEYS:
                assert 0.0 <= r[key] <= 1.0, (r["method"], key, r[key])
            assert 0.8 * PROBE_IDS <= r["n_identities"] <= PROBE_IDS  # Zipf: a few people have no face
            assert r["r_i"] == pytest.approx(r["n_clusters"] / r["n_identities"])
            assert 1 <= r["largest_cluster"] <= r["largest_all"] <= r["n_faces"] and r["seconds"] >= 0
            assert f"| {r['method']} | {r['bcubed_precision']:.3f} | {r['bcubed_recall']:.3f} |" in table
        if size == 0:  # probe alone: no face outside the probe
            assert all(r["largest_all"] == r["largest_cluster"] for r in rows.values())
    # the quality guard acts: low-quality probe faces stay alone
    zero = {r["method"]: r for r in printed if r["size"] == 0}
    assert zero["ours: +quality"]["bcubed_f"] != zero["ours: plain"]["bcubed_f"]
    assert zero["ours: +quality"]["r_s"] > zero["ours: plain"]["r_s"]


def test_plain_row_recomputed(run):
    """Our own run of the probe alone through the engine, with every guard off, scores exactly the row."""
    _, proc = run
    row = next(
        json.loads(line)
        for line in proc.stdout.splitlines()
        if json.loads(line)["size"] == 0 and json.loads(line)["method"] == "ours: plain"
    )
    spec = SynthSpec(days=DAYS, faces_per_day=PROBE_FACES // DAYS, identities=PROBE_IDS, dim=DIM, seed=SEED)
    arrays = [generate_day_arrays(spec, d) for d in range(DAYS)]
    tree = load_config(ROOT / "configs" / "default.yaml").to_dict()
    tree["cluster"].update(mutual=False, min_shared=0.0, link="all", max_size=0)
    tree["quality"].update(floor=0.0)
    tree["assign"].update(margin=0.0)
    cfg = Config.model_validate(tree)
    pred = np.concatenate(run_days([DayData(a.face_id, a.feature, {"quality": a.quality}) for a in arrays], cfg))
    truth = np.concatenate([a.label for a in arrays])
    expected = evaluate(truth, pred)
    for key, value in expected.items():
        assert row[key] == pytest.approx(value, abs=1e-12), key
    _, sizes = np.unique(pred, return_counts=True)
    assert row["r_i"] == pytest.approx(len(sizes) / len(np.unique(truth)))
    assert row["r_s"] == pytest.approx((sizes == 1).sum() / len(pred))
    assert row["largest_all"] == sizes.max()


def test_budget_and_caps(bench):
    args = bench.parse_args(["--quick", "--budget-s", "100", "--hac-max-faces", "1000"])
    assert args.size_list == [0, 2000] and args.dim == 64 and "configured" not in args.method_keys
    plain, hac = bench.BY_KEY["plain"], bench.BY_KEY["hac"]
    assert bench.skip_reason(plain, 10_000, {}, args) == ""
    assert bench.skip_reason(plain, 10_000, {"plain": (1000, 1.0)}, args) == ""  # 31.6 s
    assert "budget" in bench.skip_reason(plain, 100_000, {"plain": (1000, 1.0)}, args)  # 1000 s
    assert "HAC cap" in bench.skip_reason(hac, 2000, {}, args)
    with pytest.raises(SystemExit):
        bench.parse_args(["--quick", "--methods", "plain,nosuch"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--quick", "--methods", "configured"])  # needs --config


def test_distractors_share_nuisance_only_when_asked(bench):
    """Distractors are other people (other centres) but drift along the probe's blur directions."""
    args = bench.parse_args(["--quick", "--sizes", "3000", "--seed", str(SEED)])
    ds = bench.build_dataset(args, 3000)
    assert (ds.label == -1).sum() == 3000 and ds.probe_identities <= PROBE_IDS
    ids = np.concatenate([d.ids for d in ds.days])
    assert len(np.unique(ids)) == len(ids) and (ids[~ds.probe] >= bench.DISTRACTOR_ID_OFFSET).all()
    shared = ds
    args.independent_nuisance = True
    own = bench.build_dataset(args, 3000)
    probe_x = np.concatenate([d.features for d in shared.days])[shared.probe]
    assert np.array_equal(probe_x, np.concatenate([d.features for d in own.days])[own.probe])
    assert not np.array_equal(
        np.concatenate([d.features for d in shared.days])[~shared.probe],
        np.concatenate([d.features for d in own.days])[~own.probe],
    )
