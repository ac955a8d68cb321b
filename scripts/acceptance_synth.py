"""The issue's acceptance recipe on our own synthetic data: calibrate on day 1's labelled faces at a target
precision, then run every day with the config it wrote (in-process engine) and score all faces.

    python scripts/acceptance_synth.py [--seed 5] [--faces-per-day 10000] [--days 3] [--dim 128] [--target 0.98]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from daskcluster.config import Config
from daskcluster.eval.calibrate import Probe, calibrate
from daskcluster.eval.metrics import SCORES, evaluate
from daskcluster.eval.synth import SynthSpec, generate_day_arrays
from daskcluster.run import inprocess as engine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--faces-per-day", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--target", type=float, default=0.98)
    args = ap.parse_args()
    n = args.faces_per_day
    spec = SynthSpec(days=args.days, faces_per_day=n, identities=n // 3, dim=args.dim, seed=args.seed)
    days = [generate_day_arrays(spec, i) for i in range(spec.days)]
    data = [engine.DayData(d.face_id, d.feature, {"quality": d.quality.astype(np.float64)}) for d in days]
    t0 = time.perf_counter()
    cal = calibrate(Probe(data[0], days[0].label, len(days[0].label)), Config(), args.target)
    print(f"calibrated in {time.perf_counter() - t0:.0f} s: {json.dumps(cal.overrides)}")
    labels = np.concatenate(engine.run_days(data, cal.config))
    truth = np.concatenate([d.label for d in days])
    m = evaluate(truth, labels)
    true_largest = int(np.unique(truth, return_counts=True)[1].max())
    scores = {k: m[k] for k in (*SCORES[:6], "largest_cluster")}
    extra = {"max_size": cal.config.cluster.max_size, "largest_true_identity": true_largest}
    print(json.dumps(scores | extra))


if __name__ == "__main__":
    main()
