"""Clustering-quality benchmark (issue 4, item 8): a labelled probe among growing sets of unlabelled distractors.

Experiment design (the reference system's): a labelled **probe** (``--probe-faces`` faces of
``--probe-identities`` people, ``daskcluster.eval.synth`` seed ``--seed``, over ``--days`` days) is mixed
into **distractor** sets of growing size (``--sizes``: faces of *other* people, a different synth population,
seed ``--seed + 1``, ~``--faces-per-identity`` faces per person, spread over the same days; their face ids are
offset by 10**12). Every method clusters all faces; the metrics are measured on the probe faces only:
B-cubed and pairwise precision/recall/F and NMI (``daskcluster.eval.metrics.evaluate`` on the probe faces' true
and predicted labels), FaceMap's R#I (distinct predicted clusters among the probe faces / true probe
identities; 1 is ideal) and R#S (probe faces that are alone in their cluster, counting every face, / probe
faces), the largest cluster (probe faces in it) and the largest cluster over all faces.

Distractors are other people filmed by the same cameras through the same model: they share the probe's
nuisance directions (synth's pose-offset bank and the "blur" directions low-quality faces drift along), so
low-quality distractors drift toward low-quality probe faces, the chaining the guards are for. With
``--independent-nuisance`` the distractor population has its own (it then barely touches the probe).

Methods, side by side on the same faces:

* **ours** (``daskcluster.run.inprocess.run_days``: the day pipeline's own functions, day by day into one gallery):
  ``plain`` (every guard off: the reference system's two steps, assign to the gallery then threshold
  components), each guard alone (``mutual``, ``shared``, ``density``, ``quality``, ``max_size``,
  ``margin``; values in ``GUARDS``, ``--max-size`` for the chaining guard), ``all`` guards at once, and
  ``configured`` (the ``--config FILE`` as it is, e.g. written by ``daskcluster calibrate``).
* single-batch baselines that cluster all faces at once on one shared k-NN graph: the lists of all faces of
  all days pooled (``inprocess.search_graph``: flat or IVF as the config chooses, ``cluster.k`` neighbours at or
  above the threshold): ``components`` (plain k-NN + threshold connected components), ``infomap``
  (the ``infomap`` package, two-level, undirected, edge weight = cosine similarity), ``dbscan`` (sklearn,
  precomputed sparse distance graph ``1 - sim`` from the same lists, ``eps = 1 - threshold``,
  ``--dbscan-min-samples``; noise faces are singletons); their seconds include the shared graph's.
* ``hac``: sklearn ``AgglomerativeClustering`` (average linkage, cosine distance threshold ``1 - threshold``)
  on the features, up to ``--hac-max-faces`` faces (it needs the full distance matrix).

A method is skipped at a size when its time extrapolated from its previous size (``t * (n / n_prev) ** p``,
p = 2 for HAC, 1.5 otherwise) exceeds ``--budget-s``; skipped rows are kept in the table with the reason.

Output (``--out DIR``): ``results.json`` (settings and one record per size and method), ``results.md`` (the
table), ``quality.png`` (B-cubed F and precision against the distractor size); all rewritten after every
row. One JSON line per row on stdout; progress on stderr.
Example: ``python -m benchmarks.quality --sizes 0,100000 --dim 128 --out bench-results/quality``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss  # noqa: F401  (before infomap: both are SWIG modules, and infomap loaded first crashes faiss later)
import numpy as np
import scipy.sparse as sp
from infomap import Infomap
from scipy.sparse.csgraph import connected_components
from sklearn.cluster import DBSCAN, AgglomerativeClustering

from benchmarks.common import ROOT, JsonLines, finish, format_table, parse_sizes, parser, record, setup_logging
from daskcluster.config import Config, load_config
from daskcluster.eval.metrics import evaluate
from daskcluster.eval.synth import SynthSpec, generate_day_arrays
from daskcluster.run.inprocess import DayData, run_days, search_graph, to_part
from daskcluster.search import choose_index
from daskcluster.stages.linking import Neighbours

log = logging.getLogger("bench_quality")

DEFAULT_CONFIG = ROOT / "configs" / "default.yaml"
DISTRACTOR_ID_OFFSET = 10**12
FULL = {"sizes": "0,100000,300000,1000000", "probe_faces": 10_000, "probe_identities": 1000, "dim": 128}
QUICK = {"sizes": "0,2000", "probe_faces": 600, "probe_identities": 60, "dim": 64}

# every guard off: the reference system's two steps (set explicitly, whatever the config file's defaults)
PLAIN = {
    "cluster.mutual": False,
    "cluster.min_shared": 0.0,
    "cluster.link": "all",
    "cluster.max_size": 0,
    "quality.floor": 0.0,
    "quality.use_norm": False,
    "assign.margin": 0.0,
}
# one guard each; the quality signal averages the detector's score and the raw norm mapped from synth's
# norm range (6 at latent quality 0, 30 at 1); cluster.max_size comes from --max-size
GUARDS: dict[str, dict[str, Any]] = {
    "mutual": {"cluster.mutual": True},
    "shared": {"cluster.min_shared": 0.2},
    "density": {"cluster.link": "density"},
    "quality": {"quality.floor": 0.4, "quality.use_norm": True, "quality.norm_range": [6.0, 30.0]},
    "max_size": {},
    "margin": {"assign.margin": 0.05},
}


@dataclass(frozen=True)
class Method:
    key: str
    label: str
    kind: str  # "ours", "graph" or "hac"
    exponent: float  # time ~ n ** exponent, to extrapolate for the budget


METHODS = [
    Method("plain", "ours: plain", "ours", 1.5),
    *(Method(g, f"ours: +{g}", "ours", 1.5) for g in GUARDS),
    Method("all", "ours: all guards", "ours", 1.5),
    Method("configured", "ours: configured", "ours", 1.5),
    Method("components", "kNN+threshold components", "graph", 1.5),
    Method("infomap", "Infomap (kNN graph)", "graph", 1.5),
    Method("dbscan", "DBSCAN (kNN graph)", "graph", 1.5),
    Method("hac", "HAC (average, cosine)", "hac", 2.0),
]
BY_KEY = {m.key: m for m in METHODS}


# --------------------------------------------------------------------------------------------- configs
def with_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """``cfg`` with dotted ``section.key`` values replaced."""
    tree = cfg.to_dict()
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        tree[section][key] = value
    return Config.model_validate(tree)


def base_config(args: argparse.Namespace) -> Config:
    """``configs/default.yaml`` (+ ``--set``) with both thresholds set to ``--threshold`` when given."""
    cfg = load_config(DEFAULT_CONFIG, overrides=args.set)
    if args.threshold is not None:
        cfg = with_overrides(cfg, {"cluster.threshold": args.threshold, "assign.threshold": args.threshold})
    return cfg


def variant_configs(args: argparse.Namespace, base: Config) -> dict[str, Config]:
    """The config of every ``ours`` method."""
    plain = with_overrides(base, PLAIN)
    guards = {**GUARDS, "max_size": {"cluster.max_size": args.max_size}}
    out = {"plain": plain, **{g: with_overrides(plain, o) for g, o in guards.items()}}
    out["all"] = with_overrides(plain, {k: v for o in guards.values() for k, v in o.items()})
    if args.config:
        out["configured"] = load_config(args.config, overrides=args.set)
    return out


# --------------------------------------------------------------------------------------------- data
@dataclass
class Dataset:
    """All faces, day by day, with the pooled (day-concatenated) true labels: -1 for distractors."""

    days: list[DayData]
    label: np.ndarray
    probe_identities: int

    @property
    def n(self) -> int:
        return len(self.label)

    @property
    def probe(self) -> np.ndarray:
        return self.label >= 0


def probe_spec(args: argparse.Namespace) -> SynthSpec:
    return SynthSpec(
        days=args.days,
        faces_per_day=math.ceil(args.probe_faces / args.days),
        identities=args.probe_identities,
        dim=args.dim,
        seed=args.seed,
    )


def distractor_spec(args: argparse.Namespace, size: int) -> SynthSpec:
    return SynthSpec(
        days=args.days,
        faces_per_day=math.ceil(size / args.days),
        identities=max(1, round(size / args.faces_per_identity)),
        dim=args.dim,
        seed=args.seed + 1,
    )


def build_dataset(args: argparse.Namespace, size: int) -> Dataset:
    """Each day: that day's probe faces, then that day's distractors (order does not matter to any method:
    search is exact or trained on an id-hash sample, ties are broken by face number)."""
    days, labels = [], []
    pspec = probe_spec(args)
    dspec = distractor_spec(args, size) if size > 0 else None
    if dspec is not None and not args.independent_nuisance:  # other people, same cameras and model as the probe
        dspec = dataclasses.replace(dspec, nuisance_seed=pspec.nuisance)
    for d in range(args.days):
        parts = [generate_day_arrays(pspec, d)]
        if dspec is not None:
            parts.append(generate_day_arrays(dspec, d))
        ids = np.concatenate([parts[0].face_id] + [p.face_id + DISTRACTOR_ID_OFFSET for p in parts[1:]])
        days.append(
            DayData(
                ids, np.concatenate([p.feature for p in parts]), {"quality": np.concatenate([p.quality for p in parts])}
            )
        )
        labels.append(np.concatenate([parts[0].label] + [np.full(len(p.label), -1, np.int64) for p in parts[1:]]))
    label = np.concatenate(labels)
    return Dataset(days, label, len(np.unique(label[label >= 0])))


# --------------------------------------------------------------------------------------------- methods
def run_ours(ds: Dataset, cfg: Config) -> np.ndarray:
    return np.concatenate(run_days(ds.days, cfg))


@dataclass
class Graph:
    """The shared k-NN graph of all faces pooled: unit features, undirected edges (src < dst, unique)."""

    x: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    sim: np.ndarray
    seconds: float
    index: str

    @property
    def n(self) -> int:
        return len(self.x)


def undirected_edges(nb: Neighbours) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, cols = np.nonzero(nb.nbr >= 0)
    u, v, s = rows.astype(np.int64) + nb.offset, nb.nbr[rows, cols], nb.sim[rows, cols]
    a, b = np.minimum(u, v), np.maximum(u, v)
    _, first = np.unique(a * (len(nb) + nb.offset) + b, return_index=True)
    return a[first], b[first], s[first]


def build_graph(ds: Dataset, cfg: Config) -> Graph:
    t0 = time.perf_counter()
    part = to_part(DayData(np.concatenate([d.ids for d in ds.days]), np.concatenate([d.features for d in ds.days])))
    nb = search_graph(part, cfg)
    src, dst, sim = undirected_edges(nb)
    spec = choose_index(len(part), cfg.search)
    index = "Flat" if spec.is_flat else f"IVF{spec.nlist} nprobe {spec.nprobe}"
    return Graph(part.x, src, dst, sim, time.perf_counter() - t0, index)


def singletons_elsewhere(labels: np.ndarray, assigned: np.ndarray) -> np.ndarray:
    """``labels`` where ``assigned``; every other face gets its own new label."""
    out = labels.astype(np.int64).copy()
    rest = np.flatnonzero(~assigned)
    out[rest] = (out[assigned].max() + 1 if assigned.any() else 0) + np.arange(len(rest))
    return out


def run_components(g: Graph, cfg: Config, args: argparse.Namespace) -> np.ndarray:
    adj = sp.coo_matrix((np.ones(len(g.src), np.int8), (g.src, g.dst)), shape=(g.n, g.n))
    return connected_components(adj, directed=False)[1].astype(np.int64)


def run_infomap(g: Graph, cfg: Config, args: argparse.Namespace) -> np.ndarray:
    im = Infomap(f"--two-level --silent --num-trials {args.infomap_trials} --seed {args.seed + 7}")
    if len(g.src):
        im.add_links(np.column_stack([g.src, g.dst, g.sim]).astype(np.float64))
    modules = im.run().modules(1) if len(g.src) else {}
    labels = np.zeros(g.n, np.int64)
    found = np.zeros(g.n, bool)
    nodes = np.fromiter(modules.keys(), np.int64, len(modules))
    labels[nodes] = np.fromiter(modules.values(), np.int64, len(modules))
    found[nodes] = True
    return singletons_elsewhere(labels, found)


def run_dbscan(g: Graph, cfg: Config, args: argparse.Namespace) -> np.ndarray:
    dist = np.maximum(1.0 - g.sim.astype(np.float64), 1e-9)  # an explicit distance: never an absent zero
    rows, cols = np.concatenate([g.src, g.dst]), np.concatenate([g.dst, g.src])
    X = sp.csr_matrix((np.concatenate([dist, dist]), (rows, cols)), shape=(g.n, g.n))
    eps = 1.0 - cfg.cluster.threshold + 1e-6
    labels = DBSCAN(eps=eps, min_samples=args.dbscan_min_samples, metric="precomputed").fit_predict(X)
    return singletons_elsewhere(labels, labels >= 0)


def run_hac(g: Graph, cfg: Config, args: argparse.Namespace) -> np.ndarray:
    hac = AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage="average", distance_threshold=1.0 - cfg.cluster.threshold
    )
    return hac.fit_predict(g.x).astype(np.int64)


GRAPH_METHODS: dict[str, Callable[[Graph, Config, argparse.Namespace], np.ndarray]] = {
    "components": run_components,
    "infomap": run_infomap,
    "dbscan": run_dbscan,
    "hac": run_hac,
}


# --------------------------------------------------------------------------------------------- metrics
def probe_metrics(ds: Dataset, pred: np.ndarray) -> dict[str, Any]:
    """``evaluate`` on the probe faces, FaceMap's R#I and R#S, and the largest cluster over all faces."""
    probe = ds.probe
    m = evaluate(ds.label[probe], pred[probe])
    _, inverse, counts = np.unique(pred, return_inverse=True, return_counts=True)
    size = counts[inverse.ravel()]
    return {
        **m,
        "r_i": m["n_clusters"] / ds.probe_identities,
        "r_s": float((size[probe] == 1).sum() / probe.sum()),
        "largest_all": int(counts.max()),
    }


