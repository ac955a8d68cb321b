"""Benchmark of step 2's k-NN search: exact flat search vs the project's default IVF rule and alternatives.

What matters for clustering is the recall of the k-NN *edges at or above the similarity threshold* (the
edges the graph keeps), not plain top-k recall, so both are reported (``search.edge_recall``).

On one synthetic day (``daskcluster.eval.synth``, L2-normalised) the database is every face and the queries
are a random sample of ``--sample`` faces (all faces with ``--sample 0``: the true all-vs-all search).
Every configuration searches the same queries, so search times compare directly; ``search_s_all`` is the
time of the all-vs-all search, extrapolated linearly from the sample when the sample is not everything
(search time is linear in the number of queries). Each face finds itself, so ``k + 1`` neighbours are
searched (as the pipeline does) and the face itself is dropped before recall is computed.

Configurations: ``exact`` (faiss IndexFlatIP through the project's :class:`~daskcluster.search.IndexShard`),
``default`` (``choose_index(n, SearchConfig())``: IVF-Flat with a quantizer trained by
``train_quantizer`` on ``sample_rows``, as in the pipeline), IVF-Flat alternatives over a grid of
nlist x nprobe, and for reference faiss ``IVF1024,PQ32`` re-ranked by ``IndexRefineFlat`` (k_factor 4).
With ``--shards S`` the database is split into S shards searched separately and merged with
``merge_topk``; the merged result is checked against a single-shard search.

The four small real sets in ``tests/data/real`` are run too (default rule: flat; then IVF forced).

Output: one JSON line per configuration on stdout (and ``--out FILE.jsonl``), a table on stderr.
Example: ``python -m benchmarks.search --n 200000 --dim 256 --thresholds 0.5 0.6 0.7``
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import ROOT, JsonLines, finish, format_table, parser, print_table, record, setup_logging
from daskcluster.config import SearchConfig
from daskcluster.eval.synth import SynthSpec, generate_day_arrays
from daskcluster.search import (
    IndexShard,
    IndexSpec,
    build_shard,
    choose_index,
    edge_recall,
    merge_topk,
    sample_rows,
    search_shard,
    train_quantizer,
    train_size,
)

log = logging.getLogger("bench_search")

REAL_DIR = ROOT / "tests" / "data" / "real"
FULL_NLISTS, FULL_NPROBES, FULL_PQ_NPROBES = (1024, 4096), (8, 16, 32, 64), (16, 32, 64)
QUICK_NLISTS, QUICK_NPROBES, QUICK_PQ_NPROBES = (1024,), (16, 32, 64), (32,)

Searcher = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


# --------------------------------------------------------------------------------------------- helpers
def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def split_shards(
    ids: np.ndarray, xb: np.ndarray, spec: IndexSpec, centroids: np.ndarray | None, backend: str, n_shards: int
) -> list[IndexShard]:
    """The database as ``n_shards`` contiguous shards sharing one quantizer (as the pipeline does)."""
    bounds = np.linspace(0, len(ids), max(1, n_shards) + 1).astype(np.int64)
    return [build_shard(ids[a:b], xb[a:b], spec, centroids, backend) for a, b in itertools.pairwise(bounds)]


def shards_searcher(shards: list[IndexShard], min_sim: float | None) -> Searcher:
    """Search every shard and merge, keeping only neighbours >= ``min_sim`` as the pipeline's k-NN does (it
    searches only for edges at or above the lowest threshold)."""

    def search(xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return merge_topk([search_shard(s, xq, k, min_sim) for s in shards], k)

    return search


def drop_self(D: np.ndarray, I: np.ndarray, qids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top-``k`` neighbours other than the query itself (results of a ``k + 1`` search)."""
    D = np.where(np.equal(I, qids[:, None]), -np.inf, D)
    order = np.argsort(-D, axis=1, kind="stable")[:, :k]
    D, I = np.take_along_axis(D, order, axis=1), np.take_along_axis(I, order, axis=1)
    return D, np.where(np.isfinite(D), I, -1)


