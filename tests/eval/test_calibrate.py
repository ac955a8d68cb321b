"""``daskcluster calibrate`` as users call it: a labelled probe in, a config file, a table and a plot out; and
the issue's acceptance recipe on held-out synthetic days (calibrate on day 1, run every day with it)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from daskcluster.config import Config, load_config
from daskcluster.eval.calibrate import Probe, calibrate
from daskcluster.eval.metrics import evaluate
from daskcluster.eval.synth import SynthSpec, generate_day_arrays
from daskcluster.run import inprocess as engine

from ..cli.test_cli import dc
from ..conftest import REAL_DATA


def test_calibrate_cli_writes_a_usable_config_and_plot(tmp_path):
    out = tmp_path / "cal.yaml"
    res = dc("calibrate", "--probe", REAL_DATA / "celeb5_dlib128.parquet", "--target-precision", 0.98, "--out", out)
    cfg = load_config(out, environ={})
    written = yaml.safe_load(out.read_text())
    assert cfg.cluster.threshold == written["cluster"]["threshold"] and cfg.preprocess.centre  # dlib: centred
    assert cfg.cluster.max_size > 0
    assert (tmp_path / "cal.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "calibration" in res.stdout and "final" in res.stdout


def test_calibrate_with_distractors_and_bad_probe(tmp_path):
    table = pq.read_table(REAL_DATA / "facenet_leaders7.parquet")
    day = tmp_path / "day=2026-01-01"
    day.mkdir()
    pq.write_table(
        pq.read_table(REAL_DATA / "celeb5_facenet.parquet")
        .drop_columns(["label", "identity"])
        .set_column(0, "face_id", pa.array(np.arange(118) + 10**9)),
        day / "a.parquet",
    )
    res = dc(
        "calibrate",
        "--probe",
        REAL_DATA / "facenet_leaders7.parquet",
        "--day-input",
        day,
        "--target-precision",
        0.95,
        "--out",
        tmp_path / "c.yaml",
    )
    assert "313 labelled faces, 118 distractors" in res.stderr
    pq.write_table(table.drop_columns(["label"]), tmp_path / "nolabel.parquet")
    bad = dc(
        "calibrate",
        "--probe",
        tmp_path / "nolabel.parquet",
        "--target-precision",
        0.98,
        "--out",
        tmp_path / "x.yaml",
        check=False,
    )
    assert bad.returncode == 2 and "nolabel.parquet" in bad.stderr and "label" in bad.stderr


@pytest.mark.slow
def test_acceptance_recipe_on_held_out_synthetic_days():
    """Calibrate on day 1's labelled faces, run all days with the config: precision holds over all days."""
    spec = SynthSpec(days=3, faces_per_day=4000, identities=1200, dim=128, seed=21)
    days = [generate_day_arrays(spec, i) for i in range(spec.days)]
    data = [engine.DayData(d.face_id, d.feature, {"quality": d.quality.astype(np.float64)}) for d in days]
    cal = calibrate(Probe(data[0], days[0].label, len(days[0].label)), Config(), 0.98)
    labels = np.concatenate(engine.run_days(data, cal.config))
    m = evaluate(np.concatenate([d.label for d in days]), labels)
    assert m["bcubed_precision"] >= 0.97 and m["pairwise_precision"] >= 0.95
