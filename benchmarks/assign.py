"""Benchmark of step 1's search: a day's faces against the gallery's centres, the default against exact search.

One run, one table: for each size n in ``--sizes`` (default 500k) the gallery holds n singleton clusters, the
faces of one synthetic day (``daskcluster.eval.synth``, d=256), and the queries are the n faces of the next day,
whose identities recur. Each face's decision is its best centre at or above ``--threshold`` (the assignment's),
or none. Rows:

- ``exact``: faiss ``IndexFlatIP``; the search of a query sample (``--sample`` faces) is timed and extrapolated
  to all n. Its decisions on the sample are the ground truth of every row.
- ``default``: the product's assignment search as ``run-day`` runs it (``daskcluster.run.day_assign``): the
  quantizer trained on the gallery, the centres listed (far ones spilled, ``search.spill``), the probing gap
  chosen on an exact sample of ``search.audit_sample`` faces for ``search.assign_recall``, then all n faces
  searched (nothing extrapolated).
- ``default, pq codes``: the same with ``search.codec: pq`` (128-byte codes, the best ``8 k`` by code
  re-ranked by exact score): what the codes cost in agreement.
- ``default, no spill``: the same with ``search.spill: 0``.
- ``capped, no spill``: no spill and at most nlist / 8 lists probed (the default's cap before this benchmark).
- ``faiss IVF-Flat`` at ``--ivf-nprobes``: the same lists, faiss's own search of the sample, extrapolated.

Columns: seconds of training, listing and building, calibration and search; the share of the sample's faces
whose decision equals the exact one; the speed-up over exact. ``meets``: agreement >= ``--target-agreement``.
Every method runs on ``--threads`` threads. Output: the table on stdout; one JSON line per row on stderr (and
appended to ``--out FILE.jsonl``). Example: ``python -m benchmarks.assign --sizes 50000 --sample 2000``
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import time
from typing import Any

import numpy as np

from benchmarks.common import JsonLines, finish, format_table, parse_sizes, parser, record, setup_logging
from benchmarks.search import StderrLines, unit_rows
from daskcluster.backends import get_backend
from daskcluster.config import SearchConfig
from daskcluster.eval.synth import SynthSpec, generate_day_arrays
from daskcluster.search import (
    build_shard,
    calibrate,
    choose_index,
    gallery_lists,
    probe,
    sample_rows,
    search_shard,
    train_quantizer,
    train_size,
)

log = logging.getLogger("bench_assign")

K = 2  # the assignment keeps its runner-up (the margin guard)
METHODS = ("default", "pq", "nospill", "previous", "ivf")
LABELS = {
    "exact": "exact",
    "default": "default",
    "pq": "default, pq codes",
    "nospill": "default, no spill",
    "previous": "capped, no spill",
    "ivf": "faiss IVF-Flat",
}


@dataclasses.dataclass
class Data:
    gallery: np.ndarray  # (n, d) singleton centres
    faces: np.ndarray  # (n, d) the next day's faces
    qids: np.ndarray  # the sample compared with exact

    @property
    def n(self) -> int:
        return len(self.faces)


def make_data(args: argparse.Namespace, n: int) -> Data:
    spec = SynthSpec(
        days=2, faces_per_day=n, identities=args.identities or max(10, n // 5), dim=args.dim, seed=args.seed
    )
    gallery = unit_rows(generate_day_arrays(spec, 0).feature)
    faces = unit_rows(generate_day_arrays(spec, 1).feature)
    qids = np.sort(np.random.default_rng(args.seed + 1).choice(n, min(args.sample, n), replace=False))
    return Data(gallery, faces, qids)


def decisions(D: np.ndarray, I: np.ndarray, threshold: float) -> np.ndarray:
    return np.where((I[:, 0] >= 0) & (D[:, 0] >= threshold), I[:, 0], -1)


class Bench:
    def __init__(self, args: argparse.Namespace, data: Data, out: JsonLines):
        self.args, self.data, self.out = args, data, out
        self.exact: np.ndarray | None = None
        self.exact_s = 0.0

    def emit(self, method: str, params: str, times: dict[str, float], decided: np.ndarray, **extra: Any) -> None:
        agreement = float((decided == self.exact).mean()) if self.exact is not None else 1.0
        total = sum(times.values())
        rec = record(
            "assign",
            n=self.data.n,
            dim=self.data.faces.shape[1],
            queries=len(self.data.qids),
            method=method,
            label=LABELS[method],
            params=params,
            **{f"{k}_s": round(v, 2) for k, v in times.items()},
            total_s=round(total, 2),
            agreement=round(agreement, 5),
            assigned=round(float((decided >= 0).mean()), 4),
            speedup=round(self.exact_s / total, 2) if total > 0 else None,
            meets=agreement >= self.args.target_agreement,
            threads=self.args.threads,
            **extra,
        )
        self.out.emit(rec)

    def run_exact(self) -> None:
        import faiss

        d = self.data
        t0 = time.perf_counter()
        index = faiss.IndexFlatIP(d.gallery.shape[1])
        index.add(d.gallery)
        D, I = index.search(np.ascontiguousarray(d.faces[d.qids]), K)
        self.exact_s = (time.perf_counter() - t0) * d.n / len(d.qids)
        self.exact = decisions(D, I, self.args.threshold)
        self.emit("exact", "IndexFlatIP", {"search": self.exact_s}, self.exact, extrapolated=True)

    def run_default(self, method: str, cfg: SearchConfig, cap: int = 0) -> None:
        """The product's assignment search over one gallery shard (``run-day`` splits it over shards; the
        result does not depend on how)."""
        d, t = self.data, self.args.threshold
        backend = self.args.backend
        ids = np.arange(d.n, dtype=np.int64)
        spec = choose_index(d.n, cfg)
        spec = dataclasses.replace(spec, nprobe=cap or spec.nlist).with_codec(cfg)
        t0 = time.perf_counter()
        n_train = train_size(spec, cfg)
        centroids = train_quantizer([sample_rows(ids, d.gallery, n_train)], spec.nlist, n_train, backend)
        t1 = time.perf_counter()
        own, more = gallery_lists(centroids, d.gallery, backend, cfg.spill, cfg.spill_below)
        lists = own if more is None else np.column_stack([own, more])
        shard = build_shard(ids, d.gallery, spec, centroids, backend, lists)
        t2 = time.perf_counter()
        sample = calibrate.sample_faces(ids + d.n, ids, d.faces, cfg.audit_sample)
        sample.exact = calibrate.exact_with_lists(shard, sample, K, t)
        gap = calibrate.gap_from_sample(sample, t, cfg.assign_recall, self_edges=False)
        t3 = time.perf_counter()
        coarse = probe(d.faces, centroids, spec.nprobe, backend, gap)
        D, I = search_shard(shard, d.faces, K, t, coarse)
        t4 = time.perf_counter()
        spilled = 0 if more is None else int((more >= 0).any(axis=1).sum())
        self.emit(
            method,
            f"IVF{spec.nlist}{'' if spec.pq is None else f' PQ{spec.pq[0]} rerank {spec.pq[1]}'} gap {gap:.3f} "
            f"nprobe<={spec.nprobe} spill {cfg.spill}",
            {"train": t1 - t0, "build": t2 - t1, "calibrate": t3 - t2, "search": t4 - t3},
            decisions(D[d.qids], I[d.qids], t),
            extrapolated=False,
            gap=round(gap, 4),
            probes=round(float(coarse.mean), 1),
            spilled=spilled,
        )

    def run_ivf(self) -> None:
        import faiss

        d, cfg = self.data, SearchConfig()
        spec = choose_index(d.n, cfg)
        for nprobe in self.args.ivf_nprobes or [max(32, spec.nlist // 16)]:
            t0 = time.perf_counter()
            quantizer = faiss.IndexFlatIP(d.gallery.shape[1])
            index = faiss.IndexIVFFlat(quantizer, d.gallery.shape[1], spec.nlist, faiss.METRIC_INNER_PRODUCT)
            ids = np.arange(d.n)
            n_train = train_size(spec, cfg)
            index.train(np.ascontiguousarray(sample_rows(ids, d.gallery, n_train)[1]))
            index.add(d.gallery)
            t1 = time.perf_counter()
            index.nprobe = nprobe
            D, I = index.search(np.ascontiguousarray(d.faces[d.qids]), K)
            search_s = (time.perf_counter() - t1) * d.n / len(d.qids)
            self.emit(
                "ivf",
                f"IVF{spec.nlist} nprobe {nprobe}",
                {"build": t1 - t0, "search": search_s},
                decisions(D, I, self.args.threshold),
                extrapolated=True,
            )


def run_size(args: argparse.Namespace, out: JsonLines, n: int) -> None:
    data = make_data(args, n)
    b = Bench(args, data, out)
    b.run_exact()
    base = SearchConfig()
    runs = {
        "default": lambda: b.run_default("default", base),
        "pq": lambda: b.run_default("pq", base.model_copy(update={"codec": "pq"})),
        "nospill": lambda: b.run_default("nospill", base.model_copy(update={"spill": 0})),
        "previous": lambda: b.run_default(
            "previous", base.model_copy(update={"spill": 0}), cap=choose_index(n, base).nprobe
        ),
        "ivf": b.run_ivf,
    }
    for m in args.methods:
        runs[m]()


def table(records: list[dict[str, Any]]) -> str:
    headers = [
        "n",
        "method",
        "params",
        "train s",
        "build s",
        "calibrate s",
        "search s",
        "total s",
        "agreement",
        "speed-up",
        "meets",
    ]
    rows = []
    for r in records:
        rows.append(
            [
                str(r["n"]),
                r["label"],
                r["params"],
                *(f"{r[k]:.1f}" if k in r else "" for k in ("train_s", "build_s", "calibrate_s", "search_s")),
                f"{r['total_s']:.1f}" + ("*" if r.get("extrapolated") else ""),
                f"{r['agreement']:.4f}",
                f"{r['speedup']:.1f}x" if r.get("speedup") else "",
                "yes" if r["meets"] else "no",
            ]
        )
    return format_table(headers, rows, title="assignment: faces against gallery centres (* extrapolated)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__, "backend", "dim", "identities", "seed", "out", "verbose")
    p.add_argument("--sizes", default="500000", help="gallery clusters = faces searched, comma-separated")
    p.add_argument("--sample", type=int, default=20_000, help="faces compared with exact (and timed for it)")
    p.add_argument("--threshold", type=float, default=0.6, help="the assignment threshold")
    p.add_argument("--threads", type=int, default=0, help="threads of every method (0 = all cores)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="besides exact")
    p.add_argument("--ivf-nprobes", type=int, nargs="*", default=[], help="faiss IVF-Flat nprobes (default nlist/16)")
    p.add_argument("--target-agreement", type=float, default=0.995)
    args = p.parse_args(argv)
    args.sizes = parse_sizes(args.sizes)
    args.methods = [m for m in METHODS if m in args.methods]
    args.threads = args.threads or os.cpu_count() or 1
    if not args.sizes or min(args.sizes) < 100 or args.sample < 10:
        p.error("need sizes >= 100 and --sample >= 10")
    return finish(p, args)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    setup_logging(args)
    import faiss
    from threadpoolctl import threadpool_limits

    faiss.omp_set_num_threads(args.threads)
    get_backend(args.backend).set_threads(args.threads)
    with threadpool_limits(limits=args.threads), StderrLines(args.out) as out:
        for n in args.sizes:
            run_size(args, out, n)
    print(table(out.records), flush=True)
    return out.records


if __name__ == "__main__":
    main()
