"""Benchmark of step 2's k-NN graph: the project's default against exact search and its peers, in one table.

One run, one table: for each size in ``--sizes`` (default 200k and 1M faces of a synthetic day from
``daskcluster.eval.synth``, L2-normalised, d=256) every method builds the k-NN graph of all faces against all
faces, and each row shows its time and its edge recall:

- ``exact``: faiss ``IndexFlatIP``; the search of a query sample (``--sample`` rows) is timed and extrapolated
  linearly to all n queries. Its top-k on the sample is the ground truth of every row.
- ``default``: the project's own graph, ``daskcluster.search.graph.self_knn`` on all n faces (a true
  all-vs-all, nothing extrapolated).
- ``default one-way``: the same with ``search.both_ways: false`` (each product kept for the query only), to
  show what searching both ways buys.
- ``faiss IVF-Flat`` at ``--ivf-nprobes``: nlist 4096 at n >= 500k, else 1024 (``--ivf-nlist``), trained with
  faiss's k-means on max(50k, 39 nlist) sampled rows; train + add + the sample's search extrapolated.
- ``faiss HNSW`` (``IndexHNSWFlat``, M 32, efConstruction 40) at ``--hnsw-ef`` efSearch: the add of all n
  (the build) + the sample's search extrapolated.
- ``pynndescent``: ``NNDescent`` builds the whole k-NN graph: its time is the build, nothing extrapolated (the
  numba compilation is done once beforehand, on a tiny array, and not counted).

Each face finds itself, so ``k + 1`` neighbours are searched and the face itself is dropped. Edge recall (by
id, ``daskcluster.search.edge_recall``): the fraction of the exact top-k edges with similarity >= ``--threshold``
on the sample rows that the method's top-k also holds. Speed-up: the exact all-vs-all time over the method's
total (training + build + search of all faces). ``meets``: edge recall >= ``--target-recall`` and speed-up >=
``--target-speedup-1m`` at n >= 1M (``--target-speedup`` below). Every method runs on ``--threads`` threads
(faiss OpenMP, numpy BLAS through threadpoolctl, numba for pynndescent).

Output: the table on stdout, then one line per size saying whether the default beats every peer at equal or
higher edge recall; one JSON line per row on stderr (and appended to ``--out FILE.jsonl``). With ``--real-dir``
the small real sets of ``tests/data/real`` get rows too (every row is a query there: nothing extrapolated).
Example: ``python -m benchmarks.search --sizes 20000 50000 --sample 2000``
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import ROOT, JsonLines, finish, format_table, parse_sizes, parser, record, setup_logging
from daskcluster.backends import get_backend
from daskcluster.config import SearchConfig
from daskcluster.eval.synth import SynthSpec, generate_day_arrays
from daskcluster.search import edge_recall

log = logging.getLogger("bench_search")

REAL_DIR = ROOT / "tests" / "data" / "real"
PEERS = ("default", "oneway", "ivf", "hnsw", "nndescent")  # exact always runs: it is every row's ground truth
LABELS = {
    "exact": "exact",
    "default": "default",
    "oneway": "default one-way",
    "ivf": "faiss IVF-Flat",
    "hnsw": "faiss HNSW",
    "nndescent": "pynndescent",
}
MIN_POINTS_PER_LIST = 39  # faiss wants at least this many training points per IVF list


# --------------------------------------------------------------------------------------------- helpers
def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def drop_self(D: np.ndarray, I: np.ndarray, qids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top-``k`` neighbours other than the query itself (results of a ``k + 1`` search); empty slots
    (``-1`` ids) sort last."""
    D = np.where(np.equal(I, qids[:, None]) | (I < 0), -np.inf, D).astype(np.float32)
    order = np.argsort(-D, axis=1, kind="stable")[:, :k]
    D, I = np.take_along_axis(D, order, axis=1), np.take_along_axis(I, order, axis=1)
    return D, np.where(np.isfinite(D), I, -1).astype(np.int64)