def topk_recall(I_approx: np.ndarray, I_exact: np.ndarray) -> float:
    """Mean fraction of the exact top-k ids found in the approximate top-k."""
    valid = I_exact >= 0
    hit = ((I_exact[:, :, None] == I_approx[:, None, :]) & (I_approx[:, None, :] >= 0)).any(axis=2) & valid
    return float(hit.sum() / max(1, valid.sum()))


def strict_edge_recall(approx: tuple, exact: tuple, threshold: float) -> float:
    """Id-based (the project's ``search.edge_recall``, used by the ``search.audit``)."""
    found, total = edge_recall(approx, exact, threshold)
    return found / total if total else 1.0


def count_edge_recall(D_approx: np.ndarray, D_exact: np.ndarray, threshold: float) -> tuple[int, int]:
    """Count-based, per query row: any neighbour >= ``threshold`` counts (looser than by id: when a row
    has more than k such neighbours, a different one is as good for connectivity)."""
    want = (D_exact >= threshold).sum(axis=1)
    got = (D_approx >= threshold).sum(axis=1)
    return int(np.minimum(want, got).sum()), int(want.sum())


def recall_fields(approx: tuple, exact: tuple, thresholds: list[float]) -> dict[str, Any]:
    """``edge_recall`` (count-based, see :func:`count_edge_recall`) per threshold, plus
    ``edge_recall_unsaturated``: the same over the query rows with fewer than k exact edges >= threshold
    (rare identities, cluster borders: there every missed edge is a missed link), ``edge_recall_ids``
    (id-based, see :func:`strict_edge_recall`) and plain ``topk_recall``."""
    k = exact[0].shape[1]
    edges, recall, unsat, unsat_rows, strict = {}, {}, {}, {}, {}
    for t in thresholds:
        key = f"{t:g}"
        found, total = count_edge_recall(approx[0], exact[0], t)
        edges[key] = [int(found), int(total)]
        recall[key] = round(found / total, 6) if total else 1.0
        rows = (exact[0] >= t).sum(axis=1) < k
        f_u, t_u = count_edge_recall(approx[0][rows], exact[0][rows], t)
        unsat[key] = round(f_u / t_u, 6) if t_u else 1.0
        unsat_rows[key] = [int(rows.sum()), int(f_u), int(t_u)]
        strict[key] = round(strict_edge_recall(approx, exact, t), 6)
    return {
        "edge_recall": recall,
        "edges_found_total": edges,
        "edge_recall_unsaturated": unsat,
        "unsaturated_rows_found_total": unsat_rows,
        "edge_recall_ids": strict,
        "topk_recall": round(topk_recall(approx[1], exact[1]), 6),
    }


def timed_search(search: Searcher, xq: np.ndarray, k: int, repeats: int) -> tuple[tuple, list[float], int]:
    """The result, the wall time of each repeat, and the vectors an IVF search compared per query
    (faiss CPU ``indexIVF_stats.ndis``: a load-independent measure of the work; 0 for flat search)."""
    import faiss

    times, out, ndis = [], None, 0
    for _ in range(max(1, repeats)):
        faiss.cvar.indexIVF_stats.reset()
        t0 = time.perf_counter()
        out = search(xq, k)
        times.append(time.perf_counter() - t0)
        ndis = int(faiss.cvar.indexIVF_stats.ndis)
    return out, times, ndis


def quantizer(
    cache: dict, ids: np.ndarray, xb: np.ndarray, nlist: int, cfg: SearchConfig, backend: str
) -> tuple[np.ndarray, float]:
    """Centroids for ``nlist`` lists, trained as the pipeline does (cached per nlist)."""
    if nlist not in cache:
        n_max = train_size(IndexSpec(nlist=nlist), cfg)
        t0 = time.perf_counter()
        centroids = train_quantizer([sample_rows(ids, xb, n_max)], nlist, n_max, backend)
        cache[nlist] = (centroids, time.perf_counter() - t0)
    return cache[nlist]


