"""The cost model of the scaling benchmark: each task name's compute and bytes scaled from the measured day to a
production day, and the projected seconds per stage (see the package docstring, part (b)).

Stages are the day summary's ``stage_seconds`` keys and a task name's stage is read from
:mod:`daskcluster.run.tasks`; the per-name :data:`MODELS` only say what each task's work grows with.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from daskcluster.config import Config
from daskcluster.run.tasks import OTHER, STAGE_TASKS, TASK_STAGE
from daskcluster.search import IndexSpec, choose_index, train_size
from daskcluster.stages.inputs import partition_rows

MB = 2**20
STAGES = [*STAGE_TASKS]  # every stage of the jobs, OTHER (the small gathers between stages) last
UNMATCHED = "(unmatched)"  # prefix of bytes received by a task that had already reported: + the stage then
MODEL_TEXT = {
    "ingest": "F",
    "dedupe": "F (duplicates: <= 16 tasks)",
    "prepare": "F (centring, quality flags)",
    "load-shard": "C",
    "assign-train": "12 x n_train x nlist dots, 1 task",
    "assign": "F x (C x nprobe/nlist + nlist x S_g) dots; build C x nlist",
    "knn-train": "12 x n_train x nlist_k dots, 1 task",
    "knn-build": "U x nlist_k dots",
    "edges": "U x (U x nprobe_k/nlist_k + nlist_k x S_k) dots",
    "components": "E (forests); V tree depth log8 P; V in 1 task",
    "centre-update": "F (sums); C (whole shard)",
    "write": "C (snapshot) + F",
    "consolidate": "not part of the day (a maintenance job)",
    OTHER: "F (counts, stats)",
}


def stage_of(prefix: str) -> str:
    """The stage of a task-name prefix (``daskcluster.run.tasks``); ``(unmatched)X``: X where X is a stage (the
    one the transfer happened in), else X's stage; a name no job submits (a gap, the probe): OTHER."""
    name = prefix.removeprefix(UNMATCHED)
    if name != prefix and name in STAGE_TASKS:
        return name
    return TASK_STAGE.get(name, OTHER)