# --------------------------------------------------------------------------------------------- output
COLUMNS = [
    ("bP", "bcubed_precision"),
    ("bR", "bcubed_recall"),
    ("bF", "bcubed_f"),
    ("pP", "pairwise_precision"),
    ("pR", "pairwise_recall"),
    ("pF", "pairwise_f"),
    ("NMI", "nmi"),
    ("R#I", "r_i"),
    ("R#S", "r_s"),
]


def size_label(size: int) -> str:
    if size >= 1_000_000 and size % 100_000 == 0:
        return f"{size / 1e6:g}M"
    return f"{size / 1000:g}k" if size >= 1000 and size % 100 == 0 else str(size)


def table_cells(r: dict[str, Any]) -> list[str]:
    cells = [size_label(r["size"]), r["method"]]
    if r["status"] != "ok":
        return cells + ["-"] * (len(COLUMNS) + 3) + [r["note"]]
    return (
        cells
        + [f"{r[k]:.3f}" for _, k in COLUMNS]
        + [str(r["largest_cluster"]), str(r["largest_all"]), f"{r['seconds']:.1f}", r.get("note", "")]
    )


def markdown(settings: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    head = ["distractors", "method", *(c for c, _ in COLUMNS), "largest", "largest (all)", "seconds", "note"]
    lines = [
        f"# Clustering quality: probe of {settings['probe_faces']} faces / {settings['probe_identities']} "
        f"identities over {settings['days']} days among distractors (dim {settings['dim']})",
        "",
        settings["description"],
        "",
        format_table(head, [table_cells(r) for r in rows], align="ll" + "r" * (len(head) - 3) + "l", style="markdown"),
    ]
    graphs = [
        f"{size_label(int(s))}: {g['faces']} faces, {g['index']}, {g['edges']} edges, {g['seconds']:.1f} s"
        for s, g in settings["graphs"].items()
    ]
    if graphs:
        lines += ["", "Shared k-NN graph (included in the graph methods' seconds): " + "; ".join(graphs) + "."]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], sizes: list[int], path: Path, dim: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    labels = list(dict.fromkeys(r["method"] for r in rows))
    for i, label in enumerate(labels):
        pts = [(sizes.index(r["size"]), r) for r in rows if r["method"] == label and r["status"] == "ok"]
        if not pts:
            continue
        style = "-" if label.startswith("ours") else "--"
        for ax, key in zip(axes, ("bcubed_f", "bcubed_precision")):
            ax.plot(
                [p for p, _ in pts],
                [r[key] for _, r in pts],
                style,
                marker="o",
                label=label,
                color=plt.cm.tab20(i % 20),
            )
    for ax, title in zip(axes, ("B-cubed F (probe faces)", "B-cubed precision (probe faces)")):
        ax.set_xticks(range(len(sizes)), [size_label(s) for s in sizes])
        ax.set_xlabel(f"distractor faces (dim {dim})")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="center right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.85, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(
    out: Path, settings: dict[str, Any], rows: list[dict[str, Any]], sizes: list[int], with_plot: bool = True
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("results.json", json.dumps({"settings": settings, "rows": rows}, indent=1)),
        ("results.md", markdown(settings, rows)),
    ):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)
    if with_plot:
        plot(rows, sizes, out / "quality.png", settings["dim"])