def refine_pq_index(xb: np.ndarray, ids: np.ndarray, centroids: np.ndarray, m: int, train_n: int) -> Any:
    """faiss ``IVF{nlist},PQ{m}`` (inner product) re-ranked with exact vectors by ``IndexRefineFlat``.

    The coarse quantizer reuses the project's trained centroids (the same lists as IVF-Flat at that nlist),
    so the row isolates the effect of PQ codes + re-ranking; the PQ is trained on the same row sample.
    """
    import faiss

    d, nlist = xb.shape[1], centroids.shape[0]
    coarse = faiss.IndexFlatIP(d)
    coarse.add(np.ascontiguousarray(centroids, dtype=np.float32))
    ivfpq = faiss.IndexIVFPQ(coarse, d, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
    ivfpq.own_fields = True
    coarse.this.disown()
    ivfpq.train(sample_rows(ids, xb, train_n)[1])  # the quantizer is already trained: trains the PQ only
    refine = faiss.IndexRefineFlat(ivfpq)
    refine.own_fields = True
    ivfpq.this.disown()
    refine.add(xb)
    return refine


def pq_searcher(index: Any, nprobe: int, k_factor: float) -> Searcher:
    import faiss

    ivf = faiss.extract_index_ivf(index.base_index)

    def search(xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        ivf.nprobe = nprobe
        index.k_factor = k_factor
        D, I = index.search(np.ascontiguousarray(xq, dtype=np.float32), k)
        return np.where(I >= 0, D, -np.inf).astype(np.float32), I.astype(np.int64)

    return search


def meta(args: argparse.Namespace, **kw: Any) -> dict[str, Any]:
    import faiss

    return record("search", backend=args.backend, k=args.k, seed=args.seed, threads=faiss.omp_get_max_threads(), **kw)


def with_target(args: argparse.Namespace, rec: dict[str, Any]) -> dict[str, Any]:
    """``rec`` with ``meets_target``: its id-based edge recall at ``--threshold`` reaches ``--target-recall``."""
    return {**rec, "meets_target": rec["edge_recall_ids"][f"{args.threshold:g}"] >= args.target_recall}


# --------------------------------------------------------------------------------------------- synthetic
@dataclasses.dataclass
class Synthetic:
    """One synthetic day: the database, the query sample, the exact answer, and where records go."""

    args: argparse.Namespace
    thresholds: list[float]
    out: JsonLines
    xb: np.ndarray
    qids: np.ndarray
    cfg: SearchConfig
    ids: np.ndarray = dataclasses.field(init=False)
    xq: np.ndarray = dataclasses.field(init=False)
    exact: tuple = ()
    t_exact: float = 0.0
    exact_total: float = 0.0  # exact all-vs-all search and build, seconds

    @property
    def n(self) -> int:
        return len(self.xb)

    @property
    def m(self) -> int:
        return len(self.qids)

    def __post_init__(self) -> None:
        self.ids, self.xq = np.arange(self.n, dtype=np.int64), self.xb[self.qids]

    @property
    def scale(self) -> float:
        return self.n / self.m

    @property
    def min_sim(self) -> float:
        return self.thresholds[0]

    @property
    def check_q(self) -> np.ndarray:
        return self.xq[: min(self.m, self.args.check_queries)]

    def common(self) -> dict[str, Any]:
        return {
            "dataset": "synthetic",
            "n": self.n,
            "dim": self.args.dim,
            "shards": self.args.shards,
            "queries": self.m,
            "search_s_all_extrapolated": self.m < self.n,
        }

    def shards(self, spec: IndexSpec, centroids: np.ndarray | None = None, n_shards: int = 0) -> list[IndexShard]:
        return split_shards(self.ids, self.xb, spec, centroids, self.args.backend, n_shards or self.args.shards)

    def searcher(self, shards: list[IndexShard]) -> Searcher:
        return shards_searcher(shards, self.min_sim)


def synthetic_day(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    identities = args.identities or max(10, args.n // 5)
    spec = SynthSpec(days=1, faces_per_day=args.n, identities=identities, dim=args.dim, seed=args.seed)
    day = generate_day_arrays(spec, 0)
    return unit_rows(day.feature), day.label


def ivf_grid(args: argparse.Namespace, n: int, default: IndexSpec) -> list[IndexSpec]:
    nlists = args.nlists or (FULL_NLISTS if args.full else QUICK_NLISTS)
    nprobes = args.nprobes or (FULL_NPROBES if args.full else QUICK_NPROBES)
    grid = []
    for nlist in sorted({*nlists, *([default.nlist] if not default.is_flat else [])}):
        if nlist > n // 39:
            log.warning("skipping nlist=%d: fewer than 39 training points per list at n=%d", nlist, n)
            continue
        grid += [IndexSpec(nlist=nlist, nprobe=p) for p in sorted(set(nprobes)) if p <= nlist]
    return [s for s in grid if s != default]


def sharding_check(sharded: Searcher, single: Searcher, xq: np.ndarray, k: int) -> dict[str, Any]:
    Ds, Is = sharded(xq, k)
    D1, I1 = single(xq, k)
    fin = np.isfinite(Ds) & np.isfinite(D1)
    return {
        "queries": len(xq),
        "same_ids": round(float((Is == I1).mean()), 6),
        "max_abs_sim_diff": float(np.abs(Ds[fin] - D1[fin]).max()) if fin.any() else 0.0,
        "same_finite": bool((np.isfinite(Ds) == np.isfinite(D1)).all()),
    }


def setup_synthetic(args: argparse.Namespace, thresholds: list[float], out: JsonLines) -> Synthetic:
    """The day, the query sample and the search config of the default rule; search warmed up."""
    t0 = time.perf_counter()
    xb, _labels = synthetic_day(args)
    n = len(xb)
    log.info("synthetic day: %d faces x %d in %.1f s", n, args.dim, time.perf_counter() - t0)
    rng = np.random.default_rng(args.seed + 1)
    m = n if args.sample <= 0 or args.sample >= n else args.sample
    qids = np.sort(rng.choice(n, m, replace=False)) if m < n else np.arange(n, dtype=np.int64)
    cfg = SearchConfig(flat_below=args.flat_below) if args.flat_below is not None else SearchConfig()
    run = Synthetic(args, thresholds, out, xb, qids, cfg)
    # warm-up (thread pools, BLAS, page faults) on a small flat search
    w = min(n, 20_000)
    search_shard(build_shard(run.ids[:w], xb[:w], IndexSpec(), None, args.backend), run.xq[: min(m, 256)], args.k + 1)
    return run


def run_exact(run: Synthetic) -> None:
    args, kk = run.args, run.args.k + 1
    t0 = time.perf_counter()
    exact_search = run.searcher(run.shards(IndexSpec()))
    build_exact = time.perf_counter() - t0
    exact_raw, times, _ = timed_search(exact_search, run.xq, kk, args.repeats)
    run.exact, run.t_exact = drop_self(*exact_raw, run.qids, args.k), min(times)
    run.exact_total = run.t_exact * run.scale + build_exact
    rec = meta(
        args,
        config="exact",
        index="Flat",
        nlist=0,
        nprobe=0,
        default=False,
        **run.common(),
        train_s=0.0,
        build_s=round(build_exact, 3),
        search_s=round(run.t_exact, 3),
        search_s_repeats=[round(t, 3) for t in times],
        search_s_all=round(run.t_exact * run.scale, 2),
        speedup=1.0,
        speedup_incl_build=1.0,
        scanned_frac=1.0,
        **recall_fields(run.exact, run.exact, run.thresholds),
    )
    rec["meets_target"] = True
    if args.shards > 1:
        single = run.searcher(run.shards(IndexSpec(), n_shards=1))
        rec["sharding_check"] = sharding_check(exact_search, single, run.check_q, kk)
    run.out.emit(rec)


def report(
    run: Synthetic,
    name: str,
    index: str,
    spec: IndexSpec,
    train_s: float,
    build_s: float,
    search: Searcher,
    extra: dict | None = None,
) -> None:
    """Time ``search`` on the queries and emit its record against the exact answer."""
    args = run.args
    raw, times, ndis = timed_search(search, run.xq, args.k + 1, args.repeats)
    t = min(times)
    extra = {"scanned_frac": round(ndis / (run.m * run.n), 5) if ndis else None, **(extra or {})}
    total = train_s + build_s + t * run.scale
    rec = meta(
        args,
        config=name,
        index=index,
        nlist=spec.nlist,
        nprobe=spec.nprobe,
        default=name == "default",
        **run.common(),
        train_s=round(train_s, 3),
        build_s=round(build_s, 3),
        search_s=round(t, 3),
        search_s_repeats=[round(x, 3) for x in times],
        search_s_all=round(t * run.scale, 2),
        speedup=round(run.t_exact / t, 2),
        speedup_incl_build=round(run.exact_total / total, 2),
        **recall_fields(drop_self(*raw, run.qids, args.k), run.exact, run.thresholds),
        **extra,
    )
    run.out.emit(with_target(args, rec))


def run_ivf_lists(run: Synthetic, qcache: dict, nlist: int, group: list[IndexSpec], default: IndexSpec) -> None:
    """The IVF-Flat configurations of one ``nlist``: one quantizer and one set of shards, every nprobe."""
    args = run.args
    centroids, train_s = quantizer(qcache, run.ids, run.xb, nlist, run.cfg, args.backend)
    t0 = time.perf_counter()
    shards = run.shards(IndexSpec(nlist=nlist, nprobe=1), centroids)
    build_s = time.perf_counter() - t0
    for spec in group:
        for s in shards:
            s.nprobe = spec.nprobe
        extra = {}
        if spec == default and args.shards > 1:
            one = run.searcher(run.shards(spec, centroids, n_shards=1))
            extra["sharding_check"] = sharding_check(run.searcher(shards), one, run.check_q, args.k + 1)
        report(
            run,
            "default" if spec == default else "ivf",
            f"IVF{nlist},Flat",
            spec,
            train_s,
            build_s,
            run.searcher(shards),
            extra,
        )


def run_ivf(run: Synthetic, qcache: dict) -> None:
    """IVF-Flat: the default rule, then the grid; grouped by nlist so each quantizer/index is built once."""
    default = choose_index(run.n, run.cfg)
    specs = [default, *ivf_grid(run.args, run.n, default)]
    for nlist in sorted({s.nlist for s in specs}, key=lambda v: (v != default.nlist, v)):
        if nlist == 0:
            t0 = time.perf_counter()
            flat = run.searcher(run.shards(IndexSpec()))
            report(run, "default", "Flat", IndexSpec(), 0.0, time.perf_counter() - t0, flat)
            continue
        run_ivf_lists(run, qcache, nlist, [s for s in specs if s.nlist == nlist], default)


def run_pq(run: Synthetic, qcache: dict) -> None:
    """The reference: IVF{pq_nlist},PQ{pq_m} + IndexRefineFlat (unsharded; faiss only)."""
    args = run.args
    if not (args.pq_m and args.pq_nlist <= run.n // 39 and args.dim % args.pq_m == 0):
        if args.pq_m:
            log.warning("skipping IVF%d,PQ%d reference at n=%d dim=%d", args.pq_nlist, args.pq_m, run.n, args.dim)
        return
    centroids, train_s = quantizer(qcache, run.ids, run.xb, args.pq_nlist, run.cfg, args.backend)
    t0 = time.perf_counter()
    index = refine_pq_index(run.xb, run.ids, centroids, args.pq_m, train_size(IndexSpec(nlist=args.pq_nlist), run.cfg))
    build_s = time.perf_counter() - t0
    name = f"IVF{args.pq_nlist},PQ{args.pq_m}+RefineFlat(k_factor={args.k_factor:g})"
    for nprobe in sorted(set(args.pq_nprobes or (FULL_PQ_NPROBES if args.full else QUICK_PQ_NPROBES))):
        report(
            run,
            "ivfpq_refine",
            name,
            IndexSpec(args.pq_nlist, nprobe),
            train_s,
            build_s,
            pq_searcher(index, nprobe, args.k_factor),
            {"k_factor": args.k_factor, "shards_used": 1},
        )


def run_synthetic(args: argparse.Namespace, thresholds: list[float], out: JsonLines) -> None:
    run = setup_synthetic(args, thresholds, out)
    run_exact(run)
    qcache: dict[int, tuple[np.ndarray, float]] = {}
    run_ivf(run, qcache)
    run_pq(run, qcache)


# --------------------------------------------------------------------------------------------- real sets
def load_real(path: Path) -> np.ndarray:
    """L2-normalised features; dlib features are centred (mean subtracted, then normalised again)."""
    import pyarrow.parquet as pq

    col = pq.read_table(path, columns=["feature"]).column("feature").combine_chunks()
    x = unit_rows(col.values.to_numpy(zero_copy_only=False).reshape(len(col), -1))
    if "dlib" in path.stem:
        x = unit_rows(x - x.mean(axis=0, keepdims=True))
    return x


def real_configs(args: argparse.Namespace, n: int) -> list[tuple[str, IndexSpec]]:
    """The default rule (flat at these sizes), the IVF rule forced, and forced IVF at ``--real-nprobes``."""
    forced = choose_index(n, SearchConfig(flat_below=0))
    configs = [("default", choose_index(n, SearchConfig())), ("forced_ivf_rule", forced)]
    return configs + [
        (f"forced_ivf_nprobe{p}", dataclasses.replace(forced, nprobe=p)) for p in args.real_nprobes if p < forced.nlist
    ]


def run_real_set(args: argparse.Namespace, thresholds: list[float], out: JsonLines, path: Path) -> None:
    xb = load_real(path)
    n, dim = xb.shape
    ids = np.arange(n, dtype=np.int64)
    k, min_sim = min(args.k, n - 1), thresholds[0]
    exact = drop_self(
        *shards_searcher([build_shard(ids, xb, IndexSpec(), None, args.backend)], min_sim)(xb, k + 1), ids, k
    )
    for name, spec in real_configs(args, n):
        train_s, centroids = 0.0, None
        if not spec.is_flat:
            centroids, train_s = quantizer({}, ids, xb, spec.nlist, SearchConfig(), args.backend)
        search = shards_searcher(split_shards(ids, xb, spec, centroids, args.backend, 1), min_sim)
        t0 = time.perf_counter()
        raw = search(xb, k + 1)
        t = time.perf_counter() - t0
        rec = meta(
            args,
            config=name,
            index="Flat" if spec.is_flat else f"IVF{spec.nlist},Flat",
            nlist=spec.nlist,
            nprobe=spec.nprobe,
            default=name == "default",
            dataset=path.stem,
            n=n,
            dim=dim,
            shards=1,
            queries=n,
            search_s_all_extrapolated=False,
            train_s=round(train_s, 4),
            search_s=round(t, 4),
            search_s_all=round(t, 4),
            k_used=k,
            **recall_fields(drop_self(*raw, ids, k), exact, thresholds),
        )
        out.emit(with_target(args, rec))


def run_real(args: argparse.Namespace, thresholds: list[float], out: JsonLines) -> None:
    files = sorted(Path(args.real_dir).glob("*.parquet")) if args.real_dir else []
    if args.real_dir and not files:
        log.warning("no real sets under %s", args.real_dir)
    for path in files:
        run_real_set(args, thresholds, out, path)


# --------------------------------------------------------------------------------------------- table
def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


TABLE_NOTE = (
    "edge@T: count-based edge recall at T; sparse@T: the same on query rows with < k exact edges >= T; "
    "ids@T: id-based edge recall;\n~: all-vs-all time extrapolated from the query sample; "
    "scanned: database vectors compared per query (faiss ndis; PQ: codes);\n"
    "speedup: exact/approx search time on the same queries; w/build: also counting quantizer "
    "training and index build"
)


def table_row(r: dict[str, Any], ts: list[str], p: str) -> list[str]:
    est = "~" if r.get("search_s_all_extrapolated") else ""
    index = r["index"].replace("+RefineFlat", "+Refine").split("(")[0]
    return [
        r["dataset"][:17],
        r["config"][:19],
        index[:25],
        str(r["nprobe"]),
        f"{r.get('train_s', 0.0):.1f}",
        f"{r.get('build_s', 0.0):.1f}",
        est + format(r["search_s_all"], ".1f"),
        _num(r.get("speedup")),
        _num(r.get("speedup_incl_build")),
        _pct(r.get("scanned_frac")),
        f"{r['topk_recall']:.3f}",
        *(f"{r['edge_recall'][t]:.4f}" for t in ts),
        f"{r['edge_recall_unsaturated'][p]:.4f}",
        f"{r['edge_recall_ids'][p]:.4f}",
    ]


def table(records: list[dict], thresholds: list[float], primary: float) -> str:
    ts, p = [f"{t:g}" for t in thresholds], f"{primary:g}"
    head = [
        "dataset",
        "config",
        "index",
        "nprobe",
        "train_s",
        "build_s",
        "search_all_s",
        "speedup",
        "w/build",
        "scanned",
        "top-k",
        *(f"edge@{t}" for t in ts),
        f"sparse@{p}",
        f"ids@{p}",
    ]
    text = format_table(head, [table_row(r, ts, p) for r in records], align="lll")
    return text + "\n" + TABLE_NOTE


# --------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(
        __doc__,
        "backend",
        "n",
        "dim",
        "identities",
        "repeats",
        "seed",
        "out",
        "verbose",
        n={"default": 200_000, "help": "faces in the synthetic day (database)"},
        repeats={"help": "timed searches per configuration (min is kept)"},
    )
    p.add_argument("--k", type=int, default=10, help="neighbours per face (k + 1 are searched: self)")
    p.add_argument("--threshold", type=float, default=0.6, help="edge similarity threshold (target checked here)")
    p.add_argument("--thresholds", type=float, nargs="+", default=None, help="more thresholds to report")
    p.add_argument("--shards", type=int, default=1, help="database shards, searched separately and merged")
    p.add_argument(
        "--full",
        action="store_true",
        help="all alternatives (nlist 1024/4096 x nprobe 8..64, PQ nprobe 16/32/64); slow at n=200000",
    )
    p.add_argument(
        "--sample",
        type=int,
        default=50_000,
        help="query rows searched and compared to exact (0 = all: true all-vs-all)",
    )
    p.add_argument(
        "--flat-below",
        type=int,
        default=None,
        help="override SearchConfig.flat_below for the default rule (e.g. 0 to force IVF at small n)",
    )
    p.add_argument("--nlists", type=int, nargs="+", default=None, help="IVF-Flat alternatives' nlist")
    p.add_argument("--nprobes", type=int, nargs="+", default=None, help="IVF-Flat alternatives' nprobe")
    p.add_argument("--pq-nlist", type=int, default=1024)
    p.add_argument("--pq-m", type=int, default=32, help="PQ sub-quantizers of the reference (0 = skip)")
    p.add_argument("--pq-nprobes", type=int, nargs="+", default=None)
    p.add_argument("--k-factor", type=float, default=4.0, help="IndexRefineFlat re-ranking factor")
    p.add_argument("--target-recall", type=float, default=0.98, help="edge recall wanted at --threshold")
    p.add_argument("--check-queries", type=int, default=2000, help="queries of the sharded-vs-single check")
    p.add_argument("--real-dir", default=str(REAL_DIR), help="real sets (*.parquet); '' to skip")
    p.add_argument("--real-nprobes", type=int, nargs="+", default=[2, 4])
    p.add_argument("--no-synthetic", action="store_true")
    args = p.parse_args(argv)
    if args.n < 100 or args.k < 1 or args.shards < 1:
        p.error("need --n >= 100, --k >= 1, --shards >= 1, --repeats >= 1")
    return finish(p, args)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    setup_logging(args)
    thresholds = sorted({args.threshold, *(args.thresholds or [])})
    t0 = time.perf_counter()
    with JsonLines(args.out) as out:
        if not args.no_synthetic:
            run_synthetic(args, thresholds, out)
        run_real(args, thresholds, out)
    print_table(table(out.records, thresholds, args.threshold))
    print_table(f"total {time.perf_counter() - t0:.1f} s")
    return out.records


if __name__ == "__main__":
    main()