def strict_edge_recall(approx: tuple, exact: tuple, threshold: float) -> tuple[float, int, int]:
    """Id-based (the project's ``search.edge_recall``, as the ``search.audit``): ``(recall, found, total)``."""
    found, total = edge_recall(approx, exact, threshold)
    return (found / total if total else 1.0), found, total


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


# --------------------------------------------------------------------------------------------- data
@dataclasses.dataclass
class Dataset:
    """The faces (unit rows) and the query sample: the rows whose results are timed and compared."""

    name: str
    x: np.ndarray
    qids: np.ndarray
    k: int

    @property
    def n(self) -> int:
        return len(self.x)

    @property
    def m(self) -> int:
        return len(self.qids)

    @property
    def extrapolated(self) -> bool:
        return self.m < self.n

    @property
    def scale(self) -> float:
        return self.n / self.m

    @functools.cached_property
    def xq(self) -> np.ndarray:
        return np.ascontiguousarray(self.x[self.qids])


def query_sample(n: int, sample: int, seed: int) -> np.ndarray:
    """``sample`` random rows (all rows when ``sample`` is 0 or >= n), sorted."""
    if sample <= 0 or sample >= n:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed + 1).choice(n, sample, replace=False)).astype(np.int64)


def synthetic(args: argparse.Namespace, n: int) -> Dataset:
    identities = args.identities or max(10, n // 5)
    spec = SynthSpec(days=1, faces_per_day=n, identities=identities, dim=args.dim, seed=args.seed)
    x, t = timed(lambda: unit_rows(generate_day_arrays(spec, 0).feature))
    log.info("synthetic day: %d faces x %d in %.1f s", n, args.dim, t)
    return Dataset("synthetic", x, query_sample(n, args.sample, args.seed), args.k)


def load_real(path: Path) -> np.ndarray:
    """L2-normalised features; dlib features are centred (mean subtracted, then normalised again)."""
    import pyarrow.parquet as pq

    col = pq.read_table(path, columns=["feature"]).column("feature").combine_chunks()
    x = unit_rows(col.values.to_numpy(zero_copy_only=False).reshape(len(col), -1))
    if "dlib" in path.stem:
        x = unit_rows(x - x.mean(axis=0, keepdims=True))
    return x


def real_sets(args: argparse.Namespace) -> list[Dataset]:
    """The real sets under ``--real-dir``: every row is a query (they are small)."""
    files = sorted(Path(args.real_dir).glob("*.parquet")) if args.real_dir else []
    if args.real_dir and not files:
        log.warning("no real sets under %s", args.real_dir)
    out = []
    for path in files:
        x = load_real(path)
        out.append(Dataset(path.stem, x, np.arange(len(x), dtype=np.int64), min(args.k, len(x) - 2)))
    return out


# --------------------------------------------------------------------------------------------- the run
@dataclasses.dataclass
class Bench:
    """One dataset's run: where rows go, the exact answer on the sample and the exact all-vs-all time."""

    args: argparse.Namespace
    out: JsonLines
    ds: Dataset
    truth: tuple = ()
    exact_total: float = 0.0

    def target_speedup(self) -> float:
        return self.args.target_speedup_1m if self.ds.n >= 1_000_000 else self.args.target_speedup

    def emit(
        self,
        method: str,
        params: str,
        approx: tuple[np.ndarray, np.ndarray],
        train_s: float,
        build_s: float,
        search_s: float,
        extrapolated: bool,
        total_s: float | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """The row of ``method``: ``approx`` is its top-k (self dropped) on the sample rows; ``search_s`` its
        all-vs-all search time (extrapolated from the sample when ``extrapolated``); ``total_s`` defaults to
        the sum of the parts."""
        args, ds = self.args, self.ds
        recall, found, total = strict_edge_recall(approx, self.truth, args.threshold)
        total_s = train_s + build_s + search_s if total_s is None else total_s
        speedup = self.exact_total / total_s if total_s > 0 else float("inf")
        rec = record(
            "search",
            kind="row",
            dataset=ds.name,
            n=ds.n,
            dim=int(ds.x.shape[1]),
            k=ds.k,
            threshold=args.threshold,
            queries=ds.m,
            method=method,
            label=LABELS[method],
            params=params,
            train_s=round(train_s, 6),
            build_s=round(build_s, 6),
            search_s=round(search_s, 6),
            total_s=round(total_s, 6),
            extrapolated=extrapolated,
            exact_extrapolated=ds.extrapolated,
            edge_recall=round(recall, 6),
            edges_found=found,
            edges_total=total,
            speedup=round(speedup, 3),
            meets=bool(recall >= args.target_recall and speedup >= self.target_speedup()),
            target_recall=args.target_recall,
            target_speedup=self.target_speedup(),
            threads=args.threads,
            backend=args.backend,
            seed=args.seed,
            **extra,
        )
        log.info(
            "n=%d %s %s: total %.2f s, edge recall %.4f, speed-up %.1f",
            ds.n,
            LABELS[method],
            params,
            total_s,
            recall,
            speedup,
        )
        return self.out.emit(rec)

    def skip(self, method: str, reason: str) -> dict[str, Any]:
        log.warning("n=%d: %s skipped: %s", self.ds.n, LABELS[method], reason)
        rec = record("search", kind="skipped", dataset=self.ds.name, n=self.ds.n, method=method, reason=reason)
        return self.out.emit({**rec, "label": LABELS[method]})

    def sample_search(self, index: Any) -> tuple[tuple[np.ndarray, np.ndarray], float]:
        """The sample's top-k (self dropped) in a faiss ``index`` and the search time of all n queries."""
        ds = self.ds
        (D, I), t = timed(lambda: index.search(ds.xq, ds.k + 1))
        return drop_self(D, I.astype(np.int64), ds.qids, ds.k), t * ds.scale


def run_exact(b: Bench) -> None:
    import faiss

    ds = b.ds
    index = faiss.IndexFlatIP(ds.x.shape[1])
    _, build_s = timed(lambda: index.add(ds.x))
    b.truth, search_s = b.sample_search(index)
    b.exact_total = build_s + search_s
    b.emit("exact", "Flat", b.truth, 0.0, build_s, search_s, ds.extrapolated, search_s_sample=search_s / ds.scale)


def run_default(b: Bench, method: str = "default", cfg: SearchConfig | None = None) -> None:
    from daskcluster.search.graph import self_knn

    ds, args = b.ds, b.args
    cfg = cfg or SearchConfig()
    res, wall = timed(lambda: self_knn(ds.x, ds.k + 1, args.threshold, cfg, args.backend, args.threads))
    approx = drop_self(res.D[ds.qids], np.asarray(res.I[ds.qids], dtype=np.int64), ds.qids, ds.k)
    parts = res.train_s + res.calibrate_s + res.build_s + res.search_s
    b.emit(
        method,
        str(res.index),
        approx,
        res.train_s + res.calibrate_s,
        res.build_s,
        res.search_s,
        False,
        total_s=max(wall, parts),
        index=str(res.index),
        gap=res.gap,
        audit_recall=getattr(res, "audit_recall", None),
        calibrate_s=round(res.calibrate_s, 3),
        wall_s=round(wall, 3),
        other_s=round(max(0.0, wall - parts), 3),
    )


def run_oneway(b: Bench) -> None:
    """The default with ``search.both_ways: false``: each product kept for the query only."""
    run_default(b, "oneway", SearchConfig(both_ways=False))


def ivf_nlist(args: argparse.Namespace, n: int) -> int:
    nlist = args.ivf_nlist or (4096 if n >= 500_000 else 1024)
    cap = max(1, n // MIN_POINTS_PER_LIST)
    if nlist > cap:
        log.info("n=%d: IVF nlist %d -> %d (%d training points per list)", n, nlist, cap, MIN_POINTS_PER_LIST)
    return min(nlist, cap)


def run_ivf(b: Bench) -> None:
    import faiss

    ds, args = b.ds, b.args
    d, nlist = ds.x.shape[1], ivf_nlist(args, ds.n)
    train_n = min(ds.n, max(args.ivf_train, MIN_POINTS_PER_LIST * nlist))
    rows = np.sort(np.random.default_rng(args.seed + 2).choice(ds.n, train_n, replace=False))
    coarse = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(coarse, d, nlist, faiss.METRIC_INNER_PRODUCT)
    _, train_s = timed(lambda: index.train(np.ascontiguousarray(ds.x[rows])))
    _, build_s = timed(lambda: index.add(ds.x))
    for nprobe in args.ivf_nprobes:
        index.nprobe = min(nprobe, nlist)
        approx, search_s = b.sample_search(index)
        params = f"nlist={nlist} nprobe={index.nprobe}"
        b.emit("ivf", params, approx, train_s, build_s, search_s, ds.extrapolated, nlist=nlist, nprobe=index.nprobe)


def run_hnsw(b: Bench) -> None:
    import faiss

    ds, args = b.ds, b.args
    index = faiss.IndexHNSWFlat(ds.x.shape[1], args.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = args.hnsw_ef_construction
    _, build_s = timed(lambda: index.add(ds.x))
    for ef in args.hnsw_ef:
        index.hnsw.efSearch = ef
        approx, search_s = b.sample_search(index)
        params = f"M={args.hnsw_m} efC={args.hnsw_ef_construction} efS={ef}"
        b.emit("hnsw", params, approx, 0.0, build_s, search_s, ds.extrapolated, ef_search=ef)


def nndescent(x: np.ndarray, k: int, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """pynndescent's k-NN graph of ``x``: ``(similarities, ids)``, ``k`` neighbours (self included)."""
    import pynndescent

    nn = pynndescent.NNDescent(x, n_neighbors=k, metric=args.nndescent_metric, random_state=0, n_jobs=args.threads)
    I, dist = nn.neighbor_graph
    return (1.0 - dist).astype(np.float32), I.astype(np.int64)  # dot and cosine distances are 1 - similarity


@functools.cache
def nndescent_jit(dim: int, k: int, metric: str, threads: int) -> float:
    """Compile pynndescent's numba functions once per process on a tiny array (seconds), so that no row
    counts the compilation."""
    args = argparse.Namespace(nndescent_metric=metric, threads=threads)
    x = unit_rows(np.random.default_rng(0).standard_normal((max(200, 20 * k), dim)))
    _, t = timed(lambda: nndescent(x, k, args))
    log.info("pynndescent compiled in %.1f s", t)
    return t


def run_nndescent(b: Bench) -> None:
    ds, args = b.ds, b.args
    if ds.n > args.nndescent_max_n:
        b.skip("nndescent", f"n={ds.n} > --nndescent-max-n {args.nndescent_max_n}")
        return
    jit_s = nndescent_jit(ds.x.shape[1], ds.k + 1, args.nndescent_metric, args.threads)
    (D, I), build_s = timed(lambda: nndescent(ds.x, ds.k + 1, args))
    approx = drop_self(D[ds.qids], I[ds.qids], ds.qids, ds.k)
    params = f"metric={args.nndescent_metric}"
    b.emit("nndescent", params, approx, 0.0, build_s, 0.0, False, jit_s=round(jit_s, 2))


RUNNERS: dict[str, Callable[[Bench], None]] = {
    "default": run_default,
    "oneway": run_oneway,
    "ivf": run_ivf,
    "hnsw": run_hnsw,
    "nndescent": run_nndescent,
}


def run_dataset(args: argparse.Namespace, out: JsonLines, ds: Dataset) -> None:
    b = Bench(args, out, ds)
    run_exact(b)
    for method in args.methods:
        RUNNERS[method](b)


def warm_up(args: argparse.Namespace) -> None:
    """Thread pools, BLAS and page faults on a small flat search; pynndescent's compilation."""
    import faiss

    x = unit_rows(np.random.default_rng(0).standard_normal((5000, args.dim)))
    index = faiss.IndexFlatIP(args.dim)
    index.add(x)
    index.search(x[:256], args.k + 1)
    if "nndescent" in args.methods and any(n <= args.nndescent_max_n for n in args.sizes):
        nndescent_jit(args.dim, args.k + 1, args.nndescent_metric, args.threads)


# --------------------------------------------------------------------------------------------- table
def _sec(v: float) -> str:
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def table_row(r: dict[str, Any], with_data: bool) -> list[str]:
    data = [r["dataset"]] if with_data else []
    if r["kind"] == "skipped":
        return [*data, str(r["n"]), r["label"], "skipped: " + r["reason"], *["-"] * 7]
    est, est_x = ("~" if r["extrapolated"] else ""), ("~" if r["extrapolated"] or r["exact_extrapolated"] else "")
    return [
        *data,
        str(r["n"]),
        r["label"],
        r["params"],
        _sec(r["train_s"]),
        _sec(r["build_s"]),
        est + _sec(r["search_s"]),
        est + _sec(r["total_s"]),
        f"{r['edge_recall']:.4f}",
        f"{est_x}{r['speedup']:.1f}",
        "yes" if r["meets"] else "no",
    ]


def table(records: list[dict[str, Any]], args: argparse.Namespace) -> str:
    rows = [r for r in records if r.get("kind") in ("row", "skipped")]
    with_data = any(r["dataset"] != "synthetic" for r in rows)
    head = [
        *(["data"] if with_data else []),
        "n",
        "method",
        "params",
        "train s",
        "build s",
        "search s",
        "total s",
        f"edge recall >={args.threshold:g}",
        "speed-up",
        "meets",
    ]
    text = format_table(head, [table_row(r, with_data) for r in rows], align="lll" + "l" * with_data)
    note = (
        f"~: extrapolated linearly from the search of {args.sample} sampled queries to all n (search and total "
        "of all faces against all faces); edge recall: of the exact top-k edges >= t of the sampled queries, by "
        "id (k={k});\nspeed-up: exact total / method total; meets: edge recall >= {r:g} and speed-up >= {s1:g} "
        "at n >= 1M (>= {s:g} below); default: train s includes its calibration, total s is its wall time"
    ).format(k=args.k, r=args.target_recall, s1=args.target_speedup_1m, s=args.target_speedup)
    return text + "\n" + note


def verdicts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per dataset and n: does the default beat every peer at equal or higher edge recall? A peer beats it when
    its edge recall is >= the default's and its total time is lower."""
    rows = [r for r in records if r.get("kind") == "row"]
    out = []
    for key in dict.fromkeys((r["dataset"], r["n"]) for r in rows):
        group = [r for r in rows if (r["dataset"], r["n"]) == key]
        default = next((r for r in group if r["method"] == "default"), None)
        if default is None:
            continue
        beaten_by = [
            f"{r['label']} {r['params']} ({r['edge_recall']:.4f}, {_sec(r['total_s'])} s)"
            for r in group
            if r is not default and r["edge_recall"] >= default["edge_recall"] and r["total_s"] < default["total_s"]
        ]
        out.append(
            {
                "kind": "verdict",
                "dataset": key[0],
                "n": key[1],
                "default_edge_recall": default["edge_recall"],
                "default_total_s": default["total_s"],
                "default_beats_peers": not beaten_by,
                "beaten_by": beaten_by,
            }
        )
    return out


def verdict_line(v: dict[str, Any]) -> str:
    where = f"n={v['n']}" + ("" if v["dataset"] == "synthetic" else f" ({v['dataset']})")
    head = f"{where}: the default (edge recall {v['default_edge_recall']:.4f}, {_sec(v['default_total_s'])} s)"
    if v["default_beats_peers"]:
        return f"{head} beats every peer at equal or higher edge recall"
    return f"{head} is beaten (equal or higher recall, less time) by: " + "; ".join(v["beaten_by"])


class StderrLines(JsonLines):
    """:class:`JsonLines` that prints its lines on stderr: stdout has the table."""

    def emit(self, rec: dict[str, Any]) -> dict[str, Any]:
        with contextlib.redirect_stdout(sys.stderr):
            return super().emit(rec)


# --------------------------------------------------------------------------------------------- main
def _sizes(values: list[str]) -> list[int]:
    return parse_sizes(",".join(values))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__, "backend", "dim", "identities", "seed", "out", "verbose")
    p.add_argument("--sizes", nargs="+", default=["200000", "1000000"], help="faces of the synthetic days")
    p.add_argument("--sample", type=int, default=5000, help="query rows timed and compared (0 = all)")
    p.add_argument("--k", type=int, default=10, help="neighbours per face other than itself")
    p.add_argument("--threshold", type=float, default=0.6, help="edge similarity threshold of the recall")
    p.add_argument("--threads", type=int, default=0, help="threads of every method (0 = all cores)")
    p.add_argument(
        "--methods", nargs="+", default=list(PEERS), choices=PEERS, help="methods besides exact (always run)"
    )
    p.add_argument("--ivf-nlist", type=int, default=0, help="IVF-Flat lists (0 = 4096 at n >= 500k, else 1024)")
    p.add_argument("--ivf-nprobes", type=int, nargs="+", default=[16, 64])
    p.add_argument("--ivf-train", type=int, default=50_000, help="IVF training rows (at least 39 per list)")
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--hnsw-ef-construction", type=int, default=40)
    p.add_argument("--hnsw-ef", type=int, nargs="+", default=[64, 128], help="HNSW efSearch values")
    p.add_argument("--nndescent-metric", default="dot", choices=["dot", "cosine"])
    p.add_argument("--nndescent-max-n", type=int, default=1_000_000, help="skip pynndescent above this n")
    p.add_argument("--target-recall", type=float, default=0.98)
    p.add_argument("--target-speedup", type=float, default=10.0, help="speed-up wanted below 1M faces")
    p.add_argument("--target-speedup-1m", type=float, default=20.0, help="speed-up wanted at 1M faces and more")
    p.add_argument("--real-dir", default="", help=f"also the real sets (*.parquet) here, e.g. {REAL_DIR}")
    args = p.parse_args(argv)
    args.sizes = _sizes(args.sizes)
    args.methods = [m for m in PEERS if m in args.methods]
    args.threads = args.threads or os.cpu_count() or 1
    if not args.sizes and not args.real_dir:
        p.error("nothing to run: no --sizes and no --real-dir")
    if any(n < 100 for n in args.sizes) or args.k < 1 or args.sample < 0:
        p.error("need sizes >= 100, --k >= 1, --sample >= 0")
    return finish(p, args)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    setup_logging(args)
    import faiss
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    faiss.omp_set_num_threads(args.threads)
    get_backend(args.backend).set_threads(args.threads)  # the default's backend (faiss on the CPU)
    with threadpool_limits(limits=args.threads), StderrLines(args.out) as out:
        warm_up(args)
        for n in args.sizes:
            run_dataset(args, out, synthetic(args, n))
        for ds in real_sets(args):
            run_dataset(args, out, ds)
        for v in verdicts(out.records):
            out.emit(record("search", **v))
    print(table(out.records, args), flush=True)
    for v in (r for r in out.records if r.get("kind") == "verdict"):
        print(verdict_line(v), flush=True)
    log.info("total %.1f s", time.perf_counter() - t0)
    return out.records


if __name__ == "__main__":
    main()
