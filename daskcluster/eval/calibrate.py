"""``daskcluster calibrate``: choose the thresholds and guards from a labelled probe.

The probe (``face_id``, ``feature``, ``label``, optionally ``quality``) is clustered with the day pipeline's
own functions (``engine``), optionally mixed with a day's unlabelled faces as distractors, and scored on the
probe's faces only. The setting with the highest B-cubed recall whose B-cubed precision reaches the target
is written as a config file for ``--config``. The search is staged, so that it stays cheap:

1. step 2 on the probe as one day: centring on/off x quality floor x linking rule x edge threshold (the k-NN
   lists are searched once per centring and floor, at the lowest threshold, and cut for the others);
2. the assignment threshold and margin for the best few of those, on the probe split into two days by id
   hash (day 2 is assigned to day 1's clusters, its rest clustered), twice with two different halvings,
   keeping the worst scores: a setting at the edge of the target on one day can fail when the same faces
   come in two, and the two-day runs decide;
3. the chaining guard's ``max_size`` on the chosen setting (the smallest size that costs no recall, with
   headroom for an identity that grows over later days), checked by a final two-day run.

Every row evaluated is kept: the table and the plot show what each choice cost.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from daskcluster.config import Config, validate_config
from daskcluster.eval.metrics import SCORES, evaluate
from daskcluster.run import inprocess
from daskcluster.search import id_hash
from daskcluster.stages import prepare
from daskcluster.stages.inputs import InputError, discover_inputs
from daskcluster.stages.linking import restrict

log = logging.getLogger(__name__)

THRESHOLDS = tuple(round(0.30 + 0.05 * i, 3) for i in range(13))  # 0.30 ... 0.90, refined around the best
RULES: dict[str, dict[str, Any]] = {
    "plain": {"mutual": False, "min_shared": 0.0, "link": "all"},
    "mutual": {"mutual": True, "min_shared": 0.0, "link": "all"},
    "shared-0.25": {"mutual": False, "min_shared": 0.25, "link": "all"},
    "shared-0.5": {"mutual": False, "min_shared": 0.5, "link": "all"},
    "density": {"mutual": False, "min_shared": 0.0, "link": "density"},
}
FLOORS = (0.0, 0.3, 0.4, 0.5)
SIZES = (25, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)
GROWTH = 4  # max_size headroom: an identity keeps growing on later days
MARGINS = (0.0, 0.03)
ASSIGN_OFFSETS = (0.0, 0.05, 0.1, 0.2)
SPLIT_BITS = (0, 1)  # the two-day check halves the probe twice, by two bits of the id hash; the worst counts
MUST_CENTRE = 0.8  # the mean unit feature's norm above which only centred settings are tried
PLATEAU = 0.003  # recall within this of the best counts as equally good
CANDIDATES = 6  # stage-1 settings carried into the two-day stage (half as found, half at higher thresholds)


@dataclass
class Probe:
    data: inprocess.DayData
    labels: np.ndarray  # label per face; distractors are -1 and not scored
    n_probe: int
    n_distractors: int = 0


@dataclass
class Calibration:
    rows: list[dict] = field(default_factory=list)
    best: dict | None = None
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    config: Config | None = None
    target: float = 0.98


def _read_table(path: str | Path, columns: list[str] | None = None) -> tuple[pa.Table, list[Path]]:
    files = discover_inputs(path)
    tables = []
    for f in files:
        names = pq.read_schema(f).names
        missing = [c for c in (columns or []) if c not in names]
        if missing:
            raise InputError(f"{f}: lacks field(s) {missing}")
        tables.append(pq.read_table(f))
    return pa.concat_tables(tables, promote_options="permissive"), files


def _features(table: pa.Table, feature: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(float32 features of the rows that are usable, mask of those rows): null, ragged, non-finite and
    all-zero rows are dropped with a warning, as ingest would quarantine them."""
    col = table.column(feature).combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False)
    dim = int(np.bincount(lengths).argmax()) if len(lengths) else 0
    ok = lengths == dim
    x = np.zeros((len(lengths), dim), np.float32)
    if ok.any():
        x[ok] = pc.list_flatten(col.filter(pa.array(ok))).to_numpy(zero_copy_only=False).reshape(-1, dim)
    with np.errstate(invalid="ignore", over="ignore"):
        norms = np.linalg.norm(x.astype(np.float64), axis=1)
    ok &= np.isfinite(norms) & (norms > 1e-12)
    if not ok.all():
        log.warning(
            "%s: %d rows with a null, wrong-length, non-finite or zero feature are left out", source, int((~ok).sum())
        )
    return x[ok], ok


