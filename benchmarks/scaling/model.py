"""The cost model of the scaling benchmark: each task name's compute and bytes scaled from the measured day to a
production day of the delta-gallery design, and the projected seconds per stage (see the package docstring,
part (b)).

Stages are the day summary's ``stage_seconds`` keys and a task name's stage is read from
:mod:`daskcluster.run.tasks`; the per-name :data:`MODELS` say what each task's work grows with, how many tasks
the design submits, what it reads and writes in the gallery's store, and where its cost comes from when the
measured run does not have it (another measured task's rate, or a measured machine rate: dot products, memory
copies, random reads).
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
from daskcluster.run.day_ingest import DEDUPE_TASKS
from daskcluster.run.tasks import OTHER, STAGE_TASKS, TASK_STAGE
from daskcluster.search import IndexSpec, choose_index, train_size

MB = 2**20
GB = 1e9
STAGES = [*STAGE_TASKS]  # every stage of the jobs, OTHER (the small gathers between stages) last
UNMATCHED = "(unmatched)"  # prefix of bytes received by a task that had already reported: + the stage then

# the design's constants (daskcluster.gallery.ids, gallery.tables, DayRunner.tree_reduce)
GPU_PARTITION_MB = 1024.0  # feature MB per partition on a GPU-class worker (speed-up > 1); the config's on CPU
CPU_PARTITION_MB = 64.0  # when the config leaves it to the backend (partition_mb 0)
FAN_IN = 8  # tree reductions
LSM_FANOUT = 8  # face-id index: this many runs of a level merge into one run of the next
ID_ROW_GROUP = 65_536  # ids per Parquet row group of an index run (a Bloom hit reads the row groups it may be in)
ID_BYTES = 8
ROW_FIXED_BYTES = 30  # a centre row besides its mean: cluster_id 8, count 8, first/last day 4+4, joinable,
# list_id 4, deleted (deltas) 1
ASSIGNMENT_ROW_BYTES = 22  # face_id 8, cluster_id 8, similarity 4, decision 1, ambiguous 1 (metadata not counted)
# machine rates of run records made before the memory probe (a 2-core development VM, one core per worker)
DEFAULT_COPY_BYTES_PER_S = 2e9
DEFAULT_RANDOM_READS_PER_S = 2e7

# measured names the design renames or folds into another task: their measured seconds and bytes go to it
ALIASES = {"duplicates": "id-lookup", "new-centres": "centre-sums"}
# measured names a production day of the design does not run: the old face-id scan, the whole snapshot
# rewrite (``write-shard`` writes a base only on the first day or a re-listing), the index rebuild of a gallery
# written before the face-id index, a first day's skip, the scheduler probe
REMOVED = ("gallery-ids", "write-shard", "id-rebuild", "assign-skip", "probe", "probe-pick")
RETRAIN_STAGE = "assign-train"  # not daily: the quantizer is re-trained when the gallery has grown ~4x

MODEL_TEXT = {
    "ingest": "F",
    "dedupe": "F; id-lookup: F x R runs x k Bloom reads, reads filters H x b/8 + hit row groups; B tasks",
    "prepare": "F (centring, quality flags)",
    "load-shard": "C (1 + f/2) rows: the base and the deltas since the last compaction",
    "assign-train": "12 x n_train x nlist dots + C x nlist re-listing (not daily: gallery ~4x)",
    "assign": "probe F x nlist, search F x C x nprobe/nlist dots, P x W tasks; index: copy C rows",
    "knn-train": "12 x n_train x nlist_k dots, 1 task",
    "knn-build": "U x nlist_k dots",
    "edges": "probe U x nlist_k, search U x U x nprobe_k/nlist_k dots, P x min(W, S_k) tasks",
    "components": "E (forests); V tree depth log8 P; V in 1 task",
    "centre-update": "F (sums, P x W picks, W trees); C (whole shard) + D x nlist dots (re-listing)",
    "write": "D rows (delta); F (assignments, ids); ids merges F x log8(days)",
    "compact": "C (1 + f) read, C written every f C / D days (amortised)",
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


def tree_levels(n: int, fan_in: int = FAN_IN) -> list[int]:
    """Tasks per round of ``DayRunner.tree_reduce`` over ``n`` inputs."""
    levels = []
    while n > 1:
        n = math.ceil(n / fan_in)
        levels.append(n)
    return levels


def lsm_runs(days: int, fanout: int = LSM_FANOUT) -> list[int]:
    """The runs of the face-id index after ``days`` days, by their size in days: one run of ``fanout**l`` days
    per unit of the base-``fanout`` digit ``l`` of ``days`` (level-0 runs are single days)."""
    runs, level = [], 0
    while days > 0:
        days, digit = divmod(days, fanout)
        runs += [fanout**level] * digit
        level += 1
    return runs


def bloom_fpr(bits: float) -> float:
    """False-positive rate of a Bloom filter of ``bits`` per id with the best number of hashes."""
    k = bloom_k(bits)
    return (1.0 - math.exp(-k / bits)) ** k


def bloom_k(bits: float) -> int:
    return max(1, round(bits * math.log(2)))


# --------------------------------------------------------------------------------------------- per task name
@dataclasses.dataclass(frozen=True)
class PrefixModel:
    """What one task name's cost grows with (keys of :data:`UNITS`).

    ``work``: the unit its measured compute is scaled by (None: nothing measured is used); ``own``: False where
    the measured task is code the design replaces (never scaled from); ``proxies``: ``(name, unit)`` of measured
    tasks whose seconds per unit are its rate when it was not measured; ``extra``: work costed at a machine rate
    (:data:`RATE_OF`) on top; ``tasks``: the number of tasks the design submits (``count="measured"``: the
    measured count scaled by that unit); ``on``: how many workers can run them (default ``tasks``); ``data``,
    ``fan``: the bytes it receives over the network; ``read``, ``write``: bytes of the gallery's store;
    ``amortised``: the fraction of days it runs (its cost is spread over them)."""

    work: str | None
    tasks: str
    data: str = "F"
    fan: str = "1"  # how many workers need each input: "1", "Wg", "Wk", "W"
    queries: str | None = None  # a search: every query partition (F or U faces) travels to each worker
    serial: bool = False  # one task: never spread
    tree: bool = False  # a tree reduction over the partitions (cc-merge)
    own: bool = True
    proxies: tuple[tuple[str, str], ...] = ()
    extra: tuple[str, ...] = ()
    count: str = "design"
    on: str | None = None
    read: str | None = None
    write: str | None = None
    amortised: str | None = None


P_ = PrefixModel
MODELS: dict[str, PrefixModel] = {
    "ingest": P_("F", "P"),
    "id-buckets": P_("F", "P"),
    "bucket": P_("F", "PB2"),
    "id-lookup": P_("F", "B", extra=("FRk", "hit_bytes"), read="io_lookup", on="B"),
    "dedupe": P_("F", "P"),
    "reasons": P_("F", "P", "P"),
    "count": P_("F", "P", "P", count="measured"),
    "prepare": P_("F", "P"),
    "load-shard": P_("Cl", "Sg", "C", on="Wg", read="io_load"),
    "assign-sample": P_("C", "Sg", "C"),
    "assign-train": P_("train_a", "1", "ntrain_a", serial=True),
    "gallery-index": P_(None, "Sg", "1", own=False, extra=("Cb",), on="Wg"),
    "assign-probe": P_("F_nla", "P"),
    "assign-search": P_("dots_a", "PWg", fan="Wg", queries="F", on="Wg"),
    "assign-merge": P_("FIa", "P_tree_Wg", "FIa"),
    "assign-decide": P_("F", "P"),
    "knn-sample": P_("F", "P"),
    "knn-train": P_("train_k", "1", "ntrain_k", serial=True),
    "knn-build": P_("U_nlk", "Sk", on="Wk"),
    "knn-probe": P_("U_nlk", "P"),
    "knn-search": P_("dots_k", "PWk", fan="Wk", queries="U", on="Wk"),
    "knn-merge": P_("UIk", "P_tree_Wk", "UIk", proxies=(("assign-merge", "FIa"),)),
    "knn-table": P_("U", "Sk", "U", on="Wk"),
    "annotate": P_("UIk", "PWk", "U", fan="Wk", on="Wk"),
    "annotate-merge": P_("UIk", "P_tree_Wk", "UIk", proxies=(("knn-merge", "UIk"), ("assign-merge", "FIa"))),
    "edges": P_("U", "P", "U"),
    "cc-forest": P_("E", "P", "E"),
    "cc-merge": P_("V_levels", "tree_P", "V", tree=True),
    "vertex-ids": P_("F", "P"),
    "components": P_("V", "1", "V", serial=True),
    "component-stats": P_("1", "1", "V", serial=True),
    "labels": P_("V", "P", "V", fan="W"),
    "centre-sums": P_("F", "P"),
    "sums": P_("F", "PWg"),
    "sums-reduce": P_("F_levels", "WgTreeP", proxies=(("centre-sums", "F"),), on="Wg"),
    "centre-update": P_("C", "Sg", extra=("D_nla",), on="Wg"),
    "write-delta": P_("D", "Sg", "1", proxies=(("write-shard", "Cw"),), on="Wg", write="io_delta"),
    "write-assignments": P_("F", "P", write="io_assign"),
    "write-ids": P_("F", "B", "F", proxies=(("id-buckets", "F"),), extra=("Fk",), on="B", write="io_ids"),
    "ids-merge": P_(
        "FL",
        "B_merges",
        "1",
        proxies=(("write-ids", "F"), ("id-buckets", "F")),
        extra=("FLk",),
        on="B",
        read="io_merge",
        write="io_merge",
    ),
    "shard-stats": P_("C", "Sg", "1", on="Wg"),
    "commit": P_("nla", "1", "nla", serial=True),
    "compact-load": P_(
        "Cc_read", "Sg", "1", proxies=(("load-shard", "Cl"),), on="Wg", read="io_compact_read", amortised="compact"
    ),
    "compact-write": P_(
        "Cc",
        "Sg",
        "1",
        proxies=(("write-shard", "Cw"), ("write-delta", "D")),
        on="Wg",
        write="io_compact_write",
        amortised="compact",
    ),
}
DEFAULT_MODEL = PrefixModel("F", "P", count="measured")


def train_dots(n_train: int, nlist: int, rows: int) -> float:
    """faiss k-means as the CPU backend runs it: 12 iterations over min(sample, 256 x nlist) points."""
    if nlist <= 0:
        return 0.0
    return 12.0 * min(n_train, rows, 256 * nlist) * nlist


def _tree_tasks(n: float) -> int:
    return sum(tree_levels(int(n)))


UNITS: dict[str, Callable[[dict], float]] = {
    "1": lambda q: 1.0,
    "F": lambda q: q["F"],
    "U": lambda q: q["U"],
    "V": lambda q: q["U"],
    "E": lambda q: q["E"],
    "C": lambda q: q["C"],
    "P": lambda q: q["P"],
    "B": lambda q: q["B"],
    "D": lambda q: q["D"],
    "Cl": lambda q: q["Cl"],  # centre rows a day loads: the base and the deltas since the last compaction
    "Cw": lambda q: q["C"] + q["Nn"],  # rows a whole-snapshot write-shard wrote
    "Cc": lambda q: q["C"],  # a compaction writes the base
    "Cc_read": lambda q: q["C"] * (1 + q["f"]),  # and reads it with its deltas
    "PB2": lambda q: q["P"] * q["B"] + 2 * q["B"],  # a pick per (partition, bucket group); dups and new ids
    "Sg": lambda q: q["Sg"],
    "Sk": lambda q: q["Sk"],
    "Wg": lambda q: q["Wg"],
    "Wk": lambda q: q["Wk"],
    "W": lambda q: q["W"],
    # the searches: one task per (query partition, worker holding shards), merged per partition over them
    "PWg": lambda q: q["P"] * q["Wg"],
    "PWk": lambda q: q["P"] * q["Wk"],
    "P_tree_Wg": lambda q: q["P"] * _tree_tasks(q["Wg"]),
    "P_tree_Wk": lambda q: q["P"] * _tree_tasks(q["Wk"]),
    "tree_P": lambda q: _tree_tasks(q["P"]),
    "WgTreeP": lambda q: q["Wg"] * _tree_tasks(q["P"]),  # the sums: a tree per worker over its P picks
    "B_merges": lambda q: q["B"] * q["merge_days"],  # ids-merge: B tasks per level merged, on 1/8^l of days
    "FIa": lambda q: q["F"] * q["Ia"],
    "UIk": lambda q: q["U"] * q["Ik"],
    "V_levels": lambda q: q["U"] * len(tree_levels(int(q["P"]))),
    "F_levels": lambda q: q["F"] * max(1, len(tree_levels(int(q["P"])))),
    "FL": lambda q: q["F"] * q["L"],  # ids rewritten by the LSM merges per day, amortised
    "nla": lambda q: max(q["nla"], 1),
    "ntrain_a": lambda q: min(q["ntrain_a"], q["C"]),
    "ntrain_k": lambda q: min(q["ntrain_k"], q["U"]),
    # dot products of d-dim vectors: the lists probed, plus the coarse quantization when every search task runs
    # it again (``qa``/``qk`` = 1: no ``assign-probe``/``knn-probe`` tasks)
    "dots_a": lambda q: q["F"] * (q["C"] * q["pa"] + q["qa"] * q["nla"] * q["Ia"]),
    "dots_k": lambda q: q["U"] * (q["U"] * q["pk"] + q["qk"] * q["nlk"] * q["Ik"]),
    "F_nla": lambda q: q["F"] * q["nla"],
    "C_nla": lambda q: q["C"] * q["nla"],
    "D_nla": lambda q: q["D"] * q["nla"],  # the day's changed and new clusters given their IVF list
    "U_nlk": lambda q: q["U"] * q["nlk"],
    "train_a": lambda q: train_dots(q["ntrain_a"], q["nla"], q["C"]),
    "train_k": lambda q: train_dots(q["ntrain_k"], q["nlk"], q["U"]),
    # memory: bytes copied (the centres into list order; the index row groups a Bloom hit reads, decoded)
    "Cb": lambda q: q["C"] * (4 * q["d"] + 12),
    "hit_bytes": lambda q: q["hit_bytes"],
    # random reads: k Bloom-filter words per id and run probed, per id written or merged
    "FRk": lambda q: q["F"] * q["R"] * q["k"],
    "Fk": lambda q: q["F"] * q["k"],
    "FLk": lambda q: q["F"] * q["L"] * q["k"],
    # bytes of the gallery's store
    "io_load": lambda q: q["Cl"] * q["rowb"],
    "io_lookup": lambda q: q["bloom_bytes"] + q["hit_bytes"],
    "io_delta": lambda q: q["D"] * q["rowb"],
    "io_assign": lambda q: q["F"] * ASSIGNMENT_ROW_BYTES,
    "io_ids": lambda q: q["F"] * q["idb"],
    "io_merge": lambda q: q["F"] * q["L"] * q["idb"],
    "io_compact_read": lambda q: q["C"] * (1 + q["f"]) * q["rowb"],
    "io_compact_write": lambda q: q["C"] * q["rowb"],
    # fractions of days
    "compact": lambda q: 1.0 / q["nc"],
}
DOT_UNITS = ("dots_a", "dots_k", "train_a", "train_k", "U_nlk", "F_nla")
QUANTIZE_UNITS = ("C_nla", "D_nla")  # rows given their nearest IVF list: at the measured assign-probe's rate
RATE_OF = {
    **{u: "dot" for u in DOT_UNITS},
    **{u: "quantize" for u in QUANTIZE_UNITS},
    "Cb": "copy",
    "hit_bytes": "copy",
    "FRk": "reads",
    "Fk": "reads",
    "FLk": "reads",
}


def fan_factor(fan: str, q: dict) -> float:
    """Expected number of other workers an input goes to: min(W, S) x (W - 1) / W."""
    w = q["W"]
    s = {"1": 1, "Wg": q["Wg"], "Wk": q["Wk"], "W": w}[fan]
    return min(w, s) * (w - 1) / w


# --------------------------------------------------------------------------------------------- quantities
def _partition_mb(cfg: Config, speedup: float, override: float) -> float:
    if override:
        return override
    if speedup > 1:
        return GPU_PARTITION_MB
    return cfg.ingest.partition_mb or CPU_PARTITION_MB


def measured_quantities(rec: dict, cfg: Config, changed: float = 1.0, fraction: float = 0.25) -> dict[str, float]:
    """The measured day's units, from a ``run`` record (a fresh gallery: no deltas, no face-id runs)."""
    s, prefixes = rec["counts"], rec["prefixes"]
    f = s["faces_valid"]
    u = max(1, f - s["assigned"])
    nla, npa = parse_index(s.get("assign_index"))
    nlk, npk = parse_index(s.get("knn_index"))
    p = prefixes.get("ingest", {}).get("tasks", 1)
    sg, w = rec.get("shards", 2), rec["workers"]
    sk = max(1, prefixes.get("knn-build", {}).get("tasks", 1))
    n_new = s.get("new_clusters") or 0
    bucket_tasks = prefixes.get("id-lookup", prefixes.get("duplicates", {})).get("tasks", 0)
    d = rec.get("dim", 256)
    return {
        "F": f,
        "U": u,
        "E": max(1, s.get("knn_edges") or 0),
        "C": rec["gallery_clusters"],
        "Cl": rec["gallery_clusters"],
        "P": p,
        "Sg": sg,
        "Sk": sk,
        "W": w,
        "Wg": min(w, sg),
        "Wk": min(w, sk),
        "Ia": prefixes.get("assign-search", {}).get("tasks", p * sg) / p,
        "Ik": prefixes.get("knn-search", {}).get("tasks", p * sk) / p,
        "nla": nla,
        "pa": npa / nla if nla else 1.0,
        "nlk": nlk,
        "pk": npk / nlk if nlk else 1.0,
        "qa": 0 if "assign-probe" in prefixes else 1,
        "qk": 0 if "knn-probe" in prefixes else 1,
        "ntrain_a": train_size(IndexSpec(nlist=nla), cfg.search),
        "ntrain_k": train_size(IndexSpec(nlist=nlk), cfg.search),
        "Nn": n_new,
        "D": (f - u) * changed + n_new,
        "B": bucket_tasks or max(1, min(p, 16)),
        "R": 1,  # at most one face-id run in the measured gallery
        "L": 1,
        "k": 7,
        "f": fraction,
        "nc": 1,
        "merge_days": 1,
        "d": d,
        "rowb": 4 * d + ROW_FIXED_BYTES,
        "idb": ID_BYTES + 10 / 8,
        "bloom_bytes": 0.0,
        "hit_bytes": 0.0,
    }