# --------------------------------------------------------------------------------------------- driver
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(
        __doc__,
        "dim",
        "seed",
        "set",
        "out",
        "quick",
        formatter=argparse.RawDescriptionHelpFormatter,
        dim={"default": None, "help": f"feature dimension (default {FULL['dim']}: 1M faces fit a small machine)"},
        seed={"default": 1, "help": "probe synth seed; distractors use seed + 1"},
        set={"help": "config override (repeatable)"},
        out={"type": str, "default": "bench-results/quality", "help": "output directory"},
        quick={"help": "tiny sizes for the smoke test"},
    )
    p.add_argument("--sizes", help=f"distractor faces, comma separated (default {FULL['sizes']})")
    p.add_argument("--probe-faces", type=int, help=f"labelled probe faces (default {FULL['probe_faces']})")
    p.add_argument("--probe-identities", type=int, help=f"people in the probe (default {FULL['probe_identities']})")
    p.add_argument("--days", type=int, default=3, help="days probe and distractors are spread over")
    p.add_argument("--faces-per-identity", type=float, default=10.0, help="distractor faces per distractor person")
    p.add_argument("--threshold", type=float, help="cosine threshold of every method (default: configs/default.yaml)")
    p.add_argument("--config", help="a calibrated config file: adds the 'ours: configured' row")
    p.add_argument("--max-size", type=int, default=1000, help="cluster.max_size of the chaining-guard rows")
    p.add_argument("--methods", help="comma-separated subset of: " + ", ".join(m.key for m in METHODS))
    p.add_argument("--dbscan-min-samples", type=int, default=4)
    p.add_argument("--infomap-trials", type=int, default=1)
    p.add_argument("--hac-max-faces", type=int, default=20_000, help="HAC needs all n^2 / 2 distances")
    p.add_argument("--budget-s", type=float, default=3600.0, help="skip a method at a size it would exceed this")
    p.add_argument(
        "--independent-nuisance", action="store_true", help="distractors get their own pose bank and blur directions"
    )
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.size_list = parse_sizes(args.sizes)
    args.method_keys = method_keys(p, args)
    return finish(p, args)


