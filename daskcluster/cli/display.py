"""Human-readable day summaries and gallery status (rich tables), for the CLI."""

from __future__ import annotations

import dataclasses

from rich.console import Console
from rich.table import Table

from daskcluster.eval.metrics import SCORES
from daskcluster.run.day import DayCounts
from daskcluster.run.pipeline import DayResult

QUALITY_KEYS = SCORES


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


# the day's figures shown one per row: every DayCounts field but the lists and tables printed below it
FIGURES = [f.name for f in dataclasses.fields(DayCounts) if f.name not in ("quarantine_reasons", "cut_components")]


def _cut_rows(table: Table, cuts: list[dict]) -> None:
    table.add_row("components cut (cluster.max_size)", str(len(cuts)))
    for c in cuts:
        table.add_row(
            f"  cut: component of face {c['root']}",
            f"{c['size']} faces -> {c['pieces']} pieces (largest {c['largest_piece']}) "
            f"at threshold {c['threshold']:.4f}",
        )


def print_summary(console: Console, result: DayResult) -> None:
    if result.status != "committed":
        console.print(f"[yellow]{result.message}[/]")
        return
    s = result.summary
    table = Table(title=f"day {result.day}: {result.message}", show_header=False)
    for key in FIGURES:
        if key in s:
            table.add_row(key.replace("_", " "), _fmt(s[key]))
    _cut_rows(table, s.get("cut_components", []))
    for reason, n in s.get("quarantine_reasons", {}).items():
        table.add_row(f"  quarantined: {reason}", str(n))
    tasks = s.get("stage_tasks", {})
    for stage, seconds in s.get("stage_seconds", {}).items():
        table.add_row(f"time {stage}", f"{seconds:.2f} s" + (f"  ({tasks[stage]} tasks)" if stage in tasks else ""))
    table.add_row("tasks", str(sum(tasks.values())))
    for key in ("bytes_read", "bytes_written"):
        if key in s:
            table.add_row(key.replace("_", " "), _bytes(s[key]))
    for what, done in s.get("maintenance", {}).items():
        table.add_row(what, "  ".join(f"{k}={_fmt(v)}" for k, v in done.items()))
    for scope in ("quality_day", "quality_gallery"):
        if s.get(scope):
            table.add_row(scope.replace("_", " "), "  ".join(f"{k}={s[scope][k]:.4f}" for k in QUALITY_KEYS))
    console.print(table)


def print_status(console: Console, status: dict) -> None:
    table = Table(title=f"gallery {status['gallery']} (version {status['version']})", show_header=False)
    for key in ("dim", "shards", "clusters", "faces", "largest_cluster", "median_cluster"):
        table.add_row(key, _fmt(status[key]))
    table.add_row("cluster sizes", "  ".join(f"{k}: {v}" for k, v in status["size_histogram"].items()))
    if status.get("lineage_rows"):
        table.add_row("merged by consolidation", f"{status['lineage_rows']} clusters (lineage rows)")
    table.add_row(
        "centre tables", f"base of {status['base_rows']} rows + {status['deltas']} deltas ({status['delta_rows']} rows)"
    )
    for kind, n in status["bytes_on_disk"].items():
        table.add_row(f"on disk: {kind}", _bytes(n))
    console.print(table)
    days = Table(title="days")
    days.add_column("day", no_wrap=True, min_width=10)
    for col in ("v", "faces", "bad", "read", "written", "tasks", "s", "state"):
        days.add_column(col, justify="left" if col == "state" else "right", overflow="fold")
    for d in status["days"]:
        seconds = "" if d["seconds"] is None else f"{d['seconds']:.1f}"
        state = "kept" if d["retained"] else "vacuumed"
        days.add_row(
            d["day"], str(d["version"]), str(d["faces"]), str(d["quarantined"]), _bytes(d["bytes_read"]),
            _bytes(d["bytes_written"]), str(d["tasks"] or ""), seconds, state,
        )  # fmt: skip
    console.print(days)


def _bytes(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


CALIBRATION_KEYS = (*SCORES[:4], "pairwise_f", "n_clusters", "largest_cluster")


CALIBRATION_COLUMNS = ["stage", "centre", "floor", "rule", "threshold", "assign", "margin", "max_size"]
CALIBRATION_COLUMNS += ["bP", "bR", "bF", "pP", "pF", "clusters", "largest"]


def _calibration_rows(cal, top: int) -> list[dict]:
    """Per stage, the best rows by recall among those reaching the target (a few rows where none does), once each."""
    shown, seen = [], set()
    for stage in ("step2", "assign", "max_size", "final"):
        rows = [r for r in cal.rows if r["stage"] == stage]
        ok = sorted((r for r in rows if r["bcubed_precision"] >= cal.target), key=lambda r: -r["bcubed_recall"])
        for r in ok[: top // 3] if stage == "step2" else ok[:8] or rows[:3]:
            key = tuple(sorted((k, str(v)) for k, v in r.items()))
            if key not in seen:
                seen.add(key)
                shown.append(r)
    return shown


def print_calibration(console: Console, cal, top: int = 25) -> None:
    """Per stage, the best rows by recall among those reaching the target, then the chosen setting."""
    table = Table(title=f"calibration (target B-cubed precision {cal.target}; {len(cal.rows)} settings tried)")
    for col in CALIBRATION_COLUMNS:
        table.add_column(col, justify="right")
    for r in _calibration_rows(cal, top):
        mark = "[bold green]" if r is cal.best else ""
        setting = [r[k] for k in ("stage", "centre", "floor", "rule", "threshold")]
        values = [*setting, r.get("assign_threshold", ""), r.get("margin", ""), r["max_size"]]
        table.add_row(*(f"{mark}{v}" for v in [*values, *(_fmt(r[k]) for k in CALIBRATION_KEYS)]))
    console.print(table)