def id_buckets(args: argparse.Namespace) -> int:
    """The face-id index's buckets at scale: ``--scale-id-buckets``, or (0) the gallery's rule for the day."""
    from daskcluster.gallery.ids import bucket_count

    return bucket_count(args.scale_id_buckets, int(args.scale_faces))


def id_index_reads(f: float, days: int, buckets: int, bits: float) -> dict[str, float]:
    """What a day's duplicate check reads of a face-id index of ``days`` days of ``f`` ids: every run's Bloom
    filter (``bits`` per id) of every bucket, and the row groups of each run the filter's hits fall in (the
    day's ids x the false-positive rate per run and bucket: at scale they touch most row groups)."""
    fpr, bloom, hits = bloom_fpr(bits), 0.0, 0.0
    runs = lsm_runs(days)
    per_bucket = f / buckets
    for size in runs:
        n = size * per_bucket  # ids of this run in one bucket
        groups = max(1.0, math.ceil(n / ID_ROW_GROUP))
        touched = groups * (1.0 - math.exp(-per_bucket * fpr / groups))
        bloom += buckets * n * bits / 8
        hits += buckets * min(n, touched * ID_ROW_GROUP) * ID_BYTES
    return {"R": len(runs), "bloom_bytes": bloom, "hit_bytes": hits, "fpr": fpr}