def stage_sums(prefixes: dict[str, dict], field: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for p, v in prefixes.items():
        out[stage_of(p)] += v[field]
    return out


def parse_index(text: str | None) -> tuple[int, int]:
    """(nlist, nprobe) of ``IndexSpec.describe()``; (0, 0) for flat search."""
    m = re.search(r"IVF(\d+),Flat nprobe=(\d+)", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def tree_levels(n: int, fan_in: int = 8) -> list[int]:
    """Tasks per round of ``DayRunner.tree_reduce`` over ``n`` inputs."""
    levels = []
    while n > 1:
        n = math.ceil(n / fan_in)
        levels.append(n)
    return levels


# --------------------------------------------------------------------------------------------- per task name
@dataclasses.dataclass(frozen=True)
class PrefixModel:
    work: str  # unit of compute (a key of UNITS)
    tasks: str  # unit of the number of tasks
    data: str  # unit of the bytes it receives
    fan: str = "1"  # how many shards' workers need each input: "1", "Sg", "Sk", "W"
    serial: bool = False  # one task: never spread
    tree: bool = False  # a tree reduction over the partitions (cc-merge)


MODELS: dict[str, PrefixModel] = {
    "ingest": PrefixModel("F", "P", "F"),
    "id-buckets": PrefixModel("F", "P", "F"),
    "bucket": PrefixModel("F", "PB", "F"),
    "duplicates": PrefixModel("F", "B", "F"),
    "dedupe": PrefixModel("F", "P", "F"),
    "reasons": PrefixModel("F", "P", "P"),
    "count": PrefixModel("F", "P", "P"),
    "load-shard": PrefixModel("C", "Sg", "C"),
    "assign-sample": PrefixModel("C", "Sg", "C"),
    "assign-train": PrefixModel("train_a", "1", "ntrain_a", serial=True),
    "gallery-index": PrefixModel("C_nla", "Sg", "nla", fan="W"),
    "assign-probe": PrefixModel("F_nla", "P", "F"),
    "assign-search": PrefixModel("dots_a", "PGg", "F", fan="Sg"),
    "assign-merge": PrefixModel("FGg", "P_tree_Gg", "FGg"),
    "assign-decide": PrefixModel("F", "P", "F"),
    "knn-sample": PrefixModel("F", "P", "F"),
    "knn-train": PrefixModel("train_k", "1", "ntrain_k", serial=True),
    "knn-build": PrefixModel("U_nlk", "Sk", "F"),
    "knn-probe": PrefixModel("U_nlk", "P", "F"),
    "knn-search": PrefixModel("dots_k", "PGk", "F", fan="Sk"),
    "knn-merge": PrefixModel("UGk", "P_tree_Gk", "UGk"),
    "edges": PrefixModel("U", "P", "U"),
    "cc-forest": PrefixModel("E", "P", "E"),
    "cc-merge": PrefixModel("V_levels", "tree_P", "V", tree=True),
    "vertex-ids": PrefixModel("F", "P", "F"),
    "components": PrefixModel("V", "1", "V", serial=True),
    "component-stats": PrefixModel("1", "1", "V", serial=True),
    "labels": PrefixModel("V", "P", "V", fan="W"),
    "centre-sums": PrefixModel("F", "P", "F"),
    "new-centres": PrefixModel("F", "P", "F"),
    "sums": PrefixModel("F", "PSg2", "F"),
    "centre-update": PrefixModel("C", "Sg", "F"),
    "write-shard": PrefixModel("C", "Sg", "C"),
    "write-assignments": PrefixModel("F", "P", "F"),
    "shard-stats": PrefixModel("C", "Sg", "1"),
    "commit": PrefixModel("nla", "1", "nla", serial=True),
}
DEFAULT_MODEL = PrefixModel("F", "P", "F")
NOT_MODELLED = ("gallery-ids", "probe", "probe-pick")  # history-dependent (0 here) / the probe itself


def train_dots(n_train: int, nlist: int, rows: int) -> float:
    """faiss k-means as the CPU backend runs it: 12 iterations over min(sample, 256 x nlist) points."""
    if nlist <= 0:
        return 0.0
    return 12.0 * min(n_train, rows, 256 * nlist) * nlist


UNITS: dict[str, Callable[[dict], float]] = {
    "1": lambda q: 1.0,
    "F": lambda q: q["F"],
    "U": lambda q: q["U"],
    "V": lambda q: q["U"],
    "E": lambda q: q["E"],
    "C": lambda q: q["C"],
    "P": lambda q: q["P"],
    "B": lambda q: min(q["P"], 16),
    "PB": lambda q: q["P"] * min(q["P"], 16),
    "Sg": lambda q: q["Sg"],
    "Sk": lambda q: q["Sk"],
    "PSg2": lambda q: 2 * q["P"] * q["Sg"],
    # the searches: one task per (partition, worker holding shards), G = min(W, S) workers hold shards
    "PGg": lambda q: q["P"] * min(q["W"], q["Sg"]),
    "PGk": lambda q: q["P"] * min(q["W"], q["Sk"]),
    "P_tree_Gg": lambda q: q["P"] * sum(tree_levels(min(q["W"], q["Sg"]))),
    "P_tree_Gk": lambda q: q["P"] * sum(tree_levels(min(q["W"], q["Sk"]))),
    "tree_P": lambda q: sum(tree_levels(q["P"])),
    "FGg": lambda q: q["F"] * min(q["W"], q["Sg"]),
    "UGk": lambda q: q["U"] * min(q["W"], q["Sk"]),
    "V_levels": lambda q: q["U"] * len(tree_levels(q["P"])),
    "nla": lambda q: max(q["nla"], 1),
    "ntrain_a": lambda q: min(q["ntrain_a"], q["C"]),
    "ntrain_k": lambda q: min(q["ntrain_k"], q["U"]),
    # dot products of d-dim vectors: the lists probed, plus the coarse quantization when every shard's search
    # runs it again (``qa``/``qk`` = 1: no ``assign-probe``/``knn-probe`` tasks in the measured code)
    "dots_a": lambda q: q["F"] * (q["C"] * q["pa"] + q["qa"] * q["nla"] * q["Sg"]),
    "dots_a_once": lambda q: q["F"] * (q["C"] * q["pa"] + q["nla"]),
    "dots_k": lambda q: q["U"] * (q["U"] * q["pk"] + q["qk"] * q["nlk"] * q["Sk"]),
    "F_nla": lambda q: q["F"] * q["nla"],
    "C_nla": lambda q: q["C"] * q["nla"],
    "U_nlk": lambda q: q["U"] * q["nlk"],
    "train_a": lambda q: train_dots(q["ntrain_a"], q["nla"], q["C"]),
    "train_k": lambda q: train_dots(q["ntrain_k"], q["nlk"], q["U"]),
}
DOT_UNITS = ("dots_a", "dots_k", "train_a", "train_k", "C_nla", "U_nlk", "F_nla")


def fan_factor(fan: str, q: dict) -> float:
    """Expected number of other workers an input goes to: min(W, S) x (W - 1) / W."""
    w = q["W"]
    s = {"1": 1, "Sg": q["Sg"], "Sk": q["Sk"], "W": w}[fan]
    return min(w, s) * (w - 1) / w


# --------------------------------------------------------------------------------------------- quantities
def measured_quantities(rec: dict, cfg: Config) -> dict[str, float]:
    """The measured day's units, from a ``run`` record."""
    s, prefixes = rec["counts"], rec["prefixes"]
    f = s["faces_valid"]
    nla, npa = parse_index(s.get("assign_index"))
    nlk, npk = parse_index(s.get("knn_index"))
    search = cfg.search
    return {
        "F": f,
        "U": max(1, f - s["assigned"]),
        "E": max(1, s.get("knn_edges") or 0),
        "C": rec["gallery_clusters"],
        "P": prefixes.get("ingest", {}).get("tasks", 1),
        "Sg": rec.get("shards", 2),
        "Sk": max(1, prefixes.get("knn-build", {}).get("tasks", 1)),
        "W": rec["workers"],
        "nla": nla,
        "pa": npa / nla if nla else 1.0,
        "nlk": nlk,
        "pk": npk / nlk if nlk else 1.0,
        "qa": 0 if "assign-probe" in prefixes else 1,
        "qk": 0 if "knn-probe" in prefixes else 1,
        "ntrain_a": train_size(IndexSpec(nlist=nla), search),
        "ntrain_k": train_size(IndexSpec(nlist=nlk), search),
    }


def scale_quantities(args: argparse.Namespace, cfg: Config, qm: dict, w: int) -> dict[str, float]:
    """The production day: ``--scale-faces`` against ``--scale-clusters`` on ``w`` workers."""
    f, c, d = args.scale_faces, args.scale_clusters, args.dim
    u = f * qm["U"] / qm["F"]
    nla = min(args.scale_nlist, max(16, c // 39))
    knn = choose_index(int(u), cfg.search)
    nlk = args.scale_knn_nlist or knn.nlist
    npk = args.scale_knn_nprobe or knn.nprobe
    nlk = min(nlk, max(16, int(u) // 39)) if nlk else 0
    rows_per_part = partition_rows(cfg.ingest, d, cfg.backend)
    return {
        "F": f,
        "U": u,
        "E": u * qm["E"] / qm["U"],
        "C": c,
        "P": math.ceil(f / rows_per_part),
        "Sg": args.scale_shards or w,
        "Sk": max(1, math.ceil(u * d * 4 / MB / cfg.search.shard_mb)),
        "W": w,
        "nla": nla,
        "pa": min(1.0, args.scale_nprobe / nla),
        "nlk": nlk,
        "pk": min(1.0, npk / nlk) if nlk else 1.0,
        "ntrain_a": train_size(IndexSpec(nlist=nla), cfg.search),
        "ntrain_k": train_size(IndexSpec(nlist=nlk), cfg.search),
        "qa": qm["qa"],
        "qk": qm["qk"],
    }


def part_bytes_per_face(args: argparse.Namespace, moved: dict, qm_bytes: dict) -> float:
    """Bytes a query partition puts on the wire per face (features, ids, metadata), from the measured
    ``assign-search`` transfers; the features alone (d x 4 bytes) when none were measured. (``knn-search`` is
    not used: its partitions may already sit at the shard's worker, copied there by ``knn-build``.)"""
    f_m = fan_factor("Sg", qm_bytes)
    b = moved.get("assign-search", {}).get("in_bytes", 0)
    return b / (qm_bytes["F"] * f_m) if b and f_m else args.dim * 4.0


def _ratio(unit: str, qs: dict, qm: dict) -> float:
    m = UNITS[unit](qm)
    return UNITS[unit](qs) / m if m else 0.0


def dot_rate(compute: dict, qm_compute: dict) -> float:
    """Dot products per second of the measured ``assign-search``."""
    return UNITS["dots_a"](qm_compute) / max(compute.get("assign-search", {}).get("compute_s", 0.0), 1e-9)


# --------------------------------------------------------------------------------------------- projection
@dataclasses.dataclass
class Projection:
    """What one projection is computed from: the measured day (compute from the 1-worker run, bytes from the
    2-worker run), the production day's quantities ``qs`` at ``w`` workers and the worker speed-up."""

    args: argparse.Namespace
    compute: dict
    moved: dict
    qm_compute: dict
    qm_bytes: dict
    qs: dict
    w: int
    speedup: float

    @property
    def bandwidth(self) -> float:
        return self.args.net_gbps * 1e9 / 8


def prefix_compute(pr: Projection, p: str, m: PrefixModel) -> tuple[float, float]:
    """(wall seconds of compute, tasks) of task name ``p`` at scale."""
    cm = pr.compute.get(p, {})
    cpu_m, tasks_m = cm.get("compute_s", 0.0), cm.get("tasks", 0)
    tasks_s = tasks_m * _ratio(m.tasks, pr.qs, pr.qm_compute) if tasks_m else 0.0
    if m.work in DOT_UNITS and not (tasks_m and UNITS[m.work](pr.qm_compute)):
        # no such dot products at the measured size (flat search there): at the assign-search dot rate
        cpu_s = UNITS[m.work](pr.qs) / dot_rate(pr.compute, pr.qm_compute)
        tasks_s = tasks_s or (UNITS[m.tasks](pr.qs) if cpu_s else 0.0)
    else:
        cpu_s = cpu_m * _ratio(m.work, pr.qs, pr.qm_compute)
    cpu_s /= pr.speedup
    if m.serial:
        return cpu_s, tasks_s
    if m.tree:
        levels = tree_levels(int(pr.qs["P"]))
        per_level = cpu_s / max(1, len(levels))
        return sum(math.ceil(n / pr.w) * per_level / n for n in levels), tasks_s
    return cpu_s / max(1.0, min(pr.w, tasks_s)), tasks_s


def prefix_network(pr: Projection, p: str, m: PrefixModel, tasks_s: float) -> tuple[float, float]:
    """(network seconds, bytes) of task name ``p`` at scale."""
    qs, receivers = pr.qs, max(1.0, min(pr.w, tasks_s))
    if m.fan in ("Sg", "Sk"):  # every query partition travels to every shard's worker
        b_s = qs["F"] * part_bytes_per_face(pr.args, pr.moved, pr.qm_bytes) * fan_factor(m.fan, qs)
    else:
        b_m = pr.moved.get(p, {}).get("in_bytes", 0)
        f_m = fan_factor(m.fan, pr.qm_bytes)
        b_s = b_m * _ratio(m.data, qs, pr.qm_bytes) * fan_factor(m.fan, qs) / f_m if f_m else 0.0
        if p.startswith(UNMATCHED):  # partitions or sums, in the stage they moved in: spread over P
            receivers = max(1.0, min(pr.w, qs["P"]))
    net = b_s / pr.bandwidth if (m.serial or m.tree) else b_s / (receivers * pr.bandwidth)
    return net, b_s


def stage_costs(pr: Projection) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Compute, network seconds, tasks and bytes summed per stage; wall seconds per task name."""
    stage = {s: {"compute_s": 0.0, "network_s": 0.0, "tasks": 0.0, "bytes": 0.0} for s in STAGES}
    prefix_wall: dict[str, float] = {}
    for p in sorted(set(pr.compute) | set(pr.moved) | {"knn-train"}):
        if p in NOT_MODELLED:
            continue
        m = DEFAULT_MODEL if p.startswith(UNMATCHED) else MODELS.get(p, DEFAULT_MODEL)
        wall, tasks_s = prefix_compute(pr, p, m)
        net, b_s = prefix_network(pr, p, m, tasks_s)
        prefix_wall[p] = wall + net
        row = stage[stage_of(p)]
        row["compute_s"] += wall
        row["network_s"] += net
        row["tasks"] += tasks_s
        row["bytes"] += b_s
    return stage, prefix_wall


def project(
    args: argparse.Namespace,
    cfg: Config,
    compute: dict,
    moved: dict,
    qm_compute: dict,
    qm_bytes: dict,
    sched_rate: float,
    w: int,
    speedup: float,
) -> dict[str, Any]:
    """Projected seconds per stage at ``w`` workers (see the package docstring): a stage takes the longer of its
    compute + network and its tasks / scheduler throughput."""
    qs = scale_quantities(args, cfg, qm_compute, w)
    pr = Projection(args, compute, moved, qm_compute, qm_bytes, qs, w, speedup)
    stage, prefix_wall = stage_costs(pr)
    per_stage = {
        s: {
            "wall_s": max(row["compute_s"] + row["network_s"], row["tasks"] / sched_rate),
            **row,
            "scheduling_s": row["tasks"] / sched_rate,
        }
        for s, row in stage.items()
    }
    retrain = per_stage.pop("assign-train")
    once = UNITS["dots_a_once"](qs) / UNITS["dots_a"](qs)
    a = compute.get("assign-search", {}).get("compute_s", 0.0) * _ratio("dots_a", qs, qm_compute) / speedup
    a /= max(1.0, min(w, qs["P"] * qs["Sg"]))
    return {
        "workers": w,
        "worker_speedup": speedup,
        "quantities": qs,
        "stages": per_stage,
        "retrain_quantizer": retrain,
        "total_s": sum(v["wall_s"] for v in per_stage.values()),
        "tasks": sum(v["tasks"] for v in per_stage.values()),
        "scheduling_s": sum(v["scheduling_s"] for v in per_stage.values()),
        "assign_search_s": a,
        "assign_search_if_quantized_once_s": a * once,
        "prefix_wall_s": prefix_wall,
        "gallery_gb_per_worker": qs["C"] * args.dim * 4 / qs["Sg"] / 1e9,
    }


def model_fields(args: argparse.Namespace, cfg: Config, rec1: dict, rec2: dict) -> dict[str, Any]:
    """The ``model`` record's fields: the measured and scaled quantities, from the ``run`` records of the
    1-worker run (compute) and the 2-worker run (bytes, scheduler throughput)."""
    p1, p2 = rec1["prefixes"], rec2["prefixes"]
    qm_c, qm_b = measured_quantities(rec1, cfg), measured_quantities(rec2, cfg)
    return dict(
        measured_compute_run=rec1["label"],
        measured_bytes_run=rec2["label"],
        quantities_measured=qm_c,
        quantities_measured_bytes_run=qm_b,
        scheduler_tasks_per_s=round(rec2["scheduler_tasks_per_s"], 1),
        scale_faces=args.scale_faces,
        scale_clusters=args.scale_clusters,
        net_gbps=args.net_gbps,
        scale_nlist=args.scale_nlist,
        scale_nprobe=args.scale_nprobe,
        dot_rate_per_s=dot_rate(p1, qm_c),
        part_bytes_per_face=part_bytes_per_face(args, p2, qm_b),
        stage_model=MODEL_TEXT,
        prefix_model={p: dataclasses.asdict(m) for p, m in MODELS.items()},
    )


def projections(args: argparse.Namespace, cfg: Config, rec1: dict, rec2: dict) -> list[dict[str, Any]]:
    """One projection per ``--worker-speedup`` x ``--scale-workers``, with the efficiency vs 8 workers."""
    p1, p2 = rec1["prefixes"], rec2["prefixes"]
    qm_c, qm_b = measured_quantities(rec1, cfg), measured_quantities(rec2, cfg)
    out = []
    for sp in args.worker_speedup:
        group = [
            project(args, cfg, p1, p2, qm_c, qm_b, rec2["scheduler_tasks_per_s"], w, sp) for w in args.scale_workers
        ]
        base = next((g for g in group if g["workers"] == 8), group[0])
        for g in group:
            g["efficiency_vs_8"] = base["workers"] * base["total_s"] / (g["workers"] * g["total_s"])
        out += group
    return out


def round_tree(x: Any) -> Any:
    """Floats of a nested structure to 6 significant digits."""
    if isinstance(x, dict):
        return {k: round_tree(v) for k, v in x.items()}
    if isinstance(x, float):
        return float(f"{x:.6g}")
    return x
