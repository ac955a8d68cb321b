"""The real face sets through ``calibrate`` and ``run-day``: each set is calibrated on itself, then run as one
day and split into two days (alternate rows) on a LocalCluster, and scored with its labels.

    python scripts/real_data.py [--data tests/data/real] [--out bench-results/real] [--target 0.98]

Writes ``results.json`` and ``results.md`` (the README's real-data table).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client, LocalCluster

from daskcluster.config import Config
from daskcluster.eval.calibrate import calibrate, load_probe, write_config
from daskcluster.eval.metrics import evaluate
from daskcluster.gallery.queries import face_clusters
from daskcluster.run.pipeline import run_day

ROOT = Path(__file__).resolve().parents[1]


def _write_day(table: pa.Table, root: Path, day: str) -> Path:
    d = root / f"day={day}"
    d.mkdir(parents=True)
    pq.write_table(table, d / "part-0.parquet")
    return d


def _score(gallery: Path, table: pa.Table) -> dict:
    clusters = face_clusters(gallery).to_pandas().set_index("face_id")["cluster_id"]
    truth = table.to_pandas().set_index("face_id")["label"]
    return evaluate(truth.loc[clusters.index].to_numpy(), clusters.to_numpy())


def run_set(client: Client, path: Path, target: float, out: Path) -> dict:
    t0 = time.perf_counter()
    cal = calibrate(load_probe(path, Config()), Config(), target)
    write_config(cal, out / f"{path.stem}.yaml", str(path))
    table = pq.read_table(path)
    odd = np.arange(table.num_rows) % 2 == 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run_day(client, _write_day(table, tmp / "one", "2026-01-01"), tmp / "g1", cal.config)
        one = _score(tmp / "g1", table)
        for i, mask in enumerate((~odd, odd)):
            run_day(
                client,
                _write_day(table.filter(pa.array(mask)), tmp / "two", f"2026-01-0{i + 1}"),
                tmp / "g2",
                cal.config,
            )
        two = _score(tmp / "g2", table)
    c = cal.config
    return {
        "set": path.stem,
        "faces": table.num_rows,
        "identities": len(set(table.column("label").to_pylist())),
        "centre": c.preprocess.centre,
        "rule": cal.best["rule"],
        "cluster_threshold": c.cluster.threshold,
        "assign_threshold": c.assign.threshold,
        "one_day": one,
        "two_days": two,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| set | faces | identities | centred | rule | cluster t | assign t | B-cubed P / R / F (one day) "
        "| B-cubed P / R / F (two days) | pairwise F (two days) |",
        "| --- | ---: | ---: | --- | --- | ---: | ---: | --- | --- | ---: |",
    ]
    for r in rows:
        o, t = r["one_day"], r["two_days"]
        lines.append(
            f"| {r['set']} | {r['faces']} | {r['identities']} | {r['centre']} | {r['rule']} | "
            f"{r['cluster_threshold']} | {r['assign_threshold']} | "
            f"{o['bcubed_precision']:.3f} / {o['bcubed_recall']:.3f} / **{o['bcubed_f']:.3f}** | "
            f"{t['bcubed_precision']:.3f} / {t['bcubed_recall']:.3f} / **{t['bcubed_f']:.3f}** | "
            f"{t['pairwise_f']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "tests" / "data" / "real")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "real")
    ap.add_argument("--target", type=float, default=0.98)
    args = ap.parse_args()
    files = sorted(args.data.glob("*.parquet"))
    if not files:
        sys.exit(f"no Parquet files in {args.data}")
    args.out.mkdir(parents=True, exist_ok=True)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0", silence_logs=logging.ERROR) as cluster,
        Client(cluster) as client,
    ):
        rows = [run_set(client, f, args.target, args.out) for f in files]
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    (args.out / "results.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