def scale_quantities(args: argparse.Namespace, cfg: Config, qm: dict, w: int, speedup: float = 1.0) -> dict[str, float]:
    """The production day: ``--scale-faces`` against ``--scale-clusters`` on ``w`` workers."""
    f, c, d = args.scale_faces, args.scale_clusters, args.dim
    u = f * qm["U"] / qm["F"]
    nla = min(args.scale_nlist, max(16, int(c) // 39))
    knn = choose_index(int(u), cfg.search)
    nlk = args.scale_knn_nlist or knn.nlist
    npk = args.scale_knn_nprobe or knn.nprobe
    nlk = min(nlk, max(16, int(u) // 39)) if nlk else 0
    part_mb = _partition_mb(cfg, speedup, args.scale_partition_mb)
    rows_per_part = max(256, int(part_mb * MB // (4 * d)))
    sg = args.scale_shards or w
    sk = args.scale_knn_shards or max(1, math.ceil(u * d * 4 / MB / cfg.search.shard_mb))
    n_new = f * qm["Nn"] / qm["F"]
    delta = (f - u) * args.scale_changed_fraction + n_new
    frac, days, bits = args.compact_fraction, args.scale_history_days, args.bloom_bits
    level = math.log(max(days, 1), LSM_FANOUT)
    reads = id_index_reads(f, days, id_buckets(args), bits)
    nc = max(1.0, frac * c / max(delta, 1.0))  # days between compactions
    return {
        "F": f,
        "U": u,
        "E": u * qm["E"] / qm["U"],
        "C": c,
        "Cl": c + max(0.0, frac * c - delta) / 2,  # the base + on average half the deltas a compaction folds
        "P": math.ceil(f / rows_per_part),
        "Sg": sg,
        "Sk": sk,
        "W": w,
        "Wg": min(w, sg),
        "Wk": min(w, sk),
        "Ia": min(w, sg),
        "Ik": min(w, sk),
        "nla": nla,
        "pa": min(1.0, args.scale_nprobe / nla),
        "nlk": nlk,
        "pk": min(1.0, npk / nlk) if nlk else 1.0,
        "ntrain_a": train_size(IndexSpec(nlist=nla), cfg.search),
        "ntrain_k": train_size(IndexSpec(nlist=nlk), cfg.search),
        "qa": 0,  # the design probes each partition once (assign-probe, knn-probe)
        "qk": 0,
        "Nn": n_new,
        "D": delta,
        "B": min(id_buckets(args), DEDUPE_TASKS),  # dedupe tasks: the buckets in groups (run.day_ingest)
        "R": reads["R"],
        "L": level,
        "k": bloom_k(bits),
        "f": frac,
        "nc": nc,
        "merge_days": sum(LSM_FANOUT**-lv for lv in range(1, int(level) + 1)),
        "d": d,
        "rowb": 4 * d + ROW_FIXED_BYTES,
        "idb": ID_BYTES + bits / 8,
        "bloom_bytes": reads["bloom_bytes"],
        "hit_bytes": reads["hit_bytes"],
        "fpr": reads["fpr"],
        "partition_mb": part_mb,
    }


def part_bytes_per_face(args: argparse.Namespace, moved: dict, qm_bytes: dict) -> float:
    """Bytes a query partition puts on the wire per face (features, ids, metadata), from the measured
    ``assign-search`` transfers; the features alone (d x 4 bytes) when none were measured. (``knn-search`` is
    not used: its partitions may already sit at the shard's worker, copied there by ``knn-build``.)"""
    f_m = fan_factor("Wg", qm_bytes)
    b = moved.get("assign-search", {}).get("in_bytes", 0)
    return b / (qm_bytes["F"] * f_m) if b and f_m else args.dim * 4.0


def _ratio(unit: str, qs: dict, qm: dict) -> float:
    m = UNITS[unit](qm)
    return UNITS[unit](qs) / m if m else 0.0


def dot_rate(compute: dict, qm_compute: dict) -> float:
    """Dot products per second of the measured ``assign-search``."""
    return UNITS["dots_a"](qm_compute) / max(compute.get("assign-search", {}).get("compute_s", 0.0), 1e-9)


def merge_measured(prefixes: dict[str, dict]) -> dict[str, dict]:
    """The measured rows by the design's names: :data:`ALIASES` folded into their target (tasks, seconds and
    bytes summed)."""
    out: dict[str, dict] = {}
    for p, v in prefixes.items():
        name = ALIASES.get(p, p)
        row = out.setdefault(name, {"tasks": 0, "compute_s": 0.0, "in_bytes": 0})
        for k in row:
            row[k] += v.get(k, 0)
    return out


# --------------------------------------------------------------------------------------------- rates
@dataclasses.dataclass(frozen=True)
class Rates:
    """Per second on one measured worker (one core): dot products (the measured ``assign-search``), bytes
    copied and random 8-byte reads (the run's memory probe); the scheduler's tasks per second."""

    dot: float
    quantize: float
    copy: float
    reads: float
    scheduler: float
    source: str

    def of(self, kind: str) -> float:
        return {"dot": self.dot, "quantize": self.quantize, "copy": self.copy, "reads": self.reads}[kind]


def rates(args: argparse.Namespace, rec1: dict, rec2: dict, qm_compute: dict) -> Rates:
    probe = rec1.get("memory_probe") or {}
    sched = getattr(args, "scheduler_tasks_per_s", 0) or rec2["scheduler_tasks_per_s"]
    measured = merge_measured(rec1["prefixes"])
    dots = dot_rate(measured, qm_compute)
    probe_s = measured.get("assign-probe", {}).get("compute_s", 0.0)
    return Rates(
        dots,
        UNITS["F_nla"](qm_compute) / probe_s if probe_s and qm_compute["nla"] else dots,
        probe.get("copy_bytes_per_s") or DEFAULT_COPY_BYTES_PER_S,
        probe.get("random_reads_per_s") or DEFAULT_RANDOM_READS_PER_S,
        sched,
        "memory probe of the run" if probe else "defaults (the run record has no memory probe)",
    )


# --------------------------------------------------------------------------------------------- projection
@dataclasses.dataclass
class Projection:
    """What one projection is computed from: the measured day (compute from the 1-worker run, bytes from the
    2-worker run, by the design's names), the production day's quantities ``qs`` at ``w`` workers, the worker
    speed-up and the rates."""

    args: argparse.Namespace
    compute: dict
    moved: dict
    qm_compute: dict
    qm_bytes: dict
    qs: dict
    w: int
    speedup: float
    rates: Rates
    quantized_rows_m: float = 0.0  # rows the measured centre-update gave an IVF list (its dots are not the C part)

    @property
    def bandwidth(self) -> float:
        """Bytes/s per worker: CPU workers' network at x1, GPU-class workers' above."""
        gbps = self.args.net_gbps if self.speedup <= 1 else getattr(self.args, "gpu_net_gbps", self.args.net_gbps)
        return gbps * 1e9 / 8

    @property
    def storage(self) -> float:
        return self.args.storage_gbps * 1e9 / 8


def measured_rows_listed(rec: dict, qm: dict) -> float:
    """Rows the measured ``centre-update`` listed (the design's code: ``sums-reduce`` ran): every row on a day
    that trained its quantizer, else the changed and new ones; 0 for code before the design."""
    if "sums-reduce" not in rec["prefixes"]:
        return 0.0
    trained = rec["counts"].get("assign_quantizer") == "trained"
    return qm["C"] + qm["Nn"] if trained else qm["D"]


def _measured_cpu(pr: Projection, p: str, m: PrefixModel) -> tuple[float, str]:
    """(seconds at the measured speed, where they came from) of task name ``p``'s ``work`` at scale."""
    if m.work is None:
        return 0.0, "analytic"
    cm = pr.compute.get(p, {})
    cpu_m = cm.get("compute_s", 0.0)
    if p == "centre-update" and pr.quantized_rows_m:
        cpu_m = max(0.0, cpu_m - pr.quantized_rows_m * pr.qm_compute["nla"] / pr.rates.quantize)
    if m.own and cm.get("tasks") and UNITS[m.work](pr.qm_compute):
        return cpu_m * _ratio(m.work, pr.qs, pr.qm_compute), "measured"
    for name, unit in m.proxies:
        row = pr.compute.get(name, {})
        if row.get("tasks") and UNITS[unit](pr.qm_compute):
            return row["compute_s"] / UNITS[unit](pr.qm_compute) * UNITS[m.work](pr.qs), f"rate of {name}"
    if m.work in RATE_OF:
        return UNITS[m.work](pr.qs) / pr.rates.of(RATE_OF[m.work]), f"{RATE_OF[m.work]} rate"
    return 0.0, "not measured"


def _tasks(pr: Projection, p: str, m: PrefixModel) -> float:
    if m.count == "measured":  # 0 for a name that only received bytes
        return pr.compute.get(p, {}).get("tasks", 0) * _ratio(m.tasks, pr.qs, pr.qm_compute)
    return UNITS[m.tasks](pr.qs)


def prefix_compute(pr: Projection, p: str, m: PrefixModel) -> dict[str, Any]:
    """Task name ``p`` at scale on one day it runs: wall seconds of compute and of the store, tasks, bytes
    read and written, and where the compute came from."""
    cpu_s, how = _measured_cpu(pr, p, m)
    for unit in m.extra:
        cpu_s += UNITS[unit](pr.qs) / pr.rates.of(RATE_OF[unit])
    cpu_s /= pr.speedup
    tasks_s = _tasks(pr, p, m)
    par = max(1.0, min(pr.w, UNITS[m.on or m.tasks](pr.qs)))
    read = UNITS[m.read](pr.qs) if m.read else 0.0
    write = UNITS[m.write](pr.qs) if m.write else 0.0
    if m.serial:
        wall, par = cpu_s, 1.0
    elif m.tree:
        levels = tree_levels(int(pr.qs["P"]))
        per_level = cpu_s / max(1, len(levels))
        wall = sum(math.ceil(n / pr.w) * per_level / n for n in levels)
    else:
        wall = cpu_s / par
    io = (read + write) / (par * pr.storage)
    return {"compute_s": wall, "io_s": io, "tasks": tasks_s, "read": read, "written": write, "how": how}


def prefix_network(pr: Projection, p: str, m: PrefixModel, tasks_s: float) -> tuple[float, float]:
    """(network seconds, bytes) of task name ``p`` at scale."""
    qs, receivers = pr.qs, max(1.0, min(pr.w, UNITS[m.on or m.tasks](pr.qs), tasks_s))
    if m.queries:  # every query partition travels to every worker holding shards
        b_s = qs[m.queries] * part_bytes_per_face(pr.args, pr.moved, pr.qm_bytes) * fan_factor(m.fan, qs)
    else:
        b_m = pr.moved.get(p, {}).get("in_bytes", 0)
        f_m = fan_factor(m.fan, pr.qm_bytes)
        b_s = b_m * _ratio(m.data, qs, pr.qm_bytes) * fan_factor(m.fan, qs) / f_m if f_m else 0.0
        if p.startswith(UNMATCHED):  # partitions or sums, in the stage they moved in: spread over P
            receivers = max(1.0, min(pr.w, qs["P"]))
    net = b_s / pr.bandwidth if (m.serial or m.tree) else b_s / (receivers * pr.bandwidth)
    return net, b_s


def projected_names(pr: Projection) -> list[str]:
    """The task names of a production day: the measured ones by the design's names, less :data:`REMOVED`, and
    every name of :data:`MODELS` the measured run does not have yet."""
    return sorted((set(pr.compute) | set(pr.moved) | set(MODELS)) - set(REMOVED))


def stage_costs(pr: Projection) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, Any]]]:
    """Compute, store and network seconds, tasks and bytes summed per stage (amortised names at their share
    of days); per task name its wall seconds on a day it runs and where its compute came from."""
    fields = ("compute_s", "io_s", "network_s", "wall_s", "tasks", "bytes", "read", "written")
    stage = {s: dict.fromkeys(fields, 0.0) for s in STAGES}
    per_name: dict[str, dict[str, Any]] = {}
    for p in projected_names(pr):
        m = DEFAULT_MODEL if p.startswith(UNMATCHED) else MODELS.get(p, DEFAULT_MODEL)
        c = prefix_compute(pr, p, m)
        net, b_s = prefix_network(pr, p, m, c["tasks"])
        share = UNITS[m.amortised](pr.qs) if m.amortised else 1.0
        wall = max(c["compute_s"], c["io_s"]) + net
        per_name[p] = {"wall_s": wall, "share": share, "how": c["how"], "tasks": c["tasks"]}
        row = stage[stage_of(p)]
        for k, v in (("compute_s", c["compute_s"]), ("io_s", c["io_s"]), ("network_s", net), ("wall_s", wall)):
            row[k] += v * share
        for k, v in (("tasks", c["tasks"]), ("bytes", b_s), ("read", c["read"]), ("written", c["written"])):
            row[k] += v * share
    return stage, per_name


def project(pr: Projection) -> dict[str, Any]:
    """Projected seconds per stage at ``pr.w`` workers (see the package docstring): a stage takes the longer of
    its tasks' walls (compute or store, then network) and its tasks / scheduler throughput."""
    stage, per_name = stage_costs(pr)
    sched = pr.rates.scheduler
    per_stage = {
        s: {**row, "wall_s": max(row["wall_s"], row["tasks"] / sched), "scheduling_s": row["tasks"] / sched}
        for s, row in stage.items()
    }
    retrain = per_stage.pop(RETRAIN_STAGE)
    compaction = sum(v["wall_s"] for p, v in per_name.items() if MODELS.get(p, DEFAULT_MODEL).amortised)
    relist = UNITS["C_nla"](pr.qs) / pr.rates.quantize / pr.speedup / max(1.0, min(pr.w, pr.qs["Sg"]))
    qs = pr.qs
    return {
        "workers": pr.w,
        "worker_speedup": pr.speedup,
        "quantities": qs,
        "stages": per_stage,
        "retrain_quantizer": {**retrain, "wall_s": retrain["wall_s"] + relist + compaction},
        "retrain_every_days": 3 * qs["C"] / max(qs["Nn"], 1.0),
        "compaction_day_s": compaction,
        "compaction_every_days": qs["nc"],
        "total_s": sum(v["wall_s"] for v in per_stage.values()),
        "tasks": sum(v["tasks"] for v in per_stage.values()),
        "scheduling_s": sum(v["scheduling_s"] for v in per_stage.values()),
        "io_s": sum(v["io_s"] for v in per_stage.values()),
        "network_s": sum(v["network_s"] for v in per_stage.values()),
        "bytes_written": sum(v["written"] for v in per_stage.values()),
        "bytes_read": sum(v["read"] for v in per_stage.values()),
        "bytes_network": sum(v["bytes"] for v in per_stage.values()),
        "prefix_wall_s": {p: v["wall_s"] * v["share"] for p, v in per_name.items()},
        "prefix_tasks": {p: v["tasks"] * v["share"] for p, v in per_name.items()},
        "prefix_source": {p: v["how"] for p, v in per_name.items()},
        "gallery_gb_per_worker": qs["C"] * qs["rowb"] / qs["Sg"] / GB,
    }


def _measured(args: argparse.Namespace, cfg: Config, rec1: dict, rec2: dict) -> tuple[dict, dict, dict, dict]:
    p1, p2 = merge_measured(rec1["prefixes"]), merge_measured(rec2["prefixes"])
    kw = {"changed": args.scale_changed_fraction, "fraction": args.compact_fraction}
    return p1, p2, measured_quantities(rec1, cfg, **kw), measured_quantities(rec2, cfg, **kw)


def parameters(args: argparse.Namespace, cfg: Config, rec1: dict, rec2: dict) -> dict[str, Any]:
    """Every parameter of the projection, with the measured rates it uses."""
    _, _, qm_c, _ = _measured(args, cfg, rec1, rec2)
    r = rates(args, rec1, rec2, qm_c)
    return {
        "faces_per_day": args.scale_faces,
        "dim": args.dim,
        "gallery_clusters": args.scale_clusters,
        "workers": list(args.scale_workers),
        "worker_speedup": list(args.worker_speedup),
        "gallery_shards": args.scale_shards or "one per worker",
        "partition_mb": args.scale_partition_mb
        or f"{GPU_PARTITION_MB:g} (speed-up > 1), {cfg.ingest.partition_mb or CPU_PARTITION_MB:g} (x1)",
        "knn_shards": args.scale_knn_shards or f"features / search.shard_mb ({cfg.search.shard_mb:g} MB)",
        "gallery_ivf": f"IVF{args.scale_nlist} nprobe {args.scale_nprobe}",
        "unassigned_fraction": qm_c["U"] / qm_c["F"],
        "new_clusters_per_face": qm_c["Nn"] / qm_c["F"],
        "changed_clusters_per_assigned_face": args.scale_changed_fraction,
        "centre_row_bytes": 4 * args.dim + ROW_FIXED_BYTES,
        "assignment_row_bytes": ASSIGNMENT_ROW_BYTES,
        "compact_fraction": args.compact_fraction,
        "id_buckets": id_buckets(args),
        "history_days": args.scale_history_days,
        "bloom_bits_per_id": args.bloom_bits,
        "bloom_fpr": bloom_fpr(args.bloom_bits),
        "lsm_fanout": LSM_FANOUT,
        "id_row_group": ID_ROW_GROUP,
        "tree_fan_in": FAN_IN,
        "net_gbps_per_worker": args.net_gbps,
        "gpu_net_gbps_per_worker": getattr(args, "gpu_net_gbps", args.net_gbps),
        "storage_gbps_per_worker": args.storage_gbps,
        "dot_rate_per_s": r.dot,
        "quantize_dots_per_s": r.quantize,
        "copy_bytes_per_s": r.copy,
        "random_reads_per_s": r.reads,
        "machine_rates_from": r.source,
        "scheduler_tasks_per_s": r.scheduler,
        "scheduler_from": "--scheduler-tasks-per-s" if getattr(args, "scheduler_tasks_per_s", 0) else "measured probe",
    }


def model_fields(args: argparse.Namespace, cfg: Config, rec1: dict, rec2: dict) -> dict[str, Any]:
    """The ``model`` record's fields: the measured and scaled quantities, from the ``run`` records of the
    1-worker run (compute) and the 2-worker run (bytes, scheduler throughput)."""
    p1, p2, qm_c, qm_b = _measured(args, cfg, rec1, rec2)
    return dict(
        measured_compute_run=rec1["label"],
        measured_bytes_run=rec2["label"],
        quantities_measured=qm_c,
        quantities_measured_bytes_run=qm_b,
        scheduler_tasks_per_s=round(rec2["scheduler_tasks_per_s"], 1),
        parameters=parameters(args, cfg, rec1, rec2),
        part_bytes_per_face=part_bytes_per_face(args, p2, qm_b),
        stage_model=MODEL_TEXT,
        prefix_model={p: dataclasses.asdict(m) for p, m in MODELS.items()},
        aliases=ALIASES,
        removed=list(REMOVED),
    )


def projections(args: argparse.Namespace, cfg: Config, rec1: dict, rec2: dict) -> list[dict[str, Any]]:
    """One projection per ``--worker-speedup`` x ``--scale-workers``, with the efficiency vs 8 workers."""
    p1, p2, qm_c, qm_b = _measured(args, cfg, rec1, rec2)
    r = rates(args, rec1, rec2, qm_c)
    listed = measured_rows_listed(rec1, qm_c)
    out = []
    for sp in args.worker_speedup:
        group = []
        for w in args.scale_workers:
            qs = scale_quantities(args, cfg, qm_c, w, sp)
            group.append(project(Projection(args, p1, p2, qm_c, qm_b, qs, w, sp, r, listed)))
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
