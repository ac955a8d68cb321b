"""Human-readable day summaries and gallery status (rich tables), for the CLI."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .pipeline import DayResult

QUALITY_KEYS = ("bcubed_precision", "bcubed_recall", "bcubed_f", "pairwise_precision", "pairwise_recall",
                "pairwise_f", "nmi")


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def print_summary(console: Console, result: DayResult) -> None:
    if result.status != "committed":
        console.print(f"[yellow]{result.message}[/]")
        return
    s = result.summary
    table = Table(title=f"day {result.day}: {result.message}", show_header=False)
    for key in ("faces_in", "faces_valid", "quarantined", "assigned", "new_clusters", "singletons",
                "largest_new_cluster", "knn_edges", "gallery_clusters", "gallery_faces", "largest_cluster",
                "assign_index", "knn_index", "edge_recall"):
        if key in s:
            table.add_row(key.replace("_", " "), _fmt(s[key]))
    for reason, n in s.get("quarantine_reasons", {}).items():
        table.add_row(f"  quarantined: {reason}", str(n))
    for stage, seconds in s.get("stage_seconds", {}).items():
        table.add_row(f"time {stage}", f"{seconds:.2f} s")
    for scope in ("quality_day", "quality_gallery"):
        if s.get(scope):
            table.add_row(scope.replace("_", " "), "  ".join(f"{k}={s[scope][k]:.4f}" for k in QUALITY_KEYS))
    console.print(table)


def print_status(console: Console, status: dict) -> None:
    table = Table(title=f"gallery {status['gallery']} (version {status['version']})", show_header=False)
    for key in ("dim", "shards", "clusters", "faces", "largest_cluster", "median_cluster"):
        table.add_row(key, _fmt(status[key]))
    table.add_row("cluster sizes", "  ".join(f"{k}: {v}" for k, v in status["size_histogram"].items()))
    table.add_row("days", ", ".join(f"{d['day']} ({d['faces']} faces)" for d in status["days"]) or "none")
    console.print(table)