def _distractors(
    day_input: str | Path, cfg: Config, probe_ids: np.ndarray, dim: int, max_distractors: int
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Up to ``max_distractors`` unlabelled faces of ``day_input`` not in the probe (the smallest id hashes, so the
    same ones every time), each id once: ``(ids, unit features, metadata)``."""
    id_col, feature = cfg.ingest.id_column, cfg.ingest.feature_column
    d_table, _ = _read_table(day_input, [id_col, feature])
    d_ids_all = d_table.column(id_col).cast(pa.int64()).fill_null(-1).to_numpy()
    d_table = d_table.filter(pa.array((d_ids_all >= 0) & ~np.isin(d_ids_all, probe_ids)))
    if d_table.num_rows > max_distractors:
        order = np.argsort(id_hash(d_table.column(id_col).cast(pa.int64()).to_numpy()), kind="stable")
        d_table = d_table.take(pa.array(np.sort(order[:max_distractors])))
    dx, dok = _features(d_table, feature, str(day_input))
    if dx.shape[1] != dim:
        raise InputError(f"{day_input}: features have dimension {dx.shape[1]}, the probe's {dim}")
    d_table = d_table.filter(pa.array(dok))
    d_ids = d_table.column(id_col).cast(pa.int64()).to_numpy()
    sel = np.sort(np.unique(d_ids, return_index=True)[1])
    return d_ids[sel], dx[sel], {k: v[sel] for k, v in _meta(d_table, cfg).items()}


def load_probe(
    path: str | Path,
    cfg: Config,
    label_column: str = "label",
    day_input: str | Path | None = None,
    max_distractors: int = 200_000,
) -> Probe:
    """The labelled probe, plus up to ``max_distractors`` unlabelled faces of ``day_input`` (chosen by id hash,
    so the same ones every time)."""
    id_col, feature = cfg.ingest.id_column, cfg.ingest.feature_column
    table, files = _read_table(path, [id_col, feature, label_column])
    table = table.filter(pc.is_valid(table.column(label_column)))
    x, ok = _features(table, feature, str(path))
    table = table.filter(pa.array(ok))
    if table.num_rows < 2:
        raise InputError(f"{path}: fewer than 2 usable labelled faces")
    labels = pc.dictionary_encode(table.column(label_column).cast(pa.string())).combine_chunks()
    label_codes = labels.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    ids = table.column(id_col).cast(pa.int64()).to_numpy()
    meta = _meta(table, cfg)
    n_probe = len(ids)
    if day_input is not None and max_distractors > 0:
        d_ids, dx, d_meta = _distractors(day_input, cfg, ids, x.shape[1], max_distractors)
        ids, x = np.concatenate([ids, d_ids]), np.concatenate([x, dx])
        label_codes = np.concatenate([label_codes, np.full(len(d_ids), -1, np.int64)])
        meta = {k: np.concatenate([v, d_meta.get(k, np.full(len(d_ids), np.nan))]) for k, v in meta.items()}
    return Probe(inprocess.DayData(ids, x, meta), label_codes, n_probe, len(ids) - n_probe)


def _meta(table: pa.Table, cfg: Config) -> dict[str, np.ndarray]:
    col = cfg.quality.column
    if col and col in table.schema.names:
        return {col: pc.cast(table.column(col), pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)}
    return {}


def _config(base: Config, over: dict[str, dict[str, Any]]) -> Config:
    tree = base.to_dict()
    for section, values in over.items():
        tree[section] = {**tree[section], **values}
    return validate_config(tree)


def _score(probe: Probe, labels: np.ndarray) -> dict[str, float]:
    scored = probe.labels >= 0
    m = evaluate(probe.labels[scored], labels[scored])
    return {k: m[k] for k in (*SCORES[:6], "n_clusters", "largest_cluster")}


def _has_quality(probe: Probe, base: Config) -> bool:
    part = inprocess.to_part(probe.data)
    return bool(np.isfinite(prepare.quality_score(part.meta, base.quality)).any())


class _Sweep:
    def __init__(self, probe: Probe, base: Config, target: float):
        self.probe, self.base, self.target = probe, base, target
        self.rows: list[dict] = []

    def _pick(self, rows: list[dict]) -> dict | None:
        """The highest recall at the target precision; among settings within ``PLATEAU`` of it, the one in
        the middle of their thresholds: a setting at the edge of a plateau is the first to fail on new data."""
        ok = [r for r in rows if r["bcubed_precision"] >= self.target]
        if not ok:
            return None
        top = max(r["bcubed_recall"] for r in ok)
        near = sorted(
            (r for r in ok if r["bcubed_recall"] >= top - PLATEAU),
            key=lambda r: (r["threshold"], r.get("assign_threshold", 0), -r["bcubed_precision"]),
        )
        return near[len(near) // 2]

    def step2(self) -> list[dict]:
        """Stage 1: centring x floor x rule x threshold on one day; the best settings that reach the target."""
        floors = FLOORS if _has_quality(self.probe, self.base) else (0.0,)
        stage: list[dict] = []
        mean_norm = float(np.linalg.norm(prepare.mean_feature([prepare.unit_sum(inprocess.to_part(self.probe.data))])))
        # far from zero-centred (random faces' mean cosine >= 0.64): every similarity is squeezed into a narrow
        # band where no uncentred threshold is sturdy, whatever a small probe says
        centring = (True,) if mean_norm > MUST_CENTRE else (False, True)
        log.info("probe mean unit feature has norm %.3f: centring %s", mean_norm, centring)
        for centre in centring:
            for floor in floors:
                stage += self._step2_rules({"preprocess": {"centre": centre}, "quality": {"floor": floor}})
        self.rows += stage
        ok = sorted(
            (r for r in stage if r["bcubed_precision"] >= self.target),
            key=lambda r: (-round(r["bcubed_recall"], 4), -r["bcubed_precision"]),
        )
        if not ok:
            raise CalibrationError(
                f"no setting reaches B-cubed precision {self.target} on the probe (best "
                f"{max(r['bcubed_precision'] for r in stage):.3f}); lower --target-precision"
            )
        top = ok[: CANDIDATES // 2]
        # the same settings at higher edge thresholds: sturdier when the faces come in smaller days
        higher = [
            dict(r, threshold=round(r["threshold"] + d, 4))
            for r in top
            for d in (0.05, 0.1, 0.15)
            if r["threshold"] + d < 0.99
        ]
        return top + higher

    def _step2_rules(self, over: dict) -> list[dict]:
        """One centring and floor: the probe searched once, every rule at every threshold, then the best
        threshold of each rule refined by +-0.025."""
        cfg = _config(self.base, {**over, "cluster": {"max_size": 0}})
        part = inprocess.to_part(self.probe.data)
        mean = prepare.mean_feature([prepare.unit_sum(part)]) if over["preprocess"]["centre"] else None
        part = prepare.prepare(part, mean, cfg.quality)
        nb = inprocess.search_graph(part, cfg, threshold=min(THRESHOLDS) - 0.025)
        rows = []
        for rule, values in RULES.items():
            rule_rows = [self._step2_row(part, nb, cfg, over, rule, values, t) for t in THRESHOLDS]
            best = max(rule_rows, key=lambda r: (r["bcubed_precision"] >= self.target, r["bcubed_recall"]))
            rule_rows += [
                self._step2_row(part, nb, cfg, over, rule, values, round(best["threshold"] + d, 4))
                for d in (-0.025, 0.025)
                if 0 < best["threshold"] + d < 1
            ]
            rows += rule_rows
        return rows

    def _step2_row(self, part, nb, cfg: Config, over: dict, rule: str, values: dict, t: float) -> dict:
        ccfg = cfg.cluster.model_copy(update={**values, "threshold": t, "max_size": 0})
        result = inprocess.cluster_graph(restrict(nb, t), part.ids, ccfg, 0, cfg.backend)
        return {
            "stage": "step2",
            "centre": over["preprocess"]["centre"],
            "floor": over["quality"]["floor"],
            "rule": rule,
            "threshold": t,
            "max_size": 0,
            **_score(self.probe, result.cluster_id),
        }

    def max_size(self, chosen: dict) -> int:
        """Stage 2: the smallest guard size that costs no recall on the probe (one day), times the growth
        headroom; the final row is the two-day run with it."""
        over = self._overrides(chosen)
        cfg = _config(self.base, over)
        part = prepare.prepare(inprocess.to_part(self.probe.data), self._mean(cfg), cfg.quality)
        nb = inprocess.search_graph(part, cfg)
        free = inprocess.cluster_graph(nb, part.ids, cfg.cluster.model_copy(update={"max_size": 0}), 0, cfg.backend)
        stage = []
        for size in SIZES:
            result = inprocess.cluster_graph(
                nb, part.ids, cfg.cluster.model_copy(update={"max_size": size}), 0, cfg.backend
            )
            stage.append(
                {
                    **{k: chosen[k] for k in ("centre", "floor", "rule", "threshold", "assign_threshold", "margin")},
                    "stage": "max_size",
                    "max_size": size,
                    **_score(self.probe, result.cluster_id),
                }
            )
            if size >= free.largest:
                break  # larger sizes cut nothing
        self.rows += stage
        top = max(r["bcubed_recall"] for r in stage)
        fits = [r for r in stage if r["bcubed_recall"] >= top - 0.002 and r["bcubed_precision"] >= self.target]
        size = min((r["max_size"] for r in fits), default=stage[-1]["max_size"])
        largest = max(r["largest_cluster"] for r in stage if r["max_size"] == size)
        return _round_up(max(size, largest) * GROWTH)

    def assignment(self, candidates: list[dict], max_size: int = 0) -> dict:
        """Stage 3: assignment threshold and margin on the probe split into two days, for each candidate (a
        setting at the edge of the target on one day may fail when the faces come in two)."""
        h = id_hash(self.probe.data.ids)
        splits = [((h >> np.uint64(bit)) % np.uint64(2)).astype(bool) for bit in SPLIT_BITS]
        stage = []
        grid = (
            [(c, o, m) for c in candidates for o in ASSIGN_OFFSETS for m in MARGINS]
            if max_size == 0
            else [(candidates[0], None, None)]
        )
        for chosen, offset, margin in grid:
            over = self._overrides(chosen)
            if offset is not None:
                t_assign = round(min(0.99, chosen["threshold"] + offset), 4)
                over["assign"] = {"threshold": t_assign, "margin": margin}
            over["cluster"]["max_size"] = max_size
            over["quality"]["join_threshold"] = round(min(0.99, over["assign"]["threshold"] + 0.1), 4)
            cfg = _config(self.base, over)
            stage.append(
                {
                    **{k: chosen[k] for k in ("centre", "floor", "rule", "threshold")},
                    "stage": "assign" if max_size == 0 else "final",
                    "max_size": max_size,
                    "assign_threshold": over["assign"]["threshold"],
                    "margin": over["assign"]["margin"],
                    **self._two_days(splits, cfg),
                }
            )
        self.rows += stage
        return self._pick(stage) or max(stage, key=lambda r: r["bcubed_precision"])

    def _two_days(self, splits: list[np.ndarray], cfg: Config) -> dict[str, float]:
        """Scores of the probe run as two days, the worst over ``splits`` (each a different halving)."""
        scores = []
        for split in splits:
            order = np.concatenate([np.flatnonzero(~split), np.flatnonzero(split)])
            labels = np.concatenate(inprocess.run_days([self._subset(~split), self._subset(split)], cfg))
            truth = Probe(
                inprocess.DayData(self.probe.data.ids[order], self.probe.data.features[order]),
                self.probe.labels[order],
                self.probe.n_probe,
            )
            scores.append(_score(truth, labels))
        return {
            k: min(s[k] for s in scores) if k != "largest_cluster" else max(s[k] for s in scores) for k in scores[0]
        }

    def _subset(self, mask: np.ndarray) -> inprocess.DayData:
        d = self.probe.data
        return inprocess.DayData(d.ids[mask], d.features[mask], {k: v[mask] for k, v in d.meta.items()})

    def _mean(self, cfg: Config) -> np.ndarray | None:
        if not cfg.preprocess.centre:
            return None
        return prepare.mean_feature([prepare.unit_sum(inprocess.to_part(self.probe.data))])

    def _overrides(self, row: dict) -> dict[str, dict[str, Any]]:
        rule = RULES[row["rule"]]
        return {
            "preprocess": {"centre": row["centre"]},
            "quality": {"floor": row["floor"]},
            "cluster": {**rule, "threshold": row["threshold"], "max_size": row.get("max_size", 0)},
            "assign": {"threshold": row.get("assign_threshold", row["threshold"]), "margin": row.get("margin", 0.0)},
        }


class CalibrationError(ValueError):
    """No setting reaches the target precision."""


def _round_up(n: int) -> int:
    """The next 1, 2 or 5 x 10^k."""
    if n <= 1:
        return 1
    e = 10 ** math.floor(math.log10(n))
    return next(m * e for m in (1, 2, 5, 10) if m * e >= n)


def calibrate(probe: Probe, base: Config, target_precision: float) -> Calibration:
    sweep = _Sweep(probe, base, target_precision)
    chosen = sweep.assignment(sweep.step2())
    size = sweep.max_size(chosen)
    final = sweep.assignment([chosen], size)
    over = sweep._overrides(final)
    over["quality"]["join_threshold"] = round(min(0.99, final["assign_threshold"] + 0.1), 4)
    return Calibration(sweep.rows, final, over, _config(base, over), target_precision)


def write_config(cal: Calibration, out: str | Path, source: str) -> None:
    """The chosen values as a YAML file for ``--config`` (only the calibrated keys)."""
    best = cal.best or {}
    head = (
        f"# written by daskcluster calibrate from {source}\n"
        f"# target B-cubed precision {cal.target}; on the probe: B-cubed P {best.get('bcubed_precision', 0):.4f} "
        f"R {best.get('bcubed_recall', 0):.4f} F {best.get('bcubed_f', 0):.4f}, pairwise P "
        f"{best.get('pairwise_precision', 0):.4f} (two-day split)\n"
    )
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(head + yaml.safe_dump(cal.overrides, sort_keys=True))


def plot(cal: Calibration, out: str | Path) -> None:
    """Precision-recall of every linking rule over the edge threshold (the chosen centring and floor)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = cal.best or {}
    fig, ax = plt.subplots(figsize=(7, 5))
    for rule in RULES:
        rows = sorted(
            (
                r
                for r in cal.rows
                if r["stage"] == "step2"
                and r["rule"] == rule
                and r["centre"] == best.get("centre")
                and r["floor"] == best.get("floor")
            ),
            key=lambda r: r["threshold"],
        )
        if rows:
            ax.plot([r["bcubed_recall"] for r in rows], [r["bcubed_precision"] for r in rows], marker=".", label=rule)
    ax.axhline(cal.target, color="grey", linestyle="--", linewidth=1, label=f"target {cal.target}")
    if best:
        ax.plot([best["bcubed_recall"]], [best["bcubed_precision"]], "k*", markersize=14, label="chosen")
    ax.set_xlabel("B-cubed recall")
    ax.set_ylabel("B-cubed precision")
    ax.set_title(f"calibration: centre={best.get('centre')}, quality floor={best.get('floor')}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