def method_keys(p: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The methods run, in table order: ``--methods`` or all (``configured`` only with ``--config``)."""
    keys = [m.key for m in METHODS if m.key != "configured" or args.config]
    if not args.methods:
        return keys
    wanted = [k.strip() for k in args.methods.split(",") if k.strip()]
    unknown = sorted(set(wanted) - set(BY_KEY))
    if unknown:
        p.error(f"unknown methods {unknown}; choose from {[m.key for m in METHODS]}")
    if "configured" in wanted and not args.config:
        p.error("method 'configured' needs --config FILE")
    return [k for k in keys if k in wanted]


def settings_of(args: argparse.Namespace, base: Config, configs: dict[str, Config]) -> dict[str, Any]:
    guards = {
        k: {d: v for d, v in c.to_dict().items() if d in ("assign", "cluster", "quality")} for k, c in configs.items()
    }
    desc = (
        f"Synthetic (daskcluster.synth) d={args.dim}; threshold {base.cluster.threshold} (cluster and assign), "
        f"k={base.cluster.k}; guards: mutual, min_shared {GUARDS['shared']['cluster.min_shared']}, "
        f"link density, quality floor {GUARDS['quality']['quality.floor']} (score and raw norm), "
        f"max_size {args.max_size}, margin {GUARDS['margin']['assign.margin']}. Metrics on the probe faces; "
        f"R#I = predicted clusters / true identities, R#S = probe faces alone in their cluster / probe faces; "
        f"largest = probe faces in the largest cluster; seconds of graph methods include the shared k-NN graph. "
        f"Distractors {'have their own' if args.independent_nuisance else 'share the probe'}'s nuisance "
        f"directions (pose bank, blur); ~{args.faces_per_identity:g} faces per distractor identity."
    )
    return {
        "probe_faces": args.probe_faces,
        "probe_identities": args.probe_identities,
        "days": args.days,
        "dim": args.dim,
        "sizes": args.size_list,
        "seed": args.seed,
        "threshold": base.cluster.threshold,
        "k": base.cluster.k,
        "max_size": args.max_size,
        "dbscan_min_samples": args.dbscan_min_samples,
        "hac_max_faces": args.hac_max_faces,
        "budget_s": args.budget_s,
        "independent_nuisance": args.independent_nuisance,
        "config_file": args.config,
        "configs": guards,
        "graphs": {},
        "description": desc,
    }


def skip_reason(method: Method, n: int, history: dict[str, tuple[int, float]], args: argparse.Namespace) -> str:
    if method.kind == "hac" and n > args.hac_max_faces:
        return f"skipped: {n} faces > HAC cap {args.hac_max_faces} (needs n^2/2 distances)"
    if method.key in history:
        n0, t0 = history[method.key]
        est = t0 * (n / max(n0, 1)) ** method.exponent
        if est > args.budget_s:
            return f"skipped: estimated {est:.0f} s > budget {args.budget_s:.0f} s"
    return ""


def run_size(
    args: argparse.Namespace,
    size: int,
    base: Config,
    configs: dict[str, Config],
    history: dict[str, tuple[int, float]],
    settings: dict[str, Any],
) -> Iterator[dict[str, Any]]:
    t0 = time.perf_counter()
    ds = build_dataset(args, size)
    log.info(
        "size %s: %d faces (%d probe) generated in %.1f s",
        size_label(size),
        ds.n,
        ds.probe.sum(),
        time.perf_counter() - t0,
    )
    graph: Graph | None = None
    for key in args.method_keys:
        method = BY_KEY[key]
        row = record(
            "quality",
            size=size,
            n_faces=ds.n,
            n_probe=int(ds.probe.sum()),
            n_identities=ds.probe_identities,
            method=method.label,
            key=key,
        )
        reason = skip_reason(method, ds.n, history, args)
        if reason:
            log.info("  %-28s %s", method.label, reason)
            yield {**row, "status": "skipped", "note": reason}
            continue
        if method.kind in ("graph", "hac"):
            if graph is None:
                graph = build_graph(ds, base)
                settings["graphs"][str(size)] = {
                    "faces": graph.n,
                    "edges": len(graph.src),
                    "index": graph.index,
                    "seconds": graph.seconds,
                }
                log.info("  shared k-NN graph: %s, %d edges, %.1f s", graph.index, len(graph.src), graph.seconds)
            t1 = time.perf_counter()
            pred = GRAPH_METHODS[key](graph, base, args)
            own = time.perf_counter() - t1
            seconds = own + (graph.seconds if method.kind == "graph" else 0.0)
        else:
            t1 = time.perf_counter()
            pred = run_ours(ds, configs[key])
            own = seconds = time.perf_counter() - t1
        history[key] = (ds.n, seconds)
        row.update(status="ok", seconds=seconds, cluster_s=own, **probe_metrics(ds, pred))
        log.info(
            "  %-28s bP %.3f bR %.3f bF %.3f pF %.3f largest %d/%d  %.1f s",
            method.label,
            row["bcubed_precision"],
            row["bcubed_recall"],
            row["bcubed_f"],
            row["pairwise_f"],
            row["largest_cluster"],
            row["largest_all"],
            seconds,
        )
        yield row


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    setup_logging(args, quiet=logging.INFO, fmt="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    base = base_config(args)
    configs = variant_configs(args, base)
    settings = settings_of(args, base, configs)
    out, lines = Path(args.out), JsonLines()  # the rows on stdout; the files under --out (a directory)
    history: dict[str, tuple[int, float]] = {}
    log.info(
        "quality benchmark: sizes %s, probe %d faces / %d identities, dim %d, methods %s",
        args.size_list,
        args.probe_faces,
        args.probe_identities,
        args.dim,
        ",".join(args.method_keys),
    )
    for size in args.size_list:
        for row in run_size(args, size, base, configs, history, settings):
            lines.emit(row)
            write_outputs(out, settings, lines.records, args.size_list, with_plot=False)
        write_outputs(out, settings, lines.records, args.size_list)
    write_outputs(out, settings, lines.records, args.size_list)
    log.info("wrote %s", ", ".join(str(out / n) for n in ("results.json", "results.md", "quality.png")))
    return lines.records


if __name__ == "__main__":
    main()
